"""Types of scree._native, the C extension (client/python/native/*.c) over
libscreeclient and screekernels. Private: scree.Client, scree.bridges and
scree.kernels are its only users. Constants come from scree's C headers."""

from typing import Any, Final, final

# --- constants ---------------------------------------------------------------

#: scree/version.h: SCREE_VERSION_STRING (compiled against) and
#: SCREE_DEFAULT_SOCKET.
VERSION: Final[str]
DEFAULT_SOCKET: Final[str]
PROTOCOL_VERSION: Final[int]
DLPACK_VERSION: Final[int]
#: Built with the CUDA import of libscreeclient / the CUDA kernels.
HAVE_CUDA: Final[int]
HAVE_CUDA_KERNELS: Final[int]
#: scree_dtype codes by libscree's names ("bfloat16", "float8_e4m3", ...).
DTYPES: Final[dict[str, int]]
#: scree_padding_side (scree/array.h) and SCREE_PAD_AUTO (scree/ragged.h).
PAD_RIGHT: Final[int]
PAD_LEFT: Final[int]
PAD_AUTO: Final[int]

# SCREE_E* codes (scree/error.h), all negative.
EINVAL: Final[int]
ENOENT: Final[int]
EEXIST: Final[int]
ENOSPC: Final[int]
ENOMEM: Final[int]
EACCES: Final[int]
EPERM: Final[int]
EBUSY: Final[int]
EAGAIN: Final[int]
ENAMETOOLONG: Final[int]
EOVERFLOW: Final[int]
EPROTO: Final[int]
EMSGSIZE: Final[int]
ENOTSUP: Final[int]
EIO: Final[int]
EBADF: Final[int]
ECONNREFUSED: Final[int]
ETIMEDOUT: Final[int]
ENODEV: Final[int]
EINTR: Final[int]
ECANCELED: Final[int]
ECUDA: Final[int]
EDISCONNECTED: Final[int]
ESTATE: Final[int]

# --- functions ---------------------------------------------------------------

def default_socket_paths() -> list[str]: ...
def version() -> str:
    """scree_version(): the libscree linked into this module."""

def strerror(code: int) -> str: ...
def err_name(code: int) -> str: ...
def pack_plan_layout(batch: int) -> dict[str, int]:
    """Keys work_len, host_len, offsets, bad_row, longest, shift, summary,
    summary_entries (scree/ragged.h's SCREE_PACK_WORK_*)."""

def attention_fwd(
    device: int, q_dtype: int, k_dtype: int, v_dtype: int, q: int, k: int, v: int,
    out: int, lse: int, cu_seqlens_q: int, cu_seqlens_k: int, batch: int, total_q: int,
    total_k: int, max_seqlen_q: int, max_seqlen_k: int, num_heads_q: int,
    num_heads_kv: int, head_dim: int, scale: float, causal: bool, window_left: int = -1,
    window_right: int = -1, stream: int = 0, num_threads: int = 0) -> None: ...
def pack_plan(mask: int, mask_dtype: int, batch: int, seqlen: int, side: int, work: int,
              host: int, stream: int, /) -> None: ...
def pack_rows(padded: int, values: int, row_bytes: int, offsets: int, shift: int,
              batch: int, total: int, stream: int, /) -> None: ...
def pack_lengths(padded: int, values: int, row_bytes: int, lengths: int, batch: int,
                 seqlen: int, total: int, side: int, host_offsets: int, work: int,
                 stream: int, /) -> None: ...

# --- types -------------------------------------------------------------------

@final
class Client:
    def __init__(self, socket: str | None = None) -> None: ...
    @property
    def socket(self) -> str: ...
    @property
    def closed(self) -> bool: ...
    @property
    def connected(self) -> bool: ...
    @property
    def owners(self) -> int: ...
    def close(self) -> None: ...
    def info(self) -> dict[str, Any]: ...
    def put(self, name: str, dtype: int, inner: tuple[int, ...], batch_size: int,
            total_rows: int, offsets_dtype: int, values: Any, offsets: Any,
            shared: bool = False, pipelined: bool = False, /) -> None: ...
    def create(self, name: str, dtype: int, inner: tuple[int, ...], batch_size: int,
               total_rows: int, offsets_dtype: int, shared: bool = False, /) -> Lease: ...
    def seal(self, name: str, pipelined: bool = False, /) -> None: ...
    def flush(self) -> None: ...
    def get(self, name: str, wait_ms: int | None = None, /) -> Lease:
        """wait_ms None answers now; -1 waits without limit. The GIL is
        released while waiting; a signal handler that raises abandons the
        wait (the daemon cancels it) and its exception propagates."""
    def get_wait_start(self, name: str, wait_ms: int, /) -> None: ...
    def get_wait_finish(self, name: str, /) -> Lease:
        """The answer of the wait get_wait_start began (call once fileno()
        polls readable)."""
    def get_wait_cancel(self) -> None: ...
    def fileno(self) -> int: ...
    def watch(self, prefix: str | None, no_replay: bool, /) -> Watch: ...
    def delete(self, name: str, /) -> bool: ...
    def list(self, prefix: str | None = None, /) -> list[dict[str, Any]]: ...
    def stat(self, name: str, /) -> dict[str, Any]: ...
    def stats(self) -> dict[str, Any]:
        """The counters, with "peers": one dict per peer of the daemon."""
    def attention(self, q: str, k: str, v: str, out: str, causal: bool,
                  scale: float | None, window_left: int, window_right: int, /) -> None: ...
    def fetch(self, peer: str, name: str, as_name: str | None, wait_ms: int,
              timeout_ms: int, /) -> dict[str, Any]: ...

@final
class Lease:
    @property
    def dtype(self) -> int: ...
    @property
    def inner_shape(self) -> tuple[int, ...]: ...
    @property
    def batch_size(self) -> int: ...
    @property
    def total_length(self) -> int: ...
    @property
    def max_length(self) -> int: ...
    @property
    def offsets_dtype(self) -> int: ...
    @property
    def device(self) -> tuple[str, int]: ...
    @property
    def writable(self) -> bool: ...
    @property
    def name(self) -> str: ...
    @property
    def address(self) -> int: ...
    @property
    def batch_id(self) -> int:
        """The daemon's id of the batch, never reused (0: a daemon without ids)."""
    def tensor(self, which: int, /) -> Tensor: ...

@final
class Watch:
    """scree_watch: the events under a prefix, on a connection of its own."""
    @property
    def closed(self) -> bool: ...
    def next(self, timeout_ms: int, /) -> tuple[str, str, int] | None:
        """(kind, name, seq), or None when none came within timeout_ms
        (-1: no limit; 0: only what came already)."""
    def resync(self, no_replay: bool = False, /) -> None: ...
    def fileno(self) -> int: ...
    def close(self) -> None: ...

@final
class Tensor:
    """Values or offsets over a Lease's memory: the buffer protocol and DLPack."""
    @property
    def dtype(self) -> int: ...
    @property
    def shape(self) -> tuple[int, ...]: ...
    @property
    def readonly(self) -> bool: ...
    @property
    def address(self) -> int: ...
    @property
    def nbytes(self) -> int: ...
    @property
    def lease(self) -> Lease: ...
    def __dlpack__(self, stream: Any = None, *, max_version: tuple[int, int] | None = None,
                   dl_device: tuple[int, int] | None = None, copy: bool | None = None) -> Any: ...
    def __dlpack_device__(self) -> tuple[int, int]: ...
    def __buffer__(self, flags: int, /) -> memoryview: ...
