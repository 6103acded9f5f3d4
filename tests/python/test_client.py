"""scree.Client against a real screed: each test starts its own daemon on a
private socket (the screed fixture) and checks it exits 0 on SIGTERM."""

from __future__ import annotations

import errno
import gc
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

import scree
import scree.client
from scree import bridges
from scree.client import DeleteResult
from scree.kernels import varlen_attention

ROOT = Path(__file__).resolve().parents[2]


def mapping_of(address: int) -> str:
    """The /proc/self/maps line of the mapping holding address."""
    with open("/proc/self/maps") as f:
        for line in f:
            lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
            if lo <= address < hi:
                return line.strip()
    return ""


def sample(seed=0, dtype=np.float32, lengths=(3, 0, 5, 1)):
    rng = np.random.default_rng(seed)
    return scree.pack([rng.standard_normal((n, 2, 3)).astype(dtype) for n in lengths])


def eventually(cond, timeout=10.0) -> bool:
    """Waits for cond(): the daemon learns of another connection's close
    asynchronously, after this process's next request may have arrived."""
    import time

    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def leases(c: scree.Client, name: str) -> int:
    return c.stat(name).leases


# --- put, get, the store -------------------------------------------------------


def test_put_get_round_trip(client):
    arr = sample()
    client.put("a", arr)
    with client.get("a", framework="numpy") as b:
        assert b.name == "a" and b.framework == "numpy"
        assert (b.batch_size, b.total_length, b.max_length) == (4, 9, 5)
        assert b.inner_shape == (2, 3) and b.values.dtype == np.float32
        np.testing.assert_array_equal(b.values, arr.values)
        np.testing.assert_array_equal(b.offsets, arr.offsets)
        np.testing.assert_array_equal(b[2], arr[2])


@pytest.mark.parametrize("dtype", ["bool", "int8", "int16", "int32", "int64", "uint8",
                                   "float16", "float32", "float64"])
@pytest.mark.parametrize("offsets_dtype", ["int32", "int64"])
def test_numpy_dtypes(client, dtype, offsets_dtype):
    values = (np.arange(12) % 3).astype(dtype).reshape(6, 2)
    offsets = np.array([0, 2, 2, 6], dtype=offsets_dtype)
    client.put("x", scree.from_cu_seqlens(values, offsets))
    with client.get("x", framework="numpy") as b:
        assert b.values.dtype == np.dtype(dtype) and b.offsets.dtype == np.dtype(offsets_dtype)
        np.testing.assert_array_equal(b.values, values)
        np.testing.assert_array_equal(b.offsets, offsets)
    assert client.stat("x").dtype == dtype and client.stat("x").offsets_dtype == offsets_dtype


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.bool,
                                   torch.float8_e4m3fn, torch.float8_e5m2])
def test_torch_dtypes_through_dlpack(client, dtype):
    values = torch.randn(7, 4).to(dtype)
    client.put("t", scree.pack([values[:3], values[3:]]))
    with client.get("t", framework="torch") as b:
        assert b.values.dtype == dtype and b.offsets.dtype == torch.int64
        assert torch.equal(b.values.view(torch.uint8), values.view(torch.uint8))
        assert b.offsets.tolist() == [0, 3, 7]
    # numpy views carry the real dtype too (ml_dtypes'), never raw bits.
    name = str(dtype).rsplit(".", 1)[-1]
    with client.get("t", framework="numpy") as b:
        assert b.values.dtype.name == name and b.dtype.name == name
        bits = values.view(torch.uint8).numpy()
        np.testing.assert_array_equal(b.values.view(np.uint8), bits)


def test_put_values_and_offsets_of_any_framework(client):
    values = torch.arange(10, dtype=torch.int32)
    client.put("v", values, torch.tensor([0, 4, 10], dtype=torch.int32))
    with client.get("v") as b:
        assert b.values.tolist() == list(range(10)) and b.offsets.tolist() == [0, 4, 10]


