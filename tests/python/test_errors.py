"""scree's exception classes: each is also the closest built-in exception,
checked on errors a real screed returns where one can be provoked."""

from __future__ import annotations

import errno
import pickle

import numpy as np
import pytest

import scree

BUILTIN_BASES = [
    (scree.InvalidArgument, ValueError),
    (scree.NotFound, KeyError),
    (scree.Exists, FileExistsError),
    (scree.NoSpace, MemoryError),
    (scree.PermissionDenied, PermissionError),
    (scree.Disconnected, ConnectionError),
    (scree.NotSupported, NotImplementedError),
    (scree.Closed, ValueError),
    (scree.Timeout, TimeoutError),
]


@pytest.mark.parametrize("cls, builtin", BUILTIN_BASES)
def test_every_class_is_a_scree_error_and_its_builtin(cls, builtin):
    assert issubclass(cls, scree.Error) and issubclass(cls, builtin)
    e = cls("what went wrong", None)
    assert str(e) == "what went wrong" and e.message == "what went wrong" and e.code is None
    assert not e.retryable


def test_os_errors_carry_the_errno_of_their_code_and_pickle():
    e = scree.Exists("batch 'a' exists", -errno.EEXIST)
    assert e.errno == errno.EEXIST and e.strerror == "batch 'a' exists"
    assert str(e) == "batch 'a' exists"
    d = scree.Disconnected("disconnected from the daemon", -4002)  # SCREE_EDISCONNECTED
    assert d.errno is None and str(d) == "disconnected from the daemon"
    for x in (e, d, scree.Busy("later", -errno.EAGAIN), scree.NoSpace("full", -errno.ENOSPC)):
        y = pickle.loads(pickle.dumps(x))
        assert type(y) is type(x) and (y.message, y.code) == (x.message, x.code)


def test_busy_is_retryable():
    assert scree.Busy.retryable and scree.Busy("x").retryable
    assert not scree.Error("x").retryable


# --- from a live daemon ---------------------------------------------------------


def test_exists_is_a_file_exists_error(client):
    a = scree.pack([np.ones((2, 3), np.float32)])
    client.put("x", a)
    with pytest.raises(FileExistsError) as e:
        client.put("x", a)
    assert isinstance(e.value, scree.Exists) and e.value.errno == errno.EEXIST


def test_no_space_is_a_memory_error(screed_factory):
    d = screed_factory("--memory-limit", "64K", "--arena-size", "64K")
    with scree.Client(d.socket) as c:
        with pytest.raises(MemoryError) as e:
            c.put("big", np.zeros((100_000,), np.float32), np.array([0, 100_000]))
    assert isinstance(e.value, scree.NoSpace) and e.value.code == -errno.ENOSPC


def test_disconnected_is_a_connection_error(tmp_path, screed):
    from conftest import require_client

    require_client()
    with pytest.raises(ConnectionError) as e:
        scree.Client(tmp_path / "none.sock")
    assert isinstance(e.value, scree.Disconnected) and e.value.errno == errno.ECONNREFUSED
    c = scree.Client(screed.socket)
    c.close()
    with pytest.raises(ConnectionError) as e:
        c.stats()
    assert isinstance(e.value, scree.Disconnected)


def connect_retrying(socket: str, timeout: float = 10.0) -> scree.Client:
    """What a caller does with a retryable error: tries again."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        try:
            return scree.Client(socket)
        except scree.Error as e:
            if not e.retryable or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def test_over_the_connection_limit_is_busy(screed_factory):
    d = screed_factory("--max-connections", "1")
    # The fixture's probe of the socket may hold the one slot for a moment.
    with connect_retrying(d.socket) as first:
        with pytest.raises(scree.Busy) as e:
            scree.Client(d.socket)
        assert e.value.retryable and e.value.code in (-errno.EAGAIN, -errno.EBUSY)
        first.stats()
    with connect_retrying(d.socket) as again:  # the retry succeeds once there is room
        again.stats()


def test_a_closed_batch_raises_closed(client):
    client.put("b", scree.pack([np.ones((2, 3), np.float32)]))
    with client.get("b") as b:
        pass
    with pytest.raises(scree.Closed, match="closed") as e:
        b.values
    assert isinstance(e.value, ValueError) and isinstance(e.value, scree.Error)
