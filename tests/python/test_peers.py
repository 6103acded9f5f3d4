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


def _pair(screed_factory, tmp_path, *fetcher_args: str):
    """Starts an owner and a fetcher that names it 'owner'; returns their
    sockets."""
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
                             "--peer-secret-file", str(secret), *fetcher_args)
    return owner.socket, fetcher.socket


@pytest.fixture
def peers(screed_factory, tmp_path):
    """(owner client, fetcher client): the fetcher names the owner 'owner'."""
    so, sf = _pair(screed_factory, tmp_path)
    with scree.Client(so) as co, scree.Client(sf) as cf:
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


def _until(pred, seconds=15.0):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.02)
    return False


def _has(c, name):
    try:
        return c.stat(name).state == "sealed"
    except scree.NotFound:
        return False


def test_stats_show_each_peer_and_its_mirrors(screed_factory, tmp_path):
    so, sf = _pair(screed_factory, tmp_path, "--mirror", "owner:m/")
    with scree.Client(so) as co, scree.Client(sf) as cf:
        values, offsets = _batch(5)
        co.put("m/1", values, offsets)
        assert _until(lambda: _has(cf, "m/1")), "m/1 was not mirrored"
        with cf.get("m/1", framework="numpy") as b:
            np.testing.assert_array_equal(np.asarray(b.values), values)
        with pytest.raises(scree.NotFound):
            cf.fetch("owner", "missing")
        co.delete("m/1")
        assert _until(lambda: not _has(cf, "m/1")), "the mirror's copy was not deleted"
        st = cf.stats()
        assert len(st.peers) == 1
        p = st.peers[0]
        assert isinstance(p, scree.PeerStats)
        assert p.name == "owner" and p.connected
        assert p.mirrors == 1 and p.batches_mirrored == 1 and p.batches_fetched == 1
        assert p.bytes_fetched == values.nbytes + offsets.nbytes
        assert p.mirror_deletes == 1 and p.mirror_resyncs == 0
        assert p.failures == {"remote": 1}
        # The owner has no --peer of its own; its watch for the fetcher
        # counts among its watchers.
        so_stats = co.stats()
        assert so_stats.peers == () and so_stats.watchers == 1


def test_a_waiting_fetch_waits_on_the_owner(peers):
    co, cf = peers
    result = {}

    def fetch():
        result["info"] = cf.fetch("owner", "sealed-later", wait=30)
        result["done"] = time.monotonic()

    t = threading.Thread(target=fetch)
    t.start()
    # The owner keeps the request as a waiter of its store: nobody polls.
    assert _until(lambda: co.stats().waiters == 1), "the fetch does not wait on the owner"
    co.put("sealed-later", *_batch(6))
    sealed = time.monotonic()
    t.join()
    assert result["info"].name == "sealed-later"
    assert result["done"] - sealed < 5
    assert co.stats().waiters == 0