def test_list_stat_stats_delete(client):
    for name in ("run/a", "run/b", "other"):
        client.put(name, sample())
    assert [i.name for i in client.list()] == ["other", "run/a", "run/b"]
    assert [i.name for i in client.list(prefix="run/")] == ["run/a", "run/b"]
    st = client.stat("run/a")
    assert (st.batch_size, st.total_length, st.max_length, st.inner_shape) == (4, 9, 5, (2, 3))
    assert st.state == "sealed" and st.values_bytes == 9 * 6 * 4 and st.offsets_bytes == 5 * 8
    assert st.owner_pid == os.getpid() and st.leases == 0 and not st.delete_pending
    s = client.stats()
    assert s.batches == 3 and s.connections == 1 and s.bytes_used >= 3 * (216 + 40)
    assert client.delete("run/a") == "deleted"
    assert [i.name for i in client.list("run/")] == ["run/b"]
    assert client.stats().batches == 2
    info = client.info
    assert info.backend == "host" and info.device == "cpu" and info.protocol_version == 1


# --- zero copy and lifetimes -----------------------------------------------------


def test_get_is_zero_copy_and_read_only(client):
    client.put("z", sample())
    with client.get("z", framework="numpy") as b1, client.get("z", framework="numpy") as b2:
        addr = b1.values.__array_interface__["data"][0]
        assert addr == b1.address == b2.values.__array_interface__["data"][0]
        line = mapping_of(addr)
        assert "memfd:" in line, line  # the daemon's arena, mapped here
        assert not b1.values.flags.writeable and not b1.offsets.flags.writeable
        with pytest.raises(ValueError, match="read-only"):
            b1.values[0, 0, 0] = 1.0
        with pytest.raises(ValueError, match="read-only"):
            b1.offsets[0] = 1
        assert client.info.arena_imports == 1  # one import, cached for the second get
        t = client.get("z", framework="torch")
        assert t.values.data_ptr() == addr


def test_view_kept_after_with_stays_valid_until_dropped(client):
    arr = sample()
    client.put("k", arr)
    with client.get("k") as b:
        kept = b.values
        row = b[2]
    assert b.closed
    with pytest.raises(scree.Error, match="closed"):
        b.values
    assert b.batch_size == 4  # host metadata survives close
    gc.collect()
    assert leases(client, "k") == 1  # the views hold the lease
    np.testing.assert_array_equal(kept, arr.values)
    np.testing.assert_array_equal(row, arr[2])
    del kept, row
    gc.collect()
    assert leases(client, "k") == 0


def test_dropping_a_batch_without_with_releases_its_lease(client):
    client.put("g", sample())
    b = client.get("g")
    assert leases(client, "g") == 1
    del b
    gc.collect()
    assert leases(client, "g") == 0


def test_torch_view_holds_the_lease_through_dlpack(client):
    client.put("d", sample())
    with client.get("d", framework="torch") as b:
        t = b.values[1:]  # a view of the DLPack tensor
    gc.collect()
    assert leases(client, "d") == 1
    assert torch.equal(t, torch.from_numpy(sample().values[1:]))
    del t
    gc.collect()
    assert leases(client, "d") == 0


def test_dlpack_capsules_and_numpy_from_dlpack(client):
    client.put("c", sample())
    b = client.get("c")
    lease = b._lease()
    tensor = lease.tensor(0)
    assert tensor.__dlpack_device__() == (1, 0)
    cap = tensor.__dlpack__()
    del cap  # never consumed: the capsule's destructor drops its reference
    x = np.from_dlpack(tensor)
    np.testing.assert_array_equal(x, sample().values)
    del b, lease, tensor
    gc.collect()
    assert leases(client, "c") == 1  # x still holds it
    del x
    gc.collect()
    assert leases(client, "c") == 0


def test_dlpack_deleter_from_another_thread(client):
    client.put("th", sample())
    with client.get("th", framework="torch") as b:
        t = b.values
    box = [t]
    del t
    th = threading.Thread(target=box.clear)
    th.start()
    th.join()
    gc.collect()
    assert leases(client, "th") == 0


