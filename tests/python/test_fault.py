"""A write through a torch view of a read-only batch cannot become an
exception: torch has no read-only tensors and the daemon maps the memory
read-only, so the process dies of SIGSEGV. scree._native's handler makes the
death say why (scree, the batch, read-only views) and then hands the fault on,
so the process still dies of SIGSEGV, and faults elsewhere stay untouched.
Each case runs in a child process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import scree

from conftest import require_client

CHILD = textwrap.dedent(
    """
    import ctypes, sys
    import numpy as np, torch
    import scree
    # A connection that puts maps the arena writable; the reader is another.
    with scree.Client(sys.argv[1]) as producer:
        producer.put("{name}", scree.pack([np.ones((3, 4), np.float32),
                                           np.ones((2, 4), np.float32)]))
    c = scree.Client(sys.argv[1])
    b = c.get("{name}", framework="torch")
    print("attached", flush=True)
    {action}
    print("survived", flush=True)
    """
)


def run_child(socket: str, action: str, *python_flags: str, name: str = "fault/batch-7"):
    pkg = str(Path(scree.__file__).resolve().parents[1])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([pkg] + [p for p in sys.path if p])
    code = CHILD.format(name=name, action=action)
    return subprocess.run([sys.executable, *python_flags, "-c", code, socket], env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def socket(screed):
    require_client()
    return screed.socket


def assert_segv(p):
    assert p.returncode == -signal.SIGSEGV, (p.returncode, p.stdout, p.stderr)
    assert "attached" in p.stdout and "survived" not in p.stdout


@pytest.mark.parametrize("what", ["b.values[1, 2] = 5.0", "b.offsets[0] = 1"])
def test_write_to_a_read_only_view_names_scree_and_the_batch(socket, what):
    p = run_child(socket, what)
    assert_segv(p)
    assert "scree: fatal: write to read-only batch 'fault/batch-7'" in p.stderr, p.stderr
    assert "views of a batch from Client.get are read-only" in p.stderr


def test_with_faulthandler_enabled_first_both_speak(socket):
    # python -X faulthandler installs its handler before scree's: scree's
    # message comes first, then faulthandler's traceback, then the death.
    p = run_child(socket, "b.values[0, 0] = 1.0", "-X", "faulthandler")
    assert_segv(p)
    ours = p.stderr.find("scree: fatal: write to read-only batch 'fault/batch-7'")
    theirs = p.stderr.find("Fatal Python error: Segmentation fault")
    assert 0 <= ours < theirs, p.stderr


def test_a_long_name_is_cut_in_the_message(socket):
    name = "n" * 200
    p = run_child(socket, "b.values[0, 0] = 1.0", name=name)
    assert_segv(p)
    assert "write to read-only batch '" + "n" * 127 + "...'" in p.stderr, p.stderr


def test_other_faults_get_no_scree_message(socket):
    p = run_child(socket, "ctypes.string_at(16)")
    assert_segv(p)
    assert "scree:" not in p.stderr


def test_a_released_batch_is_forgotten(socket):
    # Once its lease is gone, its range no longer names the batch; the
    # handler is still installed and passes the fault on.
    action = ("addr = b.address; b.close(); del b; import gc; gc.collect(); "
              "ctypes.memset(addr, 0, 1)")
    p = run_child(socket, action)
    assert p.returncode == -signal.SIGSEGV, (p.returncode, p.stderr)
    assert "fault/batch-7" not in p.stderr


def test_sigsegv_sent_by_kill_still_kills(socket):
    p = run_child(socket, "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)")
    assert_segv(p)
    assert "scree:" not in p.stderr


SAME_CONNECTION = textwrap.dedent(
    """
    import sys
    import numpy as np, torch
    import scree
    c = scree.Client(sys.argv[1])
    c.put("fault/own", scree.pack([np.ones((3, 4), np.float32)]))
    # A create on the same connection, in the same arena, stays writable.
    w = c.create("fault/wip", np.float32, (4,), lengths=[2], framework="torch")
    w.values.add_(2)
    b = c.get("fault/own", framework="torch")
    w.values.add_(1)
    assert float(w.values[0, 0]) == 3.0
    print("attached", flush=True)
    b.values.add_(1)
    print("survived", flush=True)
    """
)


def test_a_producer_cannot_rewrite_its_sealed_batch_through_get(socket):
    # Issue 12: put then get(framework="torch") on the same client used to
    # return a view through the put's writable mapping, so add_ changed the
    # stored batch for every reader. The view is read-only now: the write
    # faults, and the batch is unchanged.
    pkg = str(Path(scree.__file__).resolve().parents[1])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([pkg] + [p for p in sys.path if p])
    p = subprocess.run([sys.executable, "-c", SAME_CONNECTION, socket], env=env,
                       capture_output=True, text=True, timeout=120)
    assert_segv(p)
    assert "scree: fatal: write to read-only batch 'fault/own'" in p.stderr, p.stderr
    with scree.Client(socket) as c, c.get("fault/own", framework="numpy") as b:
        assert float(b.values.max()) == 1.0
