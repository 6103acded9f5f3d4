"""The client of the ``screed`` daemon: publish packed batches and attach to
them without copies.

:class:`Client` is a thin layer over the native extension ``scree._native``
(libscreeclient, in C). Batches come back as :class:`Batch`, a
:class:`scree.Array` whose ``values`` and ``offsets`` are views of the
daemon's memory: numpy arrays on a host-memory daemon, torch tensors (through
DLPack) on a GPU daemon.

Which framework. ``get`` and ``create`` return torch tensors wherever torch
is installed, on a host-memory daemon and a GPU daemon alike, so the same
code runs on both; ``framework="numpy"`` asks for numpy arrays (host memory
only). Without torch installed the default is numpy, and a GPU batch cannot
be read.

dtypes. Views carry the batch's real dtype: bfloat16 and fp8 are
``torch.bfloat16``/``torch.float8_*`` in torch and ``ml_dtypes``' types in
numpy, never their raw bits (``.view(np.uint16)`` gives those on request).

Lifetime of a view. Every view keeps the lease that makes its memory valid:
a numpy view through its ``base`` chain, a torch tensor through its DLPack
deleter. The lease is released when the last of them is gone. Closing a
:class:`Batch` (the end of its ``with`` block) drops the batch's own
references; a view taken out of it (``v = batch.values``) stays valid and
keeps the lease until it is garbage-collected. Closing the :class:`Client`
likewise closes the connection only once no view of it is left. A view can
therefore never point at memory the daemon has reused, and using one never
crashes; the price is that a view kept alive keeps its batch's memory in the
store (a deleted batch goes with its last lease).
"""

from __future__ import annotations

import enum
import importlib.util
import math
import os
import sys
import threading
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Iterator, Literal, NamedTuple, Sequence

import numpy as np

from ._ext import DTYPE_CODES, native_attr
from ._ext import native as _native
from .array import Array, framework_of
from .errors import Closed, Disconnected, Error, InvalidArgument, NotFound, NotSupported, Timeout, WrongState

#: The frameworks a batch's views can be made in (a subset of
#: :data:`scree.array.Framework`).
BatchFramework = Literal["numpy", "torch"]

__all__ = ["Client", "Batch", "BatchInfo", "ClientInfo", "Stats", "PeerStats", "DeleteResult",
           "Event", "Watch", "AsyncWatch", "DEFAULT_SOCKET", "default_socket_paths",
           "native_available"]

#: The system socket, where a system screed serves and where :class:`Client`
#: looks first when given no path (SCREE_DEFAULT_SOCKET of scree/version.h,
#: through the extension); None without the extension, where no Client can
#: be made. :func:`default_socket_paths` gives the whole order.
DEFAULT_SOCKET: str | None = native_attr("DEFAULT_SOCKET")


def default_socket_paths() -> list[str]:
    """The sockets :class:`Client` tries, in order, when given none: the
    order ``screed`` itself follows to choose where it serves, computed by
    libscreeclient (``scree_default_socket_paths``) from the environment as
    it is now. ``[$SCREE_SOCKET]`` when that is set and not empty; else the
    system path (:data:`DEFAULT_SOCKET`) and then the per-user path
    ``$XDG_RUNTIME_DIR/scree-UID/screed.sock`` (``/tmp/scree-UID/...``
    without ``XDG_RUNTIME_DIR``), where a ``screed`` run by a user who may
    not serve the system path listens."""
    if _native is None:
        raise NotSupported("scree.default_socket_paths needs the native extension "
                           "scree._native, which this installation lacks")
    return _native.default_socket_paths()

# scree_dtype codes (part of the wire protocol, never renumbered), from the
# extension: the client needs it anyway.
_CODES = DTYPE_CODES
_ALIASES = {"bool_": "bool", "float8_e4m3": "float8_e4m3fn", "half": "float16",
            "float": "float32", "double": "float64"}
_NAMES = {v: k for k, v in _CODES.items()}


def native_available() -> bool:
    """Whether the native extension (and so :class:`Client`) is built."""
    return _native is not None


def _dtype_name(dtype: Any) -> str:
    if isinstance(dtype, str):
        name = dtype
    elif type(dtype).__module__ == "torch" or str(dtype).startswith("torch."):
        name = str(dtype).rsplit(".", 1)[-1]
    else:
        try:
            name = np.dtype(dtype).name
        except TypeError:
            name = str(dtype).rsplit(".", 1)[-1]
    return _ALIASES.get(name, name)


def _dtype_code(dtype: Any) -> int:
    name = _dtype_name(dtype)
    if name not in _CODES:
        raise InvalidArgument(f"scree has no dtype {name!r}; it stores {', '.join(_CODES)}")
    return _CODES[name]


def _numpy_dtype(code: int) -> np.dtype:
    """numpy's dtype for a scree code: ``ml_dtypes``' types for bfloat16 and
    fp8, which numpy itself lacks. Without ml_dtypes those raise
    :class:`NotSupported` rather than hand out raw bits."""
    name = _NAMES[code]
    try:
        return np.dtype(name)
    except TypeError:
        pass
    ml = sys.modules.get("ml_dtypes")
    if ml is None:
        try:
            import ml_dtypes as ml  # type: ignore[no-redef]
        except ImportError:
            raise NotSupported(
                f"numpy has no {name} and the ml_dtypes package (a dependency of scree, "
                f"which adds it) is not installed: pip install ml_dtypes, or use "
                f"framework='torch'"
            ) from None
    return np.dtype(getattr(ml, name))


