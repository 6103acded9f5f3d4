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
from .array import Array, from_cu_seqlens, pack
from .client import Batch, BatchInfo, Client, ClientInfo, Stats, native_available
from .errors import (
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
    WrongState,
)

__version__ = "0.1.0"

__all__ = [
    "Array",
    "pack",
    "from_cu_seqlens",
    "bridges",
    "kernels",
    "errors",
    "Client",
    "Batch",
    "BatchInfo",
    "ClientInfo",
    "Stats",
    "native_available",
    "Error",
    "InvalidArgument",
    "NotFound",
    "Exists",
    "NoSpace",
    "PermissionDenied",
    "Disconnected",
    "CudaError",
    "NotSupported",
    "WrongState",
    "ProtocolError",
]
