"""scree: packed ragged batches (values + offsets, the ``cu_seqlens`` layout)
shared between processes.

The pure-Python part works on numpy, torch and mlx arrays without any native
code: :class:`Array`, :func:`pack`, :func:`from_cu_seqlens`, the
:mod:`scree.bridges` conversions and :mod:`scree.kernels`. The client for the
``screed`` daemon lives in the native extension ``scree._native``; when it is
not built, everything else still imports and works.
"""

from __future__ import annotations

from . import bridges, errors, kernels
from .array import Array, from_cu_seqlens, pack
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
)

__version__ = "0.1.0"

__all__ = [
    "Array",
    "pack",
    "from_cu_seqlens",
    "bridges",
    "kernels",
    "errors",
    "Error",
    "InvalidArgument",
    "NotFound",
    "Exists",
    "NoSpace",
    "PermissionDenied",
    "Disconnected",
    "CudaError",
    "NotSupported",
]