def _torch_dtype(code: int) -> Any:
    import torch

    return getattr(torch, _NAMES[code])


def _numpy_view(t: Any) -> np.ndarray:
    # The buffer protocol keeps the Tensor (and its lease) as the array's
    # base and carries the read-only flag of a get.
    want = _numpy_dtype(t.dtype)  # first: no view of raw bits escapes
    a = np.asarray(t)
    if a.dtype != want:
        a = a.view(want)  # the buffer protocol carries bfloat16 and fp8 as their bits
    return a


def _torch_view(t: Any) -> Any:
    import torch

    x = torch.from_dlpack(t)
    want = _torch_dtype(t.dtype)
    if x.dtype != want:
        x = x.view(want)  # fp8 arrives as uint8 with a DLPack header before 1.1
    return x


def _have_torch() -> bool:
    return "torch" in sys.modules or importlib.util.find_spec("torch") is not None


def _framework(framework: str | None, lease: Any) -> str:
    """The framework of a Batch's views: ``framework`` when given, else torch
    wherever torch is installed (whatever memory the daemon serves from, so
    one program gets the same types from a CPU and a GPU daemon), else numpy."""
    if framework not in (None, "numpy", "torch"):
        raise InvalidArgument(f"framework must be 'numpy' or 'torch', got {framework!r}")
    on_gpu = lease.device[0] == "cuda"
    if framework is None:
        framework = "torch" if on_gpu or _have_torch() else "numpy"
    if framework == "numpy" and on_gpu:
        raise InvalidArgument("a batch in GPU memory cannot be a numpy array: use 'torch'")
    return framework


class DeleteResult(str, enum.Enum):
    """What :meth:`Client.delete` did: ``"deleted"`` (the memory is free) or
    ``"deferred"`` (leases still hold it; it goes with the last one). Both
    are true in a boolean test, so ``if not client.delete(x)`` never fires on
    success (a failure raises); compare with ``==`` or read :attr:`deferred`."""

    DELETED = "deleted"
    DEFERRED = "deferred"

    @property
    def deferred(self) -> bool:
        return self is DeleteResult.DEFERRED

    def __str__(self) -> str:
        return self.value


def _views(lease: Any, framework: str) -> tuple[Any, Any]:
    make = _torch_view if framework == "torch" else _numpy_view
    return make(lease.tensor(0)), make(lease.tensor(1))


class Batch(Array):
    """A batch in daemon memory, as a :class:`scree.Array` of views.

    From :meth:`Client.get` the views are read-only (numpy marks them so;
    torch has no read-only tensors: a write through a torch view of host
    memory, which the daemon maps read-only, kills the process with SIGSEGV
    after a message on stderr that names the batch). From :meth:`Client.create` they
    are writable until :meth:`seal`.

    Use it as a context manager, or call :meth:`close`: both drop the batch's
    own references to the views. The lease goes when no view taken out of the
    batch is left either (see the module documentation).
    """

    __slots__ = ("_name", "_client", "_lease_ref", "_closed", "_meta", "_created")

    def __init__(self, client: "Client", lease: Any, framework: BatchFramework, created: bool,
                 host_offsets: np.ndarray | None = None) -> None:
        values, offsets = _views(lease, framework)
        if host_offsets is None and lease.device[0] == "cpu":
            # A copy of B + 1 integers: the metadata then outlives close().
            host_offsets = np.array(_numpy_view(lease.tensor(1)), dtype=np.int64)
        super().__init__(values, offsets, host_offsets=host_offsets,
                         max_length=lease.max_length, validate=False)
        self._name = lease.name
        self._client = client
        self._lease_ref = lease
        self._closed = False
        self._created = created
        # What stays known after close: the shape, the dtypes, and the
        # daemon's id of the batch (0 from a daemon without ids), which tell
        # this batch from another one under the same name (__reduce__).
        inner = tuple(lease.inner_shape)
        self._meta = (lease.batch_size, lease.total_length, inner,
                      (_NAMES[lease.dtype], inner, lease.batch_size, lease.total_length,
                       _NAMES[lease.offsets_dtype]), int(lease.batch_id))

    @property
    def name(self) -> str:
        return self._name

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def address(self) -> int:
        """Address of the first value in this process (for zero-copy checks)."""
        return self._lease().address

    def _lease(self) -> Any:
        if self._closed:
            raise Closed(f"batch {self._name!r} is closed")
        return self._lease_ref

    @property
    def values(self) -> Any:
        self._lease()
        return self._values

    @property
    def offsets(self) -> Any:
        self._lease()
        return self._offsets

    @property
    def lengths(self) -> Any:
        self._lease()
        return super().lengths

    @property
    def host_offsets(self) -> np.ndarray:
        if self._host is None:
            self._lease()  # a GPU batch copies them on first use, before close
        return super().host_offsets

    @property
    def batch_size(self) -> int:
        return self._meta[0]

    @property
    def total_length(self) -> int:
        return self._meta[1]

    @property
    def inner_shape(self) -> tuple[int, ...]:
        return self._meta[2]

    def __getitem__(self, i: int) -> Any:
        self._lease()
        return super().__getitem__(i)

    def __iter__(self):
        self._lease()
        return super().__iter__()

    def seal(self, *, pipelined: bool = False) -> None:
        """Validate the offsets written into this created batch and publish
        it (:meth:`Client.seal`, ``pipelined`` as there). Write nothing
        through its views afterwards."""
        self._lease()
        if not self._created:
            raise Error(f"batch {self._name!r} came from get: only a created batch is sealed")
        self._client.seal(self._name, pipelined=pipelined)

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        """Pickle as a handle, not by value: the daemon's socket, the name and
        what identifies the batch under it. The receiving process attaches to
        the same memory with a lease of its own (:func:`_attach`), as
        torch.multiprocessing does with shared tensors and Ray with object
        references; nothing of the values travels.

        A closed batch pickles too (``multiprocessing.Queue`` pickles in a
        thread of its own, after ``put`` returned and maybe after the ``with``
        block ended). The handle does not keep the batch alive: it names it,
        so the batch must stay in the store until the receiver has attached.
        """
        try:
            info = self._client.stat(self._name)
        except NotFound:
            raise NotFound(
                f"batch {self._name!r} was deleted: a pickled Batch is a handle (the name), "
                f"and no other process could attach to it any more") from None
        if info.state != "sealed":
            raise WrongState(
                f"batch {self._name!r} is created but not sealed: seal it before pickling "
                f"it (another process can only attach to a sealed batch)")
        # This batch's id, which the receiver checks after its own get: the
        # same shape, owner and arena can come back under the name, the id
        # never does (0 from a daemon without ids: then the rest is checked).
        ident = _identity(info) + (int(self._meta[4]),)
        if ident[:5] != self._meta[3]:
            raise WrongState(
                f"the name {self._name!r} now holds another batch (deleted and created "
                f"again since this one was attached): a pickled Batch is a handle to the "
                f"batch under its name, and that is not this one any more")
        return (_attach, (self._client.socket, self._name, self._framework, ident))

    def close(self) -> None:
        """Drop this batch's references to its views (idempotent)."""
        self._closed = True
        self._values = self._offsets = self._lengths = None
        self._lease_ref = None

    def __enter__(self) -> "Batch":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        if self._closed:
            return f"scree.Batch({self._name!r}, closed)"
        return f"scree.Batch({self._name!r}, {super().__repr__()[len('scree.Array('):-1]})"


