"""A Batch from get (or a sealed one from create) pickles as a handle: the
receiving process attaches to the same daemon memory with a lease of its own;
a plain scree.Array pickles by value."""

from __future__ import annotations

import gc
import multiprocessing as mp
import pickle
import time

import numpy as np
import pytest
import torch

import scree


def sample(n_rows=1000):
    rng = np.random.default_rng(0)
    return scree.pack([rng.standard_normal((n, 8)).astype(np.float32)
                       for n in (n_rows, 0, 7)])


def test_a_batch_pickles_as_a_small_handle_and_attaches_with_its_own_lease(client):
    arr = sample()
    client.put("p/a", arr)
    with client.get("p/a") as b:
        data = pickle.dumps(b)
        assert len(data) < 1000 < arr.values.nbytes  # a handle, not the values
        b2 = pickle.loads(data)
        assert isinstance(b2, scree.Batch) and b2.name == "p/a"
        assert b2.framework == "torch" and b2.offsets.tolist() == [0, 1000, 1000, 1007]
        assert torch.equal(b2.values, torch.from_numpy(arr.values))
        assert client.stat("p/a").leases == 2
    with client.get("p/a", framework="numpy") as b:
        b3 = pickle.loads(pickle.dumps(b, protocol=pickle.HIGHEST_PROTOCOL))
    assert b3.framework == "numpy" and not b3.values.flags.writeable
    assert (b3.values == arr.values).all()
    del b2, b3
    gc.collect()
    assert client.stat("p/a").leases == 0


def test_a_plain_array_keeps_pickling_by_value():
    arr = sample(10)
    data = pickle.dumps(arr)
    assert len(data) > arr.values.nbytes
    back = pickle.loads(data)
    assert type(back) is scree.Array and (back.values == arr.values).all()
    t = scree.pack([torch.ones(2, 3), torch.zeros(4, 3)])
    back = pickle.loads(pickle.dumps(t))
    assert type(back) is scree.Array and torch.equal(back.values, t.values)


def _consumer(q_in, q_out):
    # In the child: attach to what came through the queue, read it, send a
    # summary and the batch itself back (pickled again, from this process).
    b = q_in.get()
    q_out.put((b.name, float(b.values.double().sum()), b.offsets.tolist(),
               b._client.stat(b.name).leases))
    q_out.put(b)
    assert q_in.get() == "done"


def test_a_batch_through_a_multiprocessing_queue(client):
    arr = sample()
    client.put("p/q", arr)
    ctx = mp.get_context("fork")
    q_in, q_out = ctx.Queue(), ctx.Queue()
    child = ctx.Process(target=_consumer, args=(q_in, q_out))
    child.start()
    try:
        with client.get("p/q") as b:
            q_in.put(b)
        name, total, offsets, seen = q_out.get(timeout=30)
        assert name == "p/q" and offsets == [0, 1000, 1000, 1007]
        assert total == pytest.approx(float(arr.values.astype(np.float64).sum()))
        # The child holds a lease of its own (the sender's may be gone
        # already: its batch was closed right after put).
        assert seen in (1, 2)
        back = q_out.get(timeout=30)       # a handle from the child, attached here
        assert isinstance(back, scree.Batch) and torch.equal(back.values,
                                                             torch.from_numpy(arr.values))
        q_in.put("done")
        child.join(30)
        assert child.exitcode == 0
        del back
        gc.collect()
        # The child's lease went with its connection, which the daemon sees
        # close asynchronously.
        deadline = time.monotonic() + 10
        while client.stat("p/q").leases and time.monotonic() < deadline:
            time.sleep(0.005)
        assert client.stat("p/q").leases == 0
    finally:
        if child.is_alive():
            child.kill()


def test_a_deleted_batch_cannot_be_unpickled(client):
    client.put("p/d", sample(4))
    with client.get("p/d") as b:
        data = pickle.dumps(b)
        client.delete("p/d")
        with pytest.raises(scree.NotFound, match="was deleted"):
            pickle.dumps(b)                           # nothing to attach to any more
    with pytest.raises(scree.NotFound, match="no such batch any more"):
        pickle.loads(data)


def test_a_name_created_again_is_not_the_pickled_batch(client):
    client.put("p/r", sample(4))
    with client.get("p/r") as b:
        data = pickle.dumps(b)
    client.delete("p/r")
    client.put("p/r", sample(9))
    with pytest.raises(scree.WrongState, match="another batch"):
        pickle.loads(data)


def test_the_same_shape_again_under_the_name_is_not_the_pickled_batch(client):
    # Same shape, same owner and process, and (the emptied arena being kept
    # for the next batch that fits) the same arena and offset: only the
    # daemon's batch id tells the two apart.
    client.put("p/s", sample(4))
    with client.get("p/s") as b:
        data = pickle.dumps(b)
        first_id, first_at = b._meta[4], b.address
    assert first_id > 0
    client.delete("p/s")
    client.put("p/s", sample(4))
    with client.get("p/s") as again:
        assert again.address == first_at and again._meta[4] != first_id
    with pytest.raises(scree.WrongState, match="another batch"):
        pickle.loads(data)
    # A Batch pickled after its name got the same shape again: the handle
    # carries its own id, and the receiver refuses the batch it finds.
    client.put("p/t", sample(4))
    old = client.get("p/t")
    client.delete("p/t")
    client.put("p/t", sample(4))
    data = pickle.dumps(old)
    old.close()
    with pytest.raises(scree.WrongState, match="another batch"):
        pickle.loads(data)


def test_a_created_batch_put_again_under_its_name_is_not_the_pickled_one(client):
    made = client.create("p/m", np.float32, (2,), lengths=[3], framework="numpy")
    assert made._meta[4] > 0  # the created batch's id, from Create's reply
    made.values[:] = 1
    made.seal()
    client.delete("p/m")
    again = scree.pack([np.full((3, 2), 7, np.float32)])
    client.put("p/m", again)  # the same shape, into the same kept arena
    data = pickle.dumps(made)
    made.close()
    with pytest.raises(scree.WrongState, match="another batch"):
        pickle.loads(data)


def test_created_batches_pickle_once_sealed_and_closed_ones_too(client):
    made = client.create("p/c", np.float32, (2,), lengths=[3], framework="numpy")
    with pytest.raises(scree.WrongState, match="not sealed"):
        pickle.dumps(made)
    made.values[:] = 1
    made.seal()
    back = pickle.loads(pickle.dumps(made))
    assert back.values.sum() == 6 and not back.values.flags.writeable
    made.close()
    # multiprocessing.Queue pickles in its feeder thread, maybe after the
    # sender's `with` block: the handle is the name, which is still there.
    again = pickle.loads(pickle.dumps(made))
    assert again.values.sum() == 6