def test_closing_the_client_waits_for_its_views(screed):
    c = scree.Client(screed.socket)
    c.put("w", sample())
    view = c.get("w").values
    c.close()
    assert c.closed
    with pytest.raises(scree.Disconnected):
        c.get("w")
    np.testing.assert_array_equal(view, sample().values)  # still mapped
    with scree.Client(screed.socket) as other:
        assert other.stats().connections == 2
        del view
        gc.collect()
        # The first connection closed with its view.
        assert eventually(lambda: other.stats().connections == 1)


def test_delete_while_leased_is_deferred(client):
    client.put("del", sample())
    with client.get("del") as b:
        assert client.delete("del") == "deferred"
        with pytest.raises(scree.NotFound):
            client.stat("del")
        assert client.stats().pending_deletes == 1
        np.testing.assert_array_equal(b.values, sample().values)
    gc.collect()
    assert client.stats().pending_deletes == 0


# --- create and seal -------------------------------------------------------------


def test_create_fill_seal_in_place(client, screed):
    b = client.create("c1", np.float32, (3,), lengths=[2, 0, 4], framework="numpy")
    assert b.values.shape == (6, 3) and b.values.flags.writeable
    assert b.offsets.tolist() == [0, 2, 2, 6]
    b.values[:] = np.arange(18, dtype=np.float32).reshape(6, 3)
    with pytest.raises(scree.WrongState):
        client.get("c1")
    assert client.stat("c1").state == "created"
    b.seal()
    assert client.stat("c1").state == "sealed"
    with client.get("c1", framework="numpy") as g:
        # The same memory, written in place, seen through a read-only
        # mapping of its own: the creator's writable one never serves a get.
        assert g.address != b.address and not g.values.flags.writeable
        np.testing.assert_array_equal(g.values, b.values)
        assert g.values[5, 2] == 17 and g.max_length == 4
    with scree.Client(screed.socket) as other, other.get("c1") as g:
        np.testing.assert_array_equal(g.values, np.arange(18).reshape(6, 3))
    with pytest.raises(scree.WrongState):
        b.seal()


def test_shared_batches_land_in_the_shared_pool(client, screed):
    arr = sample()
    client.put("own", arr)
    client.put("pub", arr, shared=True)
    client.put("pub-split", arr.values, arr.offsets, shared=True)
    b = client.create("pub-created", np.float32, (2, 3), lengths=[1, 2], shared=True)
    b.values[:] = 1.5
    b.seal()
    b.close()
    own, pub = client.stat("own").arena_id, client.stat("pub").arena_id
    # The owner's private arena never holds a shared batch; the shared pool
    # keeps its batches together.
    assert pub != own
    assert client.stat("pub-split").arena_id == pub
    assert client.stat("pub-created").arena_id == pub
    client.put("own2", arr, shared=False)
    assert client.stat("own2").arena_id == own
    with scree.Client(screed.socket) as other, other.get("pub") as g:
        np.testing.assert_array_equal(g.values, arr.values)
    with client.get("pub-created") as g:
        assert (g.values == 1.5).all()


def test_seal_with_bad_offsets_names_the_index(client):
    b = client.create("bad", "int64", (), offsets=[0, 5, 3, 8])
    with pytest.raises(scree.InvalidArgument, match=r"offsets\[1\]") as e:
        b.seal()
    assert e.value.code == -errno.EINVAL
    b.offsets[2] = 6  # the batch stays created: fix the offsets and seal again
    b.seal()
    assert client.stat("bad").max_length == 5


def test_pipelined_put_is_sealed_before_the_next_request(client, screed):
    arr = sample(3)
    client.put("p1", arr, pipelined=True)
    # The daemon serves the connection in order: this get finds it sealed.
    with client.get("p1") as g:
        np.testing.assert_array_equal(g.values, arr.values)
    for i in range(20):
        client.put(f"p-{i}", arr, pipelined=True)
    client.flush()
    client.flush()  # nothing pending: returns at once
    assert [b.state for b in client.list("p-")] == ["sealed"] * 20
    with scree.Client(screed.socket) as other, other.get("p-19") as g:
        np.testing.assert_array_equal(g.offsets, arr.offsets)