def _identity(info: "BatchInfo") -> tuple[Any, ...]:
    """What a Stat says of a batch: its descriptor (first, in the order of
    ``Batch._meta[3]``), owner and arena. A batch of the same shape made
    again under the same name by the same process can land in the same
    (kept) arena and look the same: the pickled identity ends with the
    daemon's batch id, which tells them apart (:func:`_attach`)."""
    return (info.dtype, tuple(info.inner_shape), info.batch_size, info.total_length,
            info.offsets_dtype, info.owner_uid, info.owner_pid, info.arena_id)


_IDENTITY_LEN = 8  # the fields _identity returns


# One client per daemon socket for the batches unpickled in this process,
# made on first use and kept for the life of the process (their batches'
# leases and mappings ride on it). Keyed by pid as well: a forked child
# must connect its own.
_attach_clients: dict[tuple[int, str], "Client"] = {}
_attach_lock = threading.Lock()


def _attach_client(socket: str) -> "Client":
    key = (os.getpid(), socket)
    with _attach_lock:
        c = _attach_clients.get(key)
        if c is None or c.closed:
            c = _attach_clients[key] = Client(socket)
        return c


def _attach(socket: str, name: str, framework: BatchFramework,
            identity: tuple[Any, ...]) -> "Batch":
    """Unpickles a :class:`Batch`: attaches to batch ``name`` of the daemon
    at ``socket`` without copying, with a lease of this process's own, and
    checks that the name still holds the batch that was pickled."""
    client = _attach_client(socket)
    try:
        batch = client.get(name, framework=framework)
    except NotFound:
        raise NotFound(
            f"cannot unpickle batch {name!r}: the daemon at {socket} has no such batch any "
            f"more (it was deleted after it was pickled; a pickled Batch is a handle, not "
            f"a copy)") from None
    want = tuple(identity)
    bid = int(batch._meta[4])
    n = _IDENTITY_LEN
    if len(want) == n + 1 and want[n] != 0 and bid != 0:
        # Ids are never reused: the id of what the get attached is the check.
        same = bid == want[n]
    else:
        # Pickled without an id (an older client, or a daemon without ids):
        # the batch as stat describes it, its shape, owner and arena.
        try:
            same = _identity(client.stat(name)) == want[:n]
        except NotFound:
            same = False
    if not same:
        batch.close()
        raise WrongState(
            f"cannot unpickle batch {name!r}: the name now holds another batch than the "
            f"one that was pickled (it was deleted and created again)")
    return batch


