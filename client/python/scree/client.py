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
import os
import sys
from dataclasses import dataclass, field
from typing import Any, Literal, Sequence

import numpy as np

from ._ext import DTYPE_CODES, native_attr
from ._ext import native as _native
from .array import Array, framework_of
from .errors import Closed, Error, InvalidArgument, NotSupported

#: The frameworks a batch's views can be made in (a subset of
#: :data:`scree.array.Framework`).
BatchFramework = Literal["numpy", "torch"]

__all__ = ["Client", "Batch", "BatchInfo", "ClientInfo", "Stats", "DeleteResult",
           "DEFAULT_SOCKET", "native_available"]

#: The socket screed serves when told no other (SCREE_DEFAULT_SOCKET of
#: scree/version.h, through the extension); None without the extension,
#: where no Client can be made.
DEFAULT_SOCKET: str | None = native_attr("DEFAULT_SOCKET")

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
        self._meta = (lease.batch_size, lease.total_length, tuple(lease.inner_shape))

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

    def seal(self) -> None:
        """Validate the offsets written into this created batch and publish
        it (:meth:`Client.seal`). Write nothing through its views afterwards."""
        self._lease()
        if not self._created:
            raise Error(f"batch {self._name!r} came from get: only a created batch is sealed")
        self._client.seal(self._name)

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
        socket: the daemon's socket; ``$SCREE_SOCKET`` when not given, else
            :data:`DEFAULT_SOCKET` (``/run/scree/screed.sock`` unless scree
            was built with another).

    Raises :class:`scree.Disconnected` when nothing listens there and
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
        if socket is None or str(socket) == "":
            socket = os.environ.get("SCREE_SOCKET") or DEFAULT_SOCKET
        self.socket = os.fspath(socket)
        self._c = _native.Client(self.socket)
        self._hello = self._c.info()

    # --- connection ---------------------------------------------------------

    def close(self) -> None:
        """Close the connection. While views of its batches are alive it
        stays open for them (their leases), and closes with the last one;
        new requests raise :class:`scree.Disconnected` at once."""
        self._c.close()

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

    def put(self, name: str, arr: Any, offsets: Any = None, *, shared: bool = False) -> None:
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
                    np.ascontiguousarray(host_off).view(np.uint8), bool(shared))

    def _put_device(self, name: str, values: Any, host_off: np.ndarray, shared: bool) -> None:
        import torch

        b = self.create(name, values.dtype, tuple(values.shape[1:]), offsets=host_off,
                        offsets_dtype=host_off.dtype, total_length=int(values.shape[0]),
                        shared=shared)
        try:
            with b:
                b.values.copy_(values)
                torch.cuda.synchronize(values.device)
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

    def seal(self, name: str) -> None:
        """Validate a created batch's offsets and publish it. Bad offsets
        raise :class:`scree.InvalidArgument` naming the first bad index (the
        batch stays created: fix them and seal again)."""
        self._c.seal(name)

    # --- reading ------------------------------------------------------------

    def get(self, name: str, framework: BatchFramework | None = None) -> Batch:
        """Attach to sealed batch ``name`` without copying.

        ``framework``: ``"torch"`` (the default wherever torch is installed,
        on host memory and GPU alike; tensors through DLPack, which torch
        cannot mark read-only) or ``"numpy"`` (host memory only; read-only
        arrays; the default without torch). Views have the batch's real
        dtype, bfloat16 and fp8 included (numpy's through ``ml_dtypes``).
        Use the result as ``with client.get(name) as batch:``.
        """
        if framework not in (None, "numpy", "torch"):
            raise InvalidArgument(f"framework must be 'numpy' or 'torch', got {framework!r}")
        lease = self._c.get(name)
        return Batch(self, lease, _framework(framework, lease), created=False)

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
        return Stats(**self._c.stats())

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