def test_a_pipelined_seal_that_fails_raises_at_flush(client):
    b = client.create("pb", "int64", (), offsets=[0, 5, 3, 8])
    b.seal(pipelined=True)  # sent; its answer is not read yet
    with pytest.raises(scree.InvalidArgument, match=r"the seal of 'pb'.*offsets\[1\]") as e:
        client.flush()
    assert e.value.code == -errno.EINVAL
    client.flush()  # reported once
    assert client.stat("pb").state == "created"  # a failed seal's batch stays created
    b.offsets[2] = 6
    client.seal("pb", pipelined=True)
    client.flush()
    assert client.stat("pb").state == "sealed"


def test_a_pipelined_seal_that_fails_raises_at_the_next_call(client):
    b = client.create("pn", "int64", (), offsets=[0, 2, 1])
    b.seal(pipelined=True)
    with pytest.raises(scree.InvalidArgument, match="the seal of 'pn'"):
        client.stats()  # raises the seal's error instead of answering
    assert client.stats().batches == 1  # then serves as before


def test_a_pipelined_seal_failure_taken_by_a_lease_going_away_is_not_lost(client):
    client.put("held", sample())
    g = client.get("held")
    b = client.create("pl", "int64", (), offsets=[0, 4, 2])
    b.seal(pipelined=True)
    # The lease's release is the next call on the connection: it takes the
    # seal's answer but cannot raise from a destructor, so the next method
    # raises it.
    del g
    gc.collect()
    with pytest.raises(scree.InvalidArgument, match="the seal of 'pl'"):
        client.stat("held")
    assert client.stat("held").leases == 0
    assert client.stat("pl").state == "created"


def test_a_pipelined_seal_failure_survives_calls_that_take_no_reply(client):
    client.put("held", sample())
    g = client.get("held")
    b = client.create("pq", "int64", (), offsets=[0, 4, 2])
    b.seal(pipelined=True)
    # Neither of these reaches the daemon, so neither takes the seal's
    # answer: the info comes from the client, and a put whose offsets are
    # bad is refused before it sends anything.
    assert client.info.backend == "host"
    with pytest.raises(scree.InvalidArgument):
        client.put("bad", np.zeros((2,), np.float32), np.array([0, 3, 2]))
    # The lease's release then takes it: the next method still raises it.
    del g
    gc.collect()
    with pytest.raises(scree.InvalidArgument, match="the seal of 'pq'"):
        client.stat("held")
    assert client.stat("pq").state == "created"


def test_unsealed_batch_goes_with_its_connection(screed, client):
    with scree.Client(screed.socket) as c2:
        c2.create("tmp", "float32", (), lengths=[1])
        assert client.stat("tmp").state == "created"
    assert eventually(lambda: [b.name for b in client.list("tmp")] == [])


# --- errors -------------------------------------------------------------------------


def test_error_classes_and_codes(client):
    with pytest.raises(scree.NotFound, match="nope") as e:
        client.get("nope")
    assert e.value.code == -errno.ENOENT and isinstance(e.value, KeyError)
    with pytest.raises(scree.NotFound):
        client.delete("nope")
    client.put("e", sample())
    with pytest.raises(scree.Exists) as e:
        client.put("e", sample())
    assert e.value.code == -errno.EEXIST
    with pytest.raises(scree.InvalidArgument, match=r"offsets\[2\]"):
        client.put("bad", np.zeros(4, np.float32), np.array([0, 3, 1, 4]))
    with pytest.raises(scree.InvalidArgument):
        client.put("", sample())
    with pytest.raises(scree.InvalidArgument):
        client.put("x" * 300, sample())
    with pytest.raises(scree.InvalidArgument, match="dtype"):
        client.create("c", "complex64", (), lengths=[1])
    try:
        client.attention("e", "e", "e", "out")
    except scree.NotSupported as err:  # until the daemon runs attention
        assert err.code == -errno.ENOTSUP
    else:
        assert client.stat("out").state == "sealed"
    assert client.stats().errors.get("ENOENT", 0) >= 2