@dataclass(frozen=True)
class ClientInfo:
    """What the daemon said about itself when the client connected."""

    backend: str  # "host" or "cuda"
    device: str  # "cpu" or "cuda:N"
    device_name: str
    ipc_mode: str
    protocol_version: int
    daemon_version: str
    memory_limit: int
    arena_size: int
    granularity: int
    max_packet: int
    max_name_len: int
    arenas_mapped: int
    arena_imports: int


@dataclass(frozen=True)
class BatchInfo:
    """One batch as the daemon describes it (:meth:`Client.stat`, :meth:`Client.list`)."""

    name: str
    dtype: str
    inner_shape: tuple[int, ...]
    batch_size: int
    total_length: int
    max_length: int
    offsets_dtype: str
    state: str  # "created" or "sealed"
    values_bytes: int
    offsets_bytes: int
    leases: int
    owner_uid: int
    owner_pid: int
    age_ns: int
    arena_id: int
    delete_pending: bool


@dataclass(frozen=True)
class PeerStats:
    """One peer of the daemon (``--peer NAME=HOST:PORT``) in
    :attr:`Stats.peers`: its fetches, and the counts of the mirrors that
    follow it (``--mirror NAME:PREFIX``)."""

    name: str
    connected: bool  # an authenticated connection is up now
    batches_fetched: int  # mirrored batches included
    bytes_fetched: int
    # failed fetches by cause: "auth", "unreachable", "lost", "remote",
    # "local" (a mirror's name taken here counts too), "timeout", "invalid",
    # "other"; only causes that happened
    failures: dict[str, int] = field(default_factory=dict)
    mirrors: int = 0  # --mirror options following this peer
    batches_mirrored: int = 0
    mirror_deletes: int = 0  # copies deleted because the peer deleted its batch
    mirror_resyncs: int = 0  # times the mirrors watched again with replay


@dataclass(frozen=True)
class Stats:
    """The daemon's counters (:meth:`Client.stats`)."""

    bytes_used: int
    bytes_limit: int
    bytes_arenas: int
    batches: int
    connections: int
    leases: int
    arenas: int
    pending_deletes: int
    requests: int
    uptime_ns: int
    errors: dict[str, int] = field(default_factory=dict)  # "ENOENT" -> count
    waiters: int = 0  # gets waiting for a seal
    watchers: int = 0  # connections watching
    watch_overflows: int = 0  # overflow events sent since the daemon started
    # one per --peer of the daemon, in its order (read with a second request)
    peers: tuple[PeerStats, ...] = ()


class Event(NamedTuple):
    """One change under a watched prefix (:meth:`Client.watch`).

    ``kind`` is ``"sealed"`` (a batch of ``name`` was sealed, or was sealed
    already when the watch began and replay is on), ``"deleted"`` (the
    sealed batch of ``name`` was deleted) or ``"overflow"`` (this watcher
    fell behind and the daemon dropped events; ``name`` is ``""``). ``seq``
    is 1 for the first event of a watch and grows by one per event, so a
    gap never goes unseen. After an overflow the watch starts again, with a
    replay of what is sealed then, from ``seq`` 1."""

    kind: Literal["sealed", "deleted", "overflow"]
    name: str
    seq: int


def _wait_ms(wait: float | None, what: str = "wait") -> int | None:
    """Seconds (None: do not wait, math.inf: no limit) as the protocol's
    milliseconds (None, -1 for no limit), rounded up: never a shorter wait."""
    if wait is None:
        return None
    try:
        w = float(wait)
    except (TypeError, ValueError):
        raise InvalidArgument(f"{what} must be None or a number of seconds, got {wait!r}") from None
    if math.isnan(w) or w < 0:
        raise InvalidArgument(f"{what} must be None, math.inf or seconds >= 0, got {wait!r}")
    if math.isinf(w):
        return -1
    return min(math.ceil(w * 1000), 2**62)


def _event(t: tuple[str, str, int]) -> Event:
    return Event(*t)


class _WatchBase:
    """What :class:`Watch` and :class:`AsyncWatch` share: the native watch,
    the resync after an overflow, the descriptor and closing."""

    def __init__(self, client: "Client", prefix: str, replay: bool) -> None:
        self.prefix = prefix
        self.replay = replay
        self._w = client._c.watch(prefix, not replay)
        self._resync = False

    def _take(self, t: tuple[str, str, int] | None) -> Event | None:
        if t is None:
            return None
        ev = _event(t)
        # The daemon sends nothing more after an overflow until the watch
        # starts again: do that before the next read, with a replay.
        self._resync = ev.kind == "overflow"
        return ev

    def _read(self, ms: int) -> Event | None:
        if self._resync:
            self._w.resync(False)
            self._resync = False
        return self._take(self._w.next(ms))

    def fileno(self) -> int:
        """A descriptor that polls readable when an event may be waiting
        (for select, poll, epoll and event loops); read events with
        ``next(timeout=0)``, which raises :class:`scree.Timeout` when the
        wakeup brought none."""
        return self._w.fileno()

    def close(self) -> None:
        """End the watch and close its connection (idempotent)."""
        self._w.close()

    @property
    def closed(self) -> bool:
        return self._w.closed


