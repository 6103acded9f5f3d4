"""One source for what C and Python share: the version, the default socket,
dtype codes, the packing plan's layout, the causal default, and the
extension's type stub."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

import scree

ROOT = Path(__file__).resolve().parents[2]


def cmake_version() -> str:
    m = re.search(r"project\(scree\s+VERSION\s+([0-9.]+)", (ROOT / "CMakeLists.txt").read_text())
    assert m is not None
    return m.group(1)


def native():
    from conftest import require_client

    require_client()
    from scree import _native

    return _native


def test_version_is_cmakes():
    assert scree.__version__ == cmake_version()


def test_version_of_the_extension_is_cmakes():
    n = native()
    assert n.version() == n.VERSION == scree.__version__ == cmake_version()
    # pyproject reads the same line (scikit-build-core's regex provider).
    from importlib.metadata import PackageNotFoundError, version

    try:
        assert version("scree") == cmake_version()
    except PackageNotFoundError:
        pass  # a source tree, not an installation


def test_default_socket_comes_from_the_extension():
    n = native()
    header = (ROOT / "core" / "include" / "scree" / "version.h.in").read_text()
    m = re.search(r'#define SCREE_DEFAULT_SOCKET "([^"]+)"', header)
    assert m is not None and n.DEFAULT_SOCKET == m.group(1)
    assert scree.client.DEFAULT_SOCKET == n.DEFAULT_SOCKET


def test_dtype_and_side_codes_come_from_the_extension():
    n = native()
    from scree import bridges, client, kernels

    assert client._CODES["float8_e4m3fn"] == n.DTYPES["float8_e4m3"]
    assert all(client._CODES[k] == v for k, v in n.DTYPES.items() if k != "float8_e4m3")
    assert bridges._SIDE_CODES == {"right": n.PAD_RIGHT, "left": n.PAD_LEFT, "auto": n.PAD_AUTO}
    assert bridges._MASK_CODES["bool"] == n.DTYPES["bool"]
    assert kernels._DTYPE_CODES["bfloat16"] == n.DTYPES["bfloat16"]


@pytest.mark.parametrize("batch", [0, 1, 7])
def test_pack_plan_layout_is_ragged_h(batch):
    at = native().pack_plan_layout(batch)
    # The parts follow each other as scree_pack_plan_args.work describes.
    assert at["offsets"] == 0 and at["bad_row"] == batch + 1 and at["longest"] == batch + 2
    assert at["shift"] == at["host_len"] == batch + 3
    assert at["summary"] == at["shift"] + batch
    assert at["work_len"] == at["summary"] + at["summary_entries"] * batch + 1
    with pytest.raises(scree.InvalidArgument):
        native().pack_plan_layout(-1)


def test_causal_is_off_by_default_everywhere():
    from scree.kernels import varlen_attention
    from scree.kernels.triton import varlen_attention_triton

    for f in (varlen_attention, varlen_attention_triton, scree.Client.attention):
        p = inspect.signature(f).parameters["causal"]
        assert p.default is False, f


def test_the_stub_names_what_the_extension_has():
    n = native()
    stub = Path(n.__file__).with_name("_native.pyi")
    assert stub.is_file(), "scree/_native.pyi is not installed beside the extension"
    text = stub.read_text()
    declared = set(re.findall(r"^(?:def |class )?([A-Za-z_][A-Za-z0-9_]*)\b[:(]", text, re.M))
    public = {k for k in dir(n) if not k.startswith("_")}
    assert public - declared == set(), "in the extension, not in _native.pyi"
    assert declared - public == set(), "in _native.pyi, not in the extension"
