"""scree: packed ragged batches (values + offsets, the ``cu_seqlens`` layout)
shared between processes.

The pure-Python part works on numpy, torch and mlx arrays without any native
code: :class:`Array`, :func:`pack`, :func:`from_cu_seqlens`, the
:mod:`scree.bridges` conversions and :mod:`scree.kernels`. :class:`Client`,
the client of the ``screed`` daemon, runs on the native extension
``scree._native`` (built by ``pip install ./client/python``); without it,
everything else still imports and works, and ``Client()`` raises
:class:`NotSupported`.
"""

from __future__ import annotations

from . import bridges, errors, kernels
from ._ext import native as _native
from .array import Array, from_cu_seqlens, pack
from .client import (
    AsyncWatch,
    Batch,
    BatchInfo,
    Client,
    ClientInfo,
    DeleteResult,
    Event,
    PeerStats,
    Stats,
    Watch,
    default_socket_paths,
    native_available,
)
from .errors import (
    Busy,
    Closed,
    CudaError,
    Disconnected,
    Error,
    Exists,
    InvalidArgument,
    NoSpace,
    NotFound,
    NotSupported,
    PermissionDenied,
    ProtocolError,
    Timeout,
    WrongState,
)



def _version() -> str:
    """scree's one version, project(scree VERSION ...) of the top-level
    CMakeLists.txt: through the extension (scree_version()), or, in a
    source tree without it, read from that file."""
    if _native is not None:
        return _native.version()
    import re
    from pathlib import Path

    cmake = Path(__file__).resolve().parents[3] / "CMakeLists.txt"
    try:
        m = re.search(r"project\(scree\s+VERSION\s+([0-9.]+)", cmake.read_text())
    except OSError:
        m = None
    if m is not None:
        return m.group(1)
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("scree")
    except PackageNotFoundError:
        return "0+unknown"


__version__ = _version()

__all__ = [
    "Array",
    "pack",
    "from_cu_seqlens",
    "bridges",
    "kernels",
    "errors",
    "Client",
    "DeleteResult",
    "Batch",
    "BatchInfo",
    "ClientInfo",
    "Stats",
    "PeerStats",
    "default_socket_paths",
    "Event",
    "Watch",
    "AsyncWatch",
    "native_available",
    # The exception classes, listed once in scree.errors.
    *errors.__all__,
]