class Watch(_WatchBase):
    """The events under a prefix, from :meth:`Client.watch`: an iterator of
    :class:`Event` and a context manager (leaving it closes the watch).

    A watch has a connection of its own, so the client it came from keeps
    serving requests meanwhile. Iterating blocks (the GIL released, Ctrl-C
    interrupts it) until the next event; :meth:`next` takes a timeout.
    After an ``"overflow"`` event the watch starts again by itself with a
    replay (a ``"sealed"`` event for every batch sealed under the prefix
    then, seq from 1): whatever the dropped events said, the replay shows
    the state they led to. A watch is used by one thread at a time.
    """

    def next(self, timeout: float | None = None) -> Event:
        """The next event; waits up to ``timeout`` seconds (None: without
        limit, 0: only what has arrived) and raises :class:`scree.Timeout`
        when none comes."""
        ms = _wait_ms(timeout, "timeout")
        ev = self._read(-1 if ms is None else ms)
        if ev is None:
            raise Timeout(f"no event under prefix {self.prefix!r} within {timeout} s")
        return ev

    def __iter__(self) -> Iterator[Event]:
        return self

    def __next__(self) -> Event:
        if self._w.closed:
            raise StopIteration
        return self.next()

    def __enter__(self) -> "Watch":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"scree.Watch({self.prefix!r}, {'closed' if self.closed else 'open'})"


async def _readable(fd: int) -> None:
    """Returns once fd polls readable, through the running loop's reader
    callbacks (no thread)."""
    import asyncio

    loop = asyncio.get_running_loop()
    fut = loop.create_future()

    def ready() -> None:
        if not fut.done():
            fut.set_result(None)

    loop.add_reader(fd, ready)
    try:
        await fut
    finally:
        loop.remove_reader(fd)


class AsyncWatch(_WatchBase):
    """The events under a prefix for asyncio, from :meth:`Client.watch_async`:
    ``async for event in watch`` and ``async with``. Driven by the watch's
    descriptor through the running loop (``loop.add_reader``): no thread, no
    polling. Events and overflow as for :class:`Watch`."""

    async def next(self, timeout: float | None = None) -> Event:
        """The next event; raises :class:`scree.Timeout` after ``timeout``
        seconds (None: no limit) without one."""
        import asyncio

        _wait_ms(timeout, "timeout")  # validates
        if timeout is None:
            return await self._next()
        try:
            return await asyncio.wait_for(self._next(), timeout)
        except asyncio.TimeoutError:
            raise Timeout(f"no event under prefix {self.prefix!r} within {timeout} s") from None

    async def _next(self) -> Event:
        while True:
            ev = self._read(0)  # what has arrived, without blocking
            if ev is not None:
                return ev
            await _readable(self._w.fileno())

    def __aiter__(self) -> AsyncIterator[Event]:
        return self

    async def __anext__(self) -> Event:
        if self._w.closed:
            raise StopAsyncIteration
        return await self._next()

    async def aclose(self) -> None:
        self.close()

    async def __aenter__(self) -> "AsyncWatch":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"scree.AsyncWatch({self.prefix!r}, {'closed' if self.closed else 'open'})"


def _batch_info(d: dict) -> BatchInfo:
    d = dict(d)
    d["dtype"] = _NAMES.get(d["dtype"], str(d["dtype"]))
    d["offsets_dtype"] = _NAMES.get(d["offsets_dtype"], str(d["offsets_dtype"]))
    d["inner_shape"] = tuple(d["inner_shape"])
    return BatchInfo(**d)


def _host_bytes(x: Any) -> tuple[np.ndarray, int, tuple[int, ...]]:
    """A C-contiguous uint8 host copy or view of x, its dtype code and shape."""
    fw = framework_of(x)
    if fw == "torch":
        import torch

        t = x.detach()
        if t.device.type != "cpu":
            t = t.cpu()
        t = t.contiguous()
        code = _dtype_code(t.dtype)
        raw = t.reshape(-1).view(torch.uint8).numpy() if t.numel() else np.zeros(0, np.uint8)
        return raw, code, tuple(t.shape)
    if fw == "numpy":
        a = x
    elif fw == "mlx":
        a = np.array(x)
    elif hasattr(x, "__dlpack__"):
        a = np.from_dlpack(x)
    else:
        a = np.asarray(x)
    a = np.ascontiguousarray(a)
    code = _dtype_code(a.dtype)
    return a.reshape(-1).view(np.uint8), code, tuple(a.shape)


def _offsets_for(lengths: Any, offsets: Any, offsets_dtype: Any) -> np.ndarray:
    if (lengths is None) == (offsets is None):
        raise InvalidArgument("create needs either lengths or offsets (one of them)")
    od = np.dtype(_dtype_name(offsets_dtype))
    if od not in (np.int32, np.int64):
        raise InvalidArgument(f"offsets must be int32 or int64, got {od}")
    if lengths is not None:
        lengths = np.asarray(lengths, dtype=np.int64).reshape(-1)
        host = np.zeros(lengths.shape[0] + 1, dtype=np.int64)
        np.cumsum(lengths, out=host[1:])
    else:
        host = np.array(offsets if framework_of(offsets) in (None, "numpy") else
                        np.asarray(offsets.tolist()), dtype=np.int64).reshape(-1)
    return host.astype(od)


