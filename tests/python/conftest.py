"""Run the tests against this source tree.

scree is imported from an installation (``pip install ./client/python``) when
that installation has the native extension and its Python files are the ones
of this tree; otherwise from client/python directly, where everything but
scree.Client works and the client tests skip, saying why. ``make test`` sets
SCREE_REQUIRE_NATIVE=1, which turns that skip into a failure.
"""

from __future__ import annotations

import filecmp
import importlib.util
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "client" / "python"


def _installed_scree_matches() -> bool:
    """Whether an installed scree has _native and the same .py files as SOURCE."""
    spec = importlib.util.find_spec("scree")
    if spec is None or not spec.submodule_search_locations:
        return False
    pkg = Path(list(spec.submodule_search_locations)[0])
    if pkg.resolve() == (SOURCE / "scree").resolve() or not list(pkg.glob("_native*.so")):
        return False
    for src in (SOURCE / "scree").rglob("*.py"):
        inst = pkg / src.relative_to(SOURCE / "scree")
        if not inst.exists() or not filecmp.cmp(src, inst, shallow=False):
            return False
    return True


if not _installed_scree_matches():
    sys.path.insert(0, str(SOURCE))

# Never reach the network from a test (transformers, huggingface_hub).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402

# Without a GPU the Triton kernels can only run in Triton's interpreter, which
# must be chosen before scree.kernels.triton is first imported.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


import pytest  # noqa: E402


def _tiny_configs():
    from transformers import BertConfig, LlamaConfig

    common = dict(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                  intermediate_size=64, max_position_embeddings=64)
    return BertConfig(**common), LlamaConfig(num_key_value_heads=2, **common)


@pytest.fixture(scope="session")
def tiny_models():
    """A tiny BERT (bidirectional) and a tiny Llama (causal, GQA) with random
    weights, built from configs: nothing is downloaded."""
    from transformers import BertModel, LlamaModel

    bert_config, llama_config = _tiny_configs()
    torch.manual_seed(0)
    return BertModel(bert_config).eval(), LlamaModel(llama_config).eval()


# --- a real screed ------------------------------------------------------------


def screed_binary() -> Path | None:
    """The built daemon: $SCREE_BUILD_DIR/daemon/screed, else build/daemon/screed."""
    build = os.environ.get("SCREE_BUILD_DIR")
    for cand in ([Path(build)] if build else []) + [ROOT / "build"]:
        exe = cand / "daemon" / "screed"
        if exe.is_file() and os.access(exe, os.X_OK):
            return exe
    return None


def require_client() -> None:
    """Skip (or, under SCREE_REQUIRE_NATIVE=1, fail) without the native
    extension or a built screed."""
    import scree

    why = None
    if not scree.native_available():
        why = "scree._native is not built (pip install ./client/python)"
    elif screed_binary() is None:
        why = "no screed binary (build the project: make build)"
    if why is not None:
        if os.environ.get("SCREE_REQUIRE_NATIVE") == "1":
            pytest.fail(why)
        pytest.skip(why)


class Screed:
    """One screed process on a private socket."""

    def __init__(self, tmp: Path, *args: str) -> None:
        import subprocess
        import time

        self.dir = tmp
        self.socket = str(tmp / "screed.sock")
        self.log = tmp / "screed.log"
        exe = screed_binary()
        assert exe is not None
        self._logf = open(self.log, "w")
        self.proc = subprocess.Popen(
            [str(exe), "--socket", self.socket, "--log-level", "warn", *args],
            stdout=self._logf, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        import socket as sk

        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"screed exited with {self.proc.returncode}: "
                                   f"{self.log.read_text()}")
            try:
                s = sk.socket(sk.AF_UNIX, sk.SOCK_SEQPACKET)
                s.connect(self.socket)
                s.close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("screed did not start listening") from None
                time.sleep(0.01)

    def stop(self) -> int:
        import signal

        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout=30)
        self._logf.close()
        return rc


@pytest.fixture
def screed_factory(tmp_path_factory):
    """Starts screeds with extra arguments; each must exit 0 on SIGTERM."""
    started = []

    def start(*args: str) -> Screed:
        require_client()
        d = Screed(tmp_path_factory.mktemp("screed"), *args)
        started.append(d)
        return d

    yield start
    for d in started:
        rc = d.stop()
        assert rc == 0, f"screed exited with {rc}: {d.log.read_text()}"


@pytest.fixture
def screed(screed_factory):
    """A screed on host memory."""
    return screed_factory()


@pytest.fixture
def client(screed):
    import scree

    with scree.Client(screed.socket) as c:
        yield c