def test_no_space_with_a_small_memory_limit(screed_factory):
    d = screed_factory("--memory-limit", "64K", "--arena-size", "64K")
    with scree.Client(d.socket) as c:
        with pytest.raises(scree.NoSpace) as e:
            c.put("big", np.zeros((100_000,), np.float32), np.array([0, 100_000]))
        assert e.value.code == -errno.ENOSPC
        assert "400000" in str(e.value) or "bytes" in str(e.value)
        c.put("small", np.zeros(16, np.float32), np.array([0, 16]))


def test_no_daemon_is_disconnected(tmp_path):
    from conftest import require_client

    require_client()
    with pytest.raises(scree.Disconnected, match="no daemon") as e:
        scree.Client(tmp_path / "none.sock")
    assert e.value.code == -errno.ECONNREFUSED


def test_default_socket_comes_from_the_environment(screed, monkeypatch):
    monkeypatch.setenv("SCREE_SOCKET", screed.socket)
    with scree.Client() as c:
        assert c.socket == screed.socket and c.stats().connections == 1


def test_requests_after_close_raise_disconnected(screed):
    c = scree.Client(screed.socket)
    c.close()
    c.close()  # idempotent
    with pytest.raises(scree.Disconnected):
        c.stats()


# --- processes and threads -------------------------------------------------------


def run_python(code: str, **env: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, env=dict(os.environ, **env),
                          cwd=str(ROOT / "tests" / "python"))
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_producer_exits_before_the_consumer_gets(client, screed):
    run_python(
        "import conftest, numpy as np, scree\n"
        "c = scree.Client()\n"
        "c.put('from-child', scree.pack([np.full((n, 2), n, np.int16) for n in (1, 4, 2)]))\n",
        SCREE_SOCKET=screed.socket)
    with client.get("from-child") as b:
        assert b.offsets.tolist() == [0, 1, 5, 7]
        assert b.values[:, 0].tolist() == [1, 4, 4, 4, 4, 2, 2]
        assert client.stat("from-child").owner_pid != os.getpid()


def test_threads_share_one_client(client):
    errors = []

    def work(i):
        try:
            for j in range(20):
                name = f"t{i}/{j}"
                client.put(name, sample(seed=j))
                with client.get(name) as b:
                    np.testing.assert_array_equal(b.values, sample(seed=j).values)
                client.delete(name)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert client.stats().batches == 0


def test_a_forked_child_cannot_use_the_parent_client(client):
    client.put("f", sample())
    b = client.get("f")
    pid = os.fork()
    if pid == 0:  # the child: requests refuse, dropping the lease sends nothing
        code = 1
        try:
            client.stats()
        except scree.Disconnected:
            code = 0
        del b
        gc.collect()
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0
    assert leases(client, "f") == 1  # the child did not release the parent's lease
    del b
    gc.collect()
    assert leases(client, "f") == 0


def test_source_tree_imports_without_the_extension():
    out = run_python(
        "import sys\n"
        f"sys.path.insert(0, {str(ROOT / 'client' / 'python')!r})\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'scree._native': raise ImportError('blocked')\n"
        "sys.meta_path.insert(0, Block())\n"
        "import numpy as np, scree\n"
        "assert not scree.native_available()\n"
        "print(scree.pack([np.ones(2), np.ones(1)]).offsets.tolist())\n"
        "try:\n"
        "    scree.Client('/nonexistent')\n"
        "except scree.NotSupported as e:\n"
        "    print('NotSupported', 'pip install' in str(e))\n")
    assert out.split("\n")[:2] == ["[0, 2, 3]", "NotSupported True"]


# --- what get returns: one framework everywhere, real dtypes, delete's answer ------


def test_default_framework_is_torch_on_host_memory_as_on_a_gpu(client):
    # The same program gets the same types from a CPU and a GPU daemon.
    client.put("fw", sample())
    with client.get("fw") as b:
        assert b.framework == "torch" and isinstance(b.values, torch.Tensor)
        assert torch.equal(b.values, torch.from_numpy(sample().values))
    made = client.create("fw2", np.float32, (2,), lengths=[1, 2])
    assert made.framework == "torch" and isinstance(made.values, torch.Tensor)
    made.values.copy_(torch.arange(6, dtype=torch.float32).reshape(3, 2))
    made.seal()
    with client.get("fw2", framework="numpy") as b:
        assert b.values.tolist() == [[0, 1], [2, 3], [4, 5]]