class Client:
    """A connection to ``screed``.

    Args:
        socket: the daemon's socket. When not given: ``$SCREE_SOCKET``, else
            the first of :func:`default_socket_paths` where a daemon answers
            (the system path ``/run/scree/screed.sock``, then the per-user
            ``$XDG_RUNTIME_DIR/scree-UID/screed.sock``); :attr:`socket` then
            says which.

    Raises :class:`scree.Disconnected` when nothing listens there (the
    message names every path tried and how to start a daemon) and
    :class:`scree.NotSupported` when the native extension is not built.
    Every request releases the GIL while it waits for the daemon; one client
    may be shared by threads (their requests are serialised).
    """

    def __init__(self, socket: str | os.PathLike | None = None) -> None:
        if _native is None:
            raise NotSupported(
                "scree.Client needs the native extension scree._native, which this "
                "installation lacks: pip install ./client/python"
            )
        path = None if socket is None or str(socket) == "" else os.fspath(socket)
        # No path: libscreeclient resolves it, in the order screed follows.
        self._c = _native.Client(path)
        #: The socket this client connected to.
        self.socket: str = self._c.socket
        self._hello = self._c.info()
        # Idle connections for the waits of get_async (one per wait at a time).
        self._waiters: list[Any] = []
        self._waiters_lock = threading.Lock()

    # --- connection ---------------------------------------------------------

    def close(self) -> None:
        """Close the connection. While views of its batches are alive it
        stays open for them (their leases), and closes with the last one;
        new requests raise :class:`scree.Disconnected` at once."""
        self._c.close()
        with self._waiters_lock:
            waiters, self._waiters = self._waiters, []
        for c in waiters:
            c.close()

    @property
    def closed(self) -> bool:
        return self._c.closed

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def info(self) -> ClientInfo:
        """The daemon's backend (``"host"`` or ``"cuda"``), device and limits,
        plus this connection's arena imports."""
        d = self._c.info() if not self.closed else self._hello
        device = "cpu" if d["backend"] != "cuda" else f"cuda:{d['device_index']}"
        return ClientInfo(
            backend=d["backend"], device=device, device_name=d["device_name"],
            ipc_mode=d["ipc_mode"], protocol_version=d["protocol_version"],
            daemon_version=d["daemon_version"], memory_limit=d["memory_limit"],
            arena_size=d["arena_size"], granularity=d["granularity"],
            max_packet=d["max_packet"], max_name_len=d["max_name_len"],
            arenas_mapped=d["arenas_mapped"], arena_imports=d["arena_imports"],
        )

    # --- writing ------------------------------------------------------------

    def put(self, name: str, arr: Any, offsets: Any = None, *, shared: bool = False,
            pipelined: bool = False) -> None:
        """Publish a copy of ``arr`` as batch ``name``.

        ``arr`` is a :class:`scree.Array` (numpy, torch or mlx), or values
        with ``offsets`` given separately (any array numpy can take, DLPack
        producers included). On a GPU daemon, CUDA tensors are copied on the
        device into the created batch; elsewhere values are copied from host
        memory (CUDA tensors are first copied to the host).
        The producer may exit once this returns.

        ``shared=True`` puts the batch into the daemon's shared pool of
        arenas instead of this user's own arenas: the pool holds the shared
        batches of every owner, and whoever may read one of them can map
        them all (docs/security.md). The default keeps owners apart.

        ``pipelined=True`` returns once the seal is sent, without waiting
        for the daemon's answer (a round trip less per batch; the copy is
        done by then, so ``arr`` may be freed). The daemon serves a
        connection's requests in order, so the batch is sealed before
        anything this client sends next is served. The seal's result comes
        with :meth:`flush`, or else with the next call on this client: when
        the seal failed, that call raises the seal's error (naming the
        batch) instead of doing its own work, and the half-made batch is
        deleted as a put that waits would have done. Host-memory values
        only: CUDA tensors put into a GPU daemon seal and wait as before.
        """
        if offsets is None:
            if not isinstance(arr, Array):
                raise InvalidArgument(
                    f"put takes a scree.Array, or values and offsets; got {type(arr).__name__}"
                )
            values, offsets_obj = arr.values, arr.offsets
            host_off = arr.host_offsets.astype(_dtype_name(arr.offsets.dtype))
        else:
            values, offsets_obj = arr, offsets
            raw, _, _ = _host_bytes(offsets)
            host_off = np.array(raw.view(np.dtype(_dtype_name(offsets.dtype))))
        if (framework_of(values) == "torch" and values.device.type == "cuda"
                and self._hello["backend"] == "cuda"):
            self._put_device(name, values, host_off, shared)
            return
        raw, code, shape = _host_bytes(values)
        if len(shape) < 1:
            raise InvalidArgument("values must have at least one (ragged) dimension")
        ocode = _dtype_code(host_off.dtype)
        self._c.put(name, code, shape[1:], host_off.shape[0] - 1, shape[0], ocode, raw,
                    np.ascontiguousarray(host_off).view(np.uint8), bool(shared), bool(pipelined))

    def _put_device(self, name: str, values: Any, host_off: np.ndarray, shared: bool) -> None:
        import torch

        b = self.create(name, values.dtype, tuple(values.shape[1:]), offsets=host_off,
                        offsets_dtype=host_off.dtype, total_length=int(values.shape[0]),
                        shared=shared)
        try:
            with b:
                b.values.copy_(values)
                # The copy is queued on the devices' current streams: waiting
                # for those is enough (not for every stream of the device)
                # before the daemon reads the batch at seal.
                for dev in {values.device, b.values.device}:
                    torch.cuda.current_stream(dev).synchronize()
                b.seal()
        except BaseException:
            self.delete(name)
            raise

    def create(self, name: str, dtype: Any, inner_shape: Sequence[int] = (), *,
               lengths: Any = None, offsets: Any = None, offsets_dtype: Any = "int64",
               total_length: int | None = None, framework: BatchFramework | None = None,
               shared: bool = False) -> Batch:
        """Reserve batch ``name`` in daemon memory and return it as a writable
        :class:`Batch`, its offsets already written from ``lengths`` (or
        copied from ``offsets``, unchecked until seal). Fill ``values`` in
        place, then :meth:`Batch.seal`. ``total_length`` defaults to the last
        offset. An unsealed batch goes away with the connection.
        ``shared=True`` reserves it in the daemon's shared pool of arenas,
        as for :meth:`put`. ``framework`` as for :meth:`get`.
        """
        host = _offsets_for(lengths, offsets, offsets_dtype)
        total = int(host[-1]) if total_length is None else int(total_length)
        inner = tuple(int(d) for d in inner_shape)
        if framework not in (None, "numpy", "torch"):
            raise InvalidArgument(f"framework must be 'numpy' or 'torch', got {framework!r}")
        lease = self._c.create(name, _dtype_code(dtype), inner, host.shape[0] - 1, total,
                               _dtype_code(host.dtype), bool(shared))
        fw = _framework(framework, lease)
        b = Batch(self, lease, fw, created=True, host_offsets=host.astype(np.int64))
        if fw == "torch":
            import torch

            b._offsets.copy_(torch.from_numpy(host))
        else:
            b._offsets[...] = host
        return b

    def seal(self, name: str, *, pipelined: bool = False) -> None:
        """Validate a created batch's offsets and publish it. Bad offsets
        raise :class:`scree.InvalidArgument` naming the first bad index (the
        batch stays created: fix them and seal again).

        ``pipelined=True`` returns once the seal is sent, as for
        :meth:`put`; its result comes with :meth:`flush` or the next call
        (a failed seal's batch stays created)."""
        self._c.seal(name, bool(pipelined))

    def flush(self) -> None:
        """Wait for the answer to a seal sent with ``pipelined=True`` and
        raise its error, if it failed; returns at once when none is pending.
        Closing the client does not wait for it: flush first to know."""
        self._c.flush()

    # --- reading ------------------------------------------------------------

    def get(self, name: str, *, wait: float | None = None,
            framework: BatchFramework | None = None) -> Batch:
        """Attach to sealed batch ``name`` without copying.

        ``wait``: ``None`` answers now (:class:`scree.NotFound` when no
        sealed batch has the name); a number of seconds waits that long for
        a batch of that name to be sealed, and ``math.inf`` without limit;
        a wait that expires raises :class:`scree.Timeout` (a
        ``TimeoutError``). The daemon wakes the waiter when the batch is
        sealed: nothing polls. The GIL is released while waiting, and Ctrl-C
        (any signal whose handler raises) interrupts the wait, which the
        daemon then cancels: the client stays usable. Requests of other
        threads on this client wait behind a waiting get (use a client per
        thread, or :meth:`get_async`, to wait on several names at once).

        ``framework``: ``"torch"`` (the default wherever torch is installed,
        on host memory and GPU alike; tensors through DLPack, which torch
        cannot mark read-only) or ``"numpy"`` (host memory only; read-only
        arrays; the default without torch). Views have the batch's real
        dtype, bfloat16 and fp8 included (numpy's through ``ml_dtypes``).
        Use the result as ``with client.get(name) as batch:``.
        """
        if framework not in (None, "numpy", "torch"):
            raise InvalidArgument(f"framework must be 'numpy' or 'torch', got {framework!r}")
        lease = self._c.get(name, _wait_ms(wait))
        return Batch(self, lease, _framework(framework, lease), created=False)

    async def get_async(self, name: str, *, wait: float | None = None,
                        framework: BatchFramework | None = None) -> Batch:
        """:meth:`get` for asyncio: ``await client.get_async(name, wait=5)``.

        The waiting Get goes out on a connection of its own (kept for the
        next wait once this one is answered) whose socket the running loop
        watches (``loop.add_reader``): no thread, no polling, any number of
        waits at once. Cancelling the task cancels the wait with the daemon.
        ``wait=None`` answers now, as :meth:`get`, on the client's own
        connection."""
        if framework not in (None, "numpy", "torch"):
            raise InvalidArgument(f"framework must be 'numpy' or 'torch', got {framework!r}")
        ms = _wait_ms(wait)
        if ms is None:
            return self.get(name, framework=framework)
        c = self._waiter()
        c.get_wait_start(name, ms)
        try:
            await _readable(c.fileno())
            lease = c.get_wait_finish(name)
        except BaseException:
            # Cancelled (asyncio.CancelledError), or the answer was an
            # error: with no wait left started, the cancel does nothing.
            self._retire(c, cancel=True)
            raise
        self._retire(c)
        return Batch(self, lease, _framework(framework, lease), created=False)

    def _waiter(self) -> Any:
        """An idle connection for get_async's waits (made on demand)."""
        if self.closed:
            self._c.stats()  # raises Disconnected, as any request would
        with self._waiters_lock:
            if self._waiters:
                return self._waiters.pop()
        return _native.Client(self.socket)

    def _retire(self, c: Any, cancel: bool = False) -> None:
        """Gives a wait's connection back for the next one (after cancelling
        a wait it may still have started), or closes it when this client is
        closed or the connection broke. Its batches' leases keep it open
        until they go, whichever."""
        if cancel:
            try:
                c.get_wait_cancel()
            except Error:
                c.close()
                return
        with self._waiters_lock:
            if not self.closed and len(self._waiters) < 64:
                self._waiters.append(c)
                return
        c.close()

    # --- watching ------------------------------------------------------------

    def watch(self, prefix: str = "", *, replay: bool = True) -> Watch:
        """The changes to batches whose names start with ``prefix`` (every
        name this user may read for ``""``), as an iterator of
        :class:`Event` and a context manager::

            with client.watch("steps/") as events:
                for ev in events:
                    if ev.kind == "sealed": ...

        With ``replay`` (the default) the watch first yields a ``"sealed"``
        event for every batch already sealed under the prefix, then live
        events, with no gap and no duplicate between the two. The watch has
        a connection of its own; see :class:`Watch`."""
        return Watch(self, prefix, replay)

    def watch_async(self, prefix: str = "", *, replay: bool = True) -> AsyncWatch:
        """:meth:`watch` for asyncio: ``async for ev in client.watch_async(p)``,
        driven by the watch's descriptor through the running loop."""
        return AsyncWatch(self, prefix, replay)

    # --- the store ----------------------------------------------------------

    def delete(self, name: str) -> DeleteResult:
        """Remove ``name`` from the store. Returns :class:`DeleteResult`:
        ``"deleted"`` when its memory is free, ``"deferred"`` when leases keep
        the memory until they go (the name is gone either way). Both are
        true; a failure raises (:class:`scree.NotFound` for no such batch)."""
        return DeleteResult.DEFERRED if self._c.delete(name) else DeleteResult.DELETED

    def list(self, prefix: str = "") -> list[BatchInfo]:
        """Batches whose names start with ``prefix``, in name order."""
        return [_batch_info(d) for d in self._c.list(prefix or None)]

    def stat(self, name: str) -> BatchInfo:
        return _batch_info(self._c.stat(name))

    def stats(self) -> Stats:
        d = self._c.stats()
        d["peers"] = tuple(PeerStats(**p) for p in d.get("peers", ()))
        return Stats(**d)

    def attention(self, q: str, k: str, v: str, out: str, causal: bool = False,
                  scale: float | None = None, window: tuple[int, int] | None = None) -> None:
        """Run varlen attention in the daemon on sealed batches ``q``, ``k``,
        ``v`` ((tokens, heads, head_dim)) into a new sealed batch ``out``.
        ``causal`` is off unless asked for, as in C and FlashAttention.
        ``window`` is ``(left, right)``, -1 for unbounded. A daemon without
        attention raises :class:`scree.NotSupported`."""
        left, right = (-1, -1) if window is None else (int(window[0]), int(window[1]))
        self._c.attention(q, k, v, out, bool(causal), scale, left, right)

    def fetch(self, peer: str, name: str, *, as_name: str | None = None,
              wait: float | None = None, timeout: float | None = None) -> BatchInfo:
        """Copy sealed batch ``name`` from ``peer`` (one of the daemon's
        ``--peer NAME=HOST:PORT``) into this client's daemon, as ``as_name``
        (default: ``name``), owned by this client's uid; then ``get`` it as
        any other batch. ``wait``: seconds the batch may take to be sealed on
        the peer, as ``get``'s (None: fail at once when it is not there).
        ``timeout``: seconds for the whole fetch (None: the daemon's 60 s).
        Returns the local batch's :class:`BatchInfo`. Errors name the peer:
        :class:`NotFound` when the peer has no such batch,
        :class:`Exists` when ``as_name`` is taken here, :class:`NoSpace`,
        :class:`PermissionDenied` when the shared secret was not proven,
        :class:`Disconnected` when the peer does not listen,
        :class:`InvalidArgument` for an unknown peer (the message lists
        the known ones); a transfer that fails or runs out of time raises
        :class:`Error` with ``code`` SCREE_EIO or SCREE_ETIMEDOUT."""
        if wait is None:
            wait_ms = -2
        else:
            if wait < 0:
                raise InvalidArgument(f"wait must be None or >= 0 seconds, got {wait!r}")
            wait_ms = int(wait * 1000)
        if timeout is not None and timeout <= 0:
            raise InvalidArgument(f"timeout must be None or > 0 seconds, got {timeout!r}")
        timeout_ms = 0 if timeout is None else max(1, int(timeout * 1000))
        return _batch_info(self._c.fetch(peer, name, as_name, wait_ms, timeout_ms))

    def __repr__(self) -> str:
        state = "closed" if self.closed else self._hello["backend"]
        return f"scree.Client({self.socket!r}, {state})"
