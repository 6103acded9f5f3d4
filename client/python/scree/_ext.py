"""The native extension ``scree._native``, and what the package reads from it.

The extension is optional for the pure-Python part of scree (Array, the
bridges, the kernels' torch fallback); :class:`scree.Client` and the C
kernels need it. Everything it defines in C (dtype codes, the packing plan's
layout, the default socket, the version) is read from it here, never copied:
``native`` is None without it, and the tables below are then empty.
"""

from __future__ import annotations

from typing import Any

try:
    from . import _native as native  # type: ignore[attr-defined]
except ImportError:  # a source tree without the built extension
    native = None

# libscree's dtype names (scree_dtype_name) that the frameworks spell
# differently: torch and ml_dtypes call e4m3 "float8_e4m3fn".
_FRAMEWORK_NAMES = {"float8_e4m3": "float8_e4m3fn"}

# scree_dtype codes by the frameworks' dtype names, from scree/dtype.h.
DTYPE_CODES: dict[str, int] = (
    {_FRAMEWORK_NAMES.get(k, k): int(v) for k, v in native.DTYPES.items()}
    if native is not None else {})


def native_attr(name: str, default: Any = None) -> Any:
    """An attribute of the extension, or ``default`` without it."""
    return getattr(native, name, default) if native is not None else default
