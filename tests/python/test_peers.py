"""Client.fetch: two screeds joined as peers over UCX on 127.0.0.1."""

from __future__ import annotations

import os
import socket
import stat
import threading
import time

import numpy as np
import pytest

import scree


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def peers(screed_factory, tmp_path):
    """(owner client, fetcher client): the fetcher names the owner 'owner'."""
    os.environ["UCX_TLS"] = "tcp"
    secret = tmp_path / "secret"
    secret.write_text("a secret both screeds hold, 32 bytes\n")
    secret.chmod(stat.S_IRUSR | stat.S_IWUSR)
    port = _free_port()
    try:
        owner = screed_factory("--peer-listen", f"127.0.0.1:{port}",
                               "--peer-secret-file", str(secret))
    except RuntimeError as e:
        if "without UCX" in str(e):
            pytest.skip("screed was built without peers (UCX)")
        raise
    fetcher = screed_factory("--peer", f"owner=127.0.0.1:{port}",
                             "--peer-secret-file", str(secret))
    with scree.Client(owner.socket) as co, scree.Client(fetcher.socket) as cf:
        yield co, cf


def _batch(seed: int, dtype=np.float32):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(0, 9, size=7)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    values = rng.standard_normal((int(offsets[-1]), 3)).astype(dtype)
    return values, offsets


def test_fetch_roundtrip(peers):
    co, cf = peers
    values, offsets = _batch(1)
    co.put("x", values, offsets)
    info = cf.fetch("owner", "x", as_name="y")
    assert info.name == "y" and info.state == "sealed"
    assert info.owner_uid == os.getuid()
    with cf.get("y", framework="numpy") as b:
        np.testing.assert_array_equal(np.asarray(b.values), values)
        np.testing.assert_array_equal(np.asarray(b.offsets), offsets)


def test_fetch_errors_name_the_peer(peers):
    co, cf = peers
    with pytest.raises(scree.NotFound, match="peer 'owner'"):
        cf.fetch("owner", "missing")
    with pytest.raises(scree.InvalidArgument, match="unknown peer 'elsewhere'"):
        cf.fetch("elsewhere", "x")
    co.put("x", *_batch(2))
    cf.put("x", *_batch(3))
    with pytest.raises(scree.Exists):
        cf.fetch("owner", "x")
    with pytest.raises(scree.InvalidArgument):
        cf.fetch("owner", "x", wait=-1)


def test_fetch_waits(peers):
    co, cf = peers
    a = _batch(4)
    t = threading.Timer(0.3, lambda: co.put("later", *a))
    t.start()
    t0 = time.monotonic()
    info = cf.fetch("owner", "later", wait=10)
    t.join()
    assert info.name == "later"
    assert time.monotonic() - t0 >= 0.25
