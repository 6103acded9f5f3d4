"""Where scree.Client looks when given no socket: the order libscreeclient
computes (scree_default_socket_paths, the one screed follows), the path it
reports, and the error that names every path tried."""

from __future__ import annotations

import errno
import os
import socket as sk

import pytest

import scree


def _answers(path: str) -> bool:
    s = sk.socket(sk.AF_UNIX, sk.SOCK_SEQPACKET)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


@pytest.fixture
def native():
    from conftest import require_client

    require_client()


def test_scree_socket_alone_when_set(native, monkeypatch):
    monkeypatch.setenv("SCREE_SOCKET", "/tmp/somewhere.sock")
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/4242")
    assert scree.default_socket_paths() == ["/tmp/somewhere.sock"]


def test_system_then_per_user(native, monkeypatch, tmp_path):
    monkeypatch.delenv("SCREE_SOCKET", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    uid = os.geteuid()
    assert scree.default_socket_paths() == [
        scree.client.DEFAULT_SOCKET, f"{tmp_path}/scree-{uid}/screed.sock"]
    monkeypatch.setenv("SCREE_SOCKET", "")  # empty counts as unset
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert scree.default_socket_paths() == [
        scree.client.DEFAULT_SOCKET, f"/tmp/scree-{uid}/screed.sock"]


def test_client_finds_a_daemon_at_the_per_user_path(screed, monkeypatch, tmp_path):
    if _answers(scree.client.DEFAULT_SOCKET):
        pytest.skip("a system screed answers first")
    # The runtime directory's scree-UID is the test daemon's directory.
    os.symlink(screed.dir, tmp_path / f"scree-{os.geteuid()}")
    monkeypatch.delenv("SCREE_SOCKET", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    want = f"{tmp_path}/scree-{os.geteuid()}/screed.sock"
    assert scree.default_socket_paths()[1] == want
    with scree.Client() as c:
        assert c.socket == want
        assert c.stats().connections == 1


def test_explicit_socket_is_reported_as_given(client, screed):
    assert client.socket == screed.socket


def test_no_daemon_names_every_path_and_how_to_start_one(native, monkeypatch, tmp_path):
    if _answers(scree.client.DEFAULT_SOCKET):
        pytest.skip("a system screed answers")
    monkeypatch.delenv("SCREE_SOCKET", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    with pytest.raises(scree.Disconnected) as e:
        scree.Client()
    msg = str(e.value)
    assert e.value.code == -errno.ECONNREFUSED
    assert scree.client.DEFAULT_SOCKET in msg
    assert f"{tmp_path}/scree-{os.geteuid()}/screed.sock" in msg
    for how in ("make run", "screed --device cpu", "systemctl start screed"):
        assert how in msg, msg
