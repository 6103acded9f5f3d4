"""Waiting and watching from Python: Client.get(wait=...), Client.watch and
their asyncio forms, against a real screed."""

from __future__ import annotations

import asyncio
import math
import os
import select
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import scree


def small(seed=0):
    return scree.pack([np.full((2, 3), seed, np.float32), np.zeros((1, 3), np.float32)])


def eventually(cond, timeout=10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


# --- get(wait=...) ---------------------------------------------------------------


def test_get_waits_for_a_later_put_with_the_gil_released(client, screed):
    got = {}

    def waiter():
        with scree.Client(screed.socket) as c, c.get("w/late", wait=math.inf) as b:
            got["offsets"] = b.offsets.tolist()
            got["at"] = time.monotonic()

    t = threading.Thread(target=waiter)
    t.start()
    # The waiter is parked in the daemon, and this thread runs meanwhile.
    assert eventually(lambda: client.stats().waiters == 1)
    put_at = time.monotonic()
    client.put("w/late", small())
    t.join(10)
    assert not t.is_alive() and got["offsets"] == [0, 2, 3] and got["at"] >= put_at
    assert client.stats().waiters == 0


def test_get_with_a_finite_wait(client):
    client.put("w/there", small())
    with client.get("w/there", wait=5) as b:       # sealed already: answers at once
        assert b.batch_size == 2
    with client.get("w/there", wait=0) as b:
        assert b.batch_size == 2

    def put_soon():
        time.sleep(0.1)
        with scree.Client(client.socket) as c:
            c.put("w/soon", small(1))

    t = threading.Thread(target=put_soon)
    t.start()
    with client.get("w/soon", wait=30, framework="numpy") as b:
        assert b.values[0, 0] == 1
    t.join()


def test_wait_expiry_raises_timeout_and_the_client_stays_usable(client):
    t0 = time.monotonic()
    with pytest.raises(scree.Timeout) as e:
        client.get("w/never", wait=0.2)
    assert time.monotonic() - t0 >= 0.19
    assert isinstance(e.value, TimeoutError) and isinstance(e.value, scree.Error)
    assert "w/never" in str(e.value) and e.value.code == scree._native.ETIMEDOUT
    with pytest.raises(scree.Timeout):
        client.get("w/never", wait=0)             # answers at once, as a wait
    with pytest.raises(scree.NotFound):
        client.get("w/never")                     # no wait: as before
    client.put("w/after", small())
    assert client.stat("w/after").state == "sealed"


@pytest.mark.parametrize("bad", [-1, -math.inf, math.nan, "soon"])
def test_bad_waits_are_refused(client, bad):
    with pytest.raises(scree.InvalidArgument, match="wait"):
        client.get("w/x", wait=bad)


CHILD = r"""
import math, sys, numpy as np, scree
c = scree.Client()
print("waiting", flush=True)
try:
    c.get("w/ctrl-c", wait=math.inf)
except KeyboardInterrupt:
    print("interrupted", flush=True)
c.put("w/child", scree.pack([np.ones((1, 2))]))
with c.get("w/child") as b:
    print("usable", b.batch_size, flush=True)
try:
    with c.watch("nothing/") as w:
        print("watching", flush=True)
        next(w)
except KeyboardInterrupt:
    print("watch interrupted", flush=True)
"""


def test_ctrl_c_interrupts_a_wait_and_a_watch_and_the_client_stays_usable(client, screed):
    env = dict(os.environ, SCREE_SOCKET=screed.socket, PYTHONPATH=os.pathsep.join(sys.path))
    child = subprocess.Popen([sys.executable, "-c", CHILD], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    try:
        assert child.stdout.readline() == "waiting\n"
        assert eventually(lambda: client.stats().waiters == 1)
        t0 = time.monotonic()
        child.send_signal(signal.SIGINT)
        assert child.stdout.readline() == "interrupted\n"
        assert time.monotonic() - t0 < 5
        assert child.stdout.readline() == "usable 1\n"
        assert child.stdout.readline() == "watching\n"
        assert eventually(lambda: client.stats().watchers == 1)
        t0 = time.monotonic()
        child.send_signal(signal.SIGINT)
        out, _ = child.communicate(timeout=10)
        assert time.monotonic() - t0 < 5
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == 0, out
    assert out == "watch interrupted\n"
    assert client.stats().waiters == 0


# --- watch -------------------------------------------------------------------------


def test_watch_replays_then_follows_live_events(client):
    client.put("v/a", small())
    client.put("v/b", small())
    client.put("other", small())
    client.create("v/unsealed", np.float32, (3,), lengths=[1])  # never seen
    with client.watch("v/") as w:
        assert [w.next(timeout=10) for _ in range(2)] == [
            scree.Event("sealed", "v/a", 1), scree.Event("sealed", "v/b", 2)]
        with pytest.raises(scree.Timeout):
            w.next(timeout=0.05)
        assert client.stats().watchers == 1   # the client serves while it watches
        client.put("v/c", small())
        client.put("w/not-under-the-prefix", small())
        client.delete("v/a")
        ev = next(w)
        assert ev == ("sealed", "v/c", 3) and ev.kind == "sealed" and ev.seq == 3
        assert w.next(timeout=10) == scree.Event("deleted", "v/a", 4)
    assert w.closed and list(w) == []
    assert eventually(lambda: client.stats().watchers == 0)


def test_watch_without_replay_sees_only_what_happens_next(client):
    client.put("n/old", small())
    with client.watch("n/", replay=False) as w:
        client.put("n/new", small())
        assert w.next(timeout=10) == scree.Event("sealed", "n/new", 1)


def test_replay_and_live_events_under_a_concurrent_producer(client, screed):
    """Every name sealed before or during the watch's start is seen exactly
    once, with consecutive sequence numbers."""
    total = 300
    started = threading.Event()

    def produce():
        with scree.Client(screed.socket) as c:
            for i in range(total):
                c.put(f"c/{i:04d}", small(i))
                if i == total // 3:
                    started.set()

    t = threading.Thread(target=produce)
    t.start()
    started.wait(10)
    seen = []
    with client.watch("c/") as w:
        while len(seen) < total:
            seen.append(w.next(timeout=30))
    t.join()
    assert [e.seq for e in seen] == list(range(1, total + 1))
    assert all(e.kind == "sealed" for e in seen)
    assert sorted(e.name for e in seen) == [f"c/{i:04d}" for i in range(total)]


def test_a_watcher_that_falls_behind_gets_overflow_then_a_replay(client, screed):
    """Past the daemon's bounded queue one overflow event comes, and the
    watch starts again with a replay of what is sealed then."""
    with client.watch("o/") as w:
        n = 0
        # Far more events than the daemon queues for one watcher, none read.
        while True:
            client.put(f"o/{n:05d}", small())
            n += 1
            if client.stats().watch_overflows > 0:
                break
            assert n < 100_000, "no overflow"
        events = []
        while True:
            ev = w.next(timeout=10)
            events.append(ev)
            if ev.kind == "overflow":
                break
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
        assert events[-1].name == "" and len(events) - 1 < n
        # The resync: a replay of every batch sealed now, from seq 1.
        replay = [w.next(timeout=10) for _ in range(n)]
        assert [e.seq for e in replay] == list(range(1, n + 1))
        assert sorted(e.name for e in replay) == [f"o/{i:05d}" for i in range(n)]
        with pytest.raises(scree.Timeout):
            w.next(timeout=0.05)
        client.put("o/live", small())
        assert w.next(timeout=10) == scree.Event("sealed", "o/live", n + 1)


def test_watch_fileno_polls_readable_when_an_event_waits(client):
    with client.watch("f/", replay=False) as w:
        assert select.select([w], [], [], 0.05)[0] == []
        client.put("f/x", small())
        assert select.select([w], [], [], 10)[0] == [w]
        assert w.next(timeout=0) == scree.Event("sealed", "f/x", 1)


# --- asyncio -----------------------------------------------------------------------


def test_get_async_waits_without_blocking_the_loop(client, screed):
    async def main():
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        tick = asyncio.ensure_future(ticker())
        waits = [asyncio.ensure_future(client.get_async(f"a/{i}", wait=30)) for i in range(3)]
        await asyncio.sleep(0.2)
        assert not any(w.done() for w in waits) and ticks > 5
        for i in (2, 0, 1):
            client.put(f"a/{i}", small(i))
        batches = await asyncio.gather(*waits)
        tick.cancel()
        assert [int(b.values[0, 0]) for b in batches] == [0, 1, 2]
        for b in batches:
            b.close()
        with pytest.raises(scree.Timeout) as e:
            await client.get_async("a/never", wait=0.1)
        assert isinstance(e.value, TimeoutError)
        with pytest.raises(scree.NotFound):
            await client.get_async("a/never")
        # A cancelled wait leaves nothing behind.
        task = asyncio.ensure_future(client.get_async("a/never", wait=math.inf))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert eventually(lambda: client.stats().watchers == 0)


def test_watch_async(client):
    client.put("aw/0", small())

    async def main():
        seen = []
        async with client.watch_async("aw/") as w:
            async for ev in w:
                seen.append(ev)
                if len(seen) == 1:
                    asyncio.get_running_loop().call_soon(client.put, "aw/1", small())
                if len(seen) == 2:
                    break
            with pytest.raises(scree.Timeout):
                await w.next(timeout=0.05)
        return seen

    assert asyncio.run(main()) == [scree.Event("sealed", "aw/0", 1),
                                   scree.Event("sealed", "aw/1", 2)]