def test_default_framework_without_torch_is_numpy(client, monkeypatch):
    monkeypatch.setattr(scree.client, "_have_torch", lambda: False)
    client.put("np", sample())
    with client.get("np") as b:
        assert b.framework == "numpy" and not b.values.flags.writeable
    with pytest.raises(scree.InvalidArgument, match="framework must be"):
        client.get("np", framework="jax")


def test_bfloat16_arrives_as_bfloat16_and_feeds_hf_and_attention(client):
    # Issue 16: bfloat16 hidden states came back from host memory as uint16.
    torch.manual_seed(0)
    rows = [torch.randn(n, 2, 8).to(torch.bfloat16) for n in (3, 5)]
    client.put("bf", scree.pack(rows))
    with client.get("bf") as b:
        assert b.dtype == torch.bfloat16 and b.values.dtype == torch.bfloat16
        hidden, mask = bridges.to_hf_padded(b)
        assert hidden.dtype == torch.bfloat16 and mask.dtype == torch.int64
        out = varlen_attention(b.values, b.values, b.values, b.offsets)
        assert out.dtype == torch.bfloat16 and out.shape == b.values.shape
    with client.get("bf", framework="numpy") as b:
        assert b.dtype.name == "bfloat16"
        hidden, mask = bridges.to_hf_padded(b)
        assert hidden.dtype.name == "bfloat16"
        want = torch.cat(rows).float().numpy()
        np.testing.assert_array_equal(b.values.astype(np.float32), want)
        # The raw bits, only when asked for.
        assert b.values.view(np.uint16).dtype == np.uint16


def test_without_ml_dtypes_numpy_bfloat16_refuses_instead_of_raw_bits(client, screed):
    # In a child: once imported, ml_dtypes has taught numpy the name
    # "bfloat16" for good.
    client.put("bf", scree.pack([torch.ones(2, 3, dtype=torch.bfloat16)]))
    code = (
        "import sys; sys.modules['ml_dtypes'] = None\n"
        "import scree, torch\n"
        "c = scree.Client(sys.argv[1])\n"
        "assert c.get('bf', framework='torch').dtype == torch.bfloat16\n"
        "try:\n"
        "    c.get('bf', framework='numpy')\n"
        "except scree.NotSupported as e:\n"
        "    print('refused:', e)\n"
    )
    pkg = str(Path(scree.__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([pkg] + [p for p in sys.path if p]))
    p = subprocess.run([sys.executable, "-c", code, screed.socket], env=env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "refused: numpy has no bfloat16" in p.stdout and "pip install ml_dtypes" in p.stdout


def test_put_of_numpy_bfloat16_and_fp8(client):
    import ml_dtypes

    for dt in (ml_dtypes.bfloat16, ml_dtypes.float8_e4m3fn, ml_dtypes.float8_e5m2):
        values = np.arange(6, dtype=np.float32).reshape(3, 2).astype(dt)
        client.put("ml", scree.pack([values[:1], values[1:]]))
        assert client.stat("ml").dtype == np.dtype(dt).name
        with client.get("ml", framework="numpy") as b:
            assert b.values.dtype == np.dtype(dt)
            np.testing.assert_array_equal(b.values, values)
        with client.get("ml", framework="torch") as b:
            assert str(b.values.dtype) == "torch." + np.dtype(dt).name
        client.delete("ml")


def test_delete_says_what_happened(client):
    client.put("a", sample())
    client.put("b", sample())
    r = client.delete("a")
    assert r == "deleted" and r is DeleteResult.DELETED and not r.deferred
    assert bool(r) and str(r) == "deleted"
    with client.get("b") as view:
        r = client.delete("b")
        assert r == "deferred" and r.deferred and bool(r)
        assert (view.values == torch.from_numpy(sample().values)).all()
    with pytest.raises(scree.NotFound):
        client.delete("a")
