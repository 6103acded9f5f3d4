"""The packed ragged array: ``values`` plus ``offsets`` (the ``cu_seqlens`` layout).

A batch of ``B`` sequences of different lengths is stored as one ``values``
array of shape ``(total, *inner)`` holding the rows of every sequence back to
back, and an ``offsets`` array of ``B + 1`` integers: sequence ``i`` is
``values[offsets[i]:offsets[i + 1]]``. This is exactly FlashAttention's
``cu_seqlens``.

:class:`Array` keeps the caller's arrays as they are (numpy, torch on any
device, or mlx): it never copies, converts or moves them. What it adds is a
host-side copy of the offsets, taken once at construction, so that
``batch_size``, ``total_length``, ``max_length`` and row indexing never need
another device-to-host synchronisation.
"""

from __future__ import annotations

import operator
import sys
from typing import Any, Iterator, Literal, Sequence

import numpy as np

from .errors import InvalidArgument

__all__ = ["Array", "pack", "from_cu_seqlens", "framework_of", "Framework"]

#: The array libraries an :class:`Array` can hold.
Framework = Literal["numpy", "torch", "mlx"]

_OFFSET_DTYPES = ("int32", "int64")


def framework_of(x: Any) -> Framework | None:
    """Return ``"numpy"``, ``"torch"`` or ``"mlx"`` for an array of that
    framework, or ``None`` for anything else.

    Frameworks that are not imported yet cannot own ``x``, so this never
    imports torch or mlx itself.
    """
    if isinstance(x, np.ndarray):
        return "numpy"
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(x, torch.Tensor):
        return "torch"
    mx = sys.modules.get("mlx.core")
    if mx is not None and isinstance(x, mx.array):
        return "mlx"
    return None


def dtype_name(dtype: Any) -> str:
    """``"int64"`` for ``np.int64``, ``torch.int64`` and ``mlx.core.int64`` alike."""
    return str(dtype).rsplit(".", 1)[-1]


def offsets_dtype_name(dtype: Any) -> str:
    """``"int32"`` or ``"int64"`` for an offsets dtype given by name, numpy,
    torch or mlx; anything else raises :class:`InvalidArgument`."""
    if isinstance(dtype, str) or dtype is None:
        name = str(dtype)
    elif type(dtype).__module__.split(".")[0] in ("torch", "mlx"):
        name = dtype_name(dtype)
    else:
        try:
            name = np.dtype(dtype).name  # np.int32, np.dtype("int32")
        except TypeError:
            name = dtype_name(dtype)
    if name not in _OFFSET_DTYPES:
        raise InvalidArgument(f"offsets_dtype must be int32 or int64, got {dtype!r}")
    return name


def to_host(x: Any) -> np.ndarray:
    """Return ``x`` as a numpy array on the host.

    Free for numpy and CPU torch (the memory is shared); one device-to-host
    copy, which waits for the device, for CUDA tensors; a copy for mlx.
    """
    fw = framework_of(x)
    if fw == "numpy":
        return x
    if fw == "torch":
        return x.detach().cpu().numpy()
    if fw == "mlx":
        return np.array(x)
    raise InvalidArgument(f"expected a numpy, torch or mlx array, got {type(x).__name__}")


def _type_label(x: Any) -> str:
    fw = framework_of(x)
    return {"numpy": "numpy.ndarray", "torch": "torch.Tensor", "mlx": "mlx.core.array"}.get(
        fw or "", type(x).__name__
    )


def check_offsets(host: np.ndarray, total_rows: int, name: str = "offsets") -> None:
    """Raise :class:`InvalidArgument` unless ``host`` is a valid offsets array
    for ``total_rows`` rows: 1-D, ``host[0] == 0``, non-decreasing and ending
    at ``total_rows``. The message names the first bad index."""
    if host.ndim != 1 or host.shape[0] < 1:
        raise InvalidArgument(
            f"{name} must be 1-D with batch_size+1 >= 1 elements, got shape {tuple(host.shape)}"
        )
    if host[0] != 0:
        raise InvalidArgument(f"{name}[0]={int(host[0])}, expected 0")
    bad = np.flatnonzero(host[1:] < host[:-1])
    if bad.size:
        i = int(bad[0])
        raise InvalidArgument(
            f"{name}[{i}]={int(host[i])} > {name}[{i + 1}]={int(host[i + 1])}: "
            f"{name} must be non-decreasing"
        )
    last = host.shape[0] - 1
    if host[last] != total_rows:
        raise InvalidArgument(
            f"{name}[{last}]={int(host[last])} but values has {total_rows} rows: "
            f"the last offset must equal the number of rows"
        )


class Array:
    """A packed ragged batch: ``values`` (total, *inner) and ``offsets`` (B + 1).

    Args:
        values: numpy, torch or mlx array whose first dimension is the packed
            (ragged) one. Kept as the same object.
        offsets: 1-D int32 or int64 array of the same framework (and, for
            torch, the same device) as ``values``. Kept as the same object.
        host_offsets: the offsets already on the host (any integer sequence),
            when the caller has them. Passing them avoids the one
            device-to-host copy that construction otherwise needs for CUDA
            offsets; they must equal ``offsets``.
        max_length: the longest row, when known and ``host_offsets`` is not
            given; with ``validate=False`` this skips the host copy entirely
            (rows are then indexed after a lazy copy on first use).
        validate: check the offsets (``offsets[0] == 0``, non-decreasing,
            last equals the number of rows). Invalid offsets raise
            :class:`scree.InvalidArgument` naming the first bad index.

    The array owns nothing: it references the caller's arrays, which must stay
    unchanged while the Array is in use.
    """

    __slots__ = ("_values", "_offsets", "_host", "_max_length", "_lengths", "_framework")

    def __init__(
        self,
        values: Any,
        offsets: Any,
        *,
        host_offsets: Any = None,
        max_length: int | None = None,
        validate: bool = True,
    ) -> None:
        fw = framework_of(values)
        if fw is None:
            raise InvalidArgument(
                f"values must be a numpy, torch or mlx array, got {type(values).__name__}"
            )
        if framework_of(offsets) != fw:
            raise InvalidArgument(
                f"offsets must be a {_type_label(values)} like values, got {_type_label(offsets)}"
            )
        if values.ndim < 1:
            raise InvalidArgument("values must have at least one (ragged) dimension, got a scalar")
        if offsets.ndim != 1:
            raise InvalidArgument(
                f"offsets must be 1-D (batch_size+1,), got shape {tuple(offsets.shape)}"
            )
        if dtype_name(offsets.dtype) not in _OFFSET_DTYPES:
            raise InvalidArgument(f"offsets must be int32 or int64, got {offsets.dtype}")
        if fw == "torch" and offsets.device != values.device:
            raise InvalidArgument(
                f"offsets are on {offsets.device} but values are on {values.device}"
            )
        self._values = values
        self._offsets = offsets
        self._framework = fw
        self._lengths: Any = None
        self._host: np.ndarray | None = None
        if host_offsets is not None:
            # A copy: _set_host marks it read-only, which must not reach the
            # caller's array.
            host = np.array(host_offsets, dtype=np.int64)
            if host.shape != tuple(offsets.shape):
                raise InvalidArgument(
                    f"host_offsets has shape {host.shape}, offsets {tuple(offsets.shape)}"
                )
            self._set_host(host)
        elif validate or max_length is None:
            self._set_host(np.array(to_host(offsets), dtype=np.int64))
        if validate:
            assert self._host is not None
            check_offsets(self._host, int(values.shape[0]))
        if self._host is not None:
            lengths = np.diff(self._host)
            self._max_length = int(lengths.max()) if lengths.size else 0
        else:
            self._max_length = int(max_length)  # type: ignore[arg-type]

    @classmethod
    def _trusted(cls, values: Any, offsets: Any, host: np.ndarray, max_length: int,
                 framework: Framework) -> "Array":
        """An Array from parts a bridge built and knows to agree (values and
        offsets of one framework and device, ``host`` an int64 copy of the
        offsets, ``max_length`` its longest row): no checks and no copies, so
        that a conversion's host time stays small. ``host`` becomes the
        array's own and is made read-only."""
        self = cls.__new__(cls)
        self._values = values
        self._offsets = offsets
        self._framework = framework
        self._lengths = None
        self._set_host(host)
        self._max_length = max_length
        return self

    def _set_host(self, host: np.ndarray) -> None:
        host.flags.writeable = False
        self._host = host

    # --- the arrays -------------------------------------------------------

    @property
    def values(self) -> Any:
        """The packed rows, ``(total_length, *inner)``; the caller's object."""
        return self._values

    @property
    def offsets(self) -> Any:
        """Row boundaries, ``(batch_size + 1,)`` int32 or int64; the caller's object."""
        return self._offsets

    @property
    def lengths(self) -> Any:
        """``offsets[1:] - offsets[:-1]``, in the framework and on the device
        of ``offsets`` (computed once, without a host sync)."""
        if self._lengths is None:
            self._lengths = self._offsets[1:] - self._offsets[:-1]
        return self._lengths

    @property
    def host_offsets(self) -> np.ndarray:
        """A read-only int64 numpy copy of ``offsets`` (taken at construction,
        or on first use when construction skipped it)."""
        if self._host is None:
            self._set_host(np.array(to_host(self._offsets), dtype=np.int64))
        assert self._host is not None
        return self._host

    # --- host metadata, never a device sync -------------------------------

    @property
    def framework(self) -> Framework:
        """``"numpy"``, ``"torch"`` or ``"mlx"``."""
        return self._framework

    @property
    def batch_size(self) -> int:
        return int(self._offsets.shape[0]) - 1

    @property
    def total_length(self) -> int:
        """Number of packed rows (tokens), ``values.shape[0]``."""
        return int(self._values.shape[0])

    @property
    def max_length(self) -> int:
        """Length of the longest row (0 for an empty batch); a cached host int."""
        return self._max_length

    @property
    def inner_shape(self) -> tuple[int, ...]:
        """The non-ragged dims, ``values.shape[1:]``."""
        return tuple(int(d) for d in self._values.shape[1:])

    @property
    def dtype(self) -> Any:
        """The dtype of ``values``, as its framework spells it."""
        return self._values.dtype

    @property
    def device(self) -> Any:
        """``torch.device`` for torch arrays; ``"cpu"`` for numpy; mlx's
        default device for mlx arrays (mlx arrays live in unified memory)."""
        if self._framework == "torch":
            return self._values.device
        if self._framework == "mlx":
            return sys.modules["mlx.core"].default_device()
        return "cpu"

    @property
    def nbytes(self) -> int:
        """Bytes held by ``values`` and ``offsets`` together."""
        return int(self._values.nbytes) + int(self._offsets.nbytes)

    # --- rows ---------------------------------------------------------------

    def __len__(self) -> int:
        return self.batch_size

    def __getitem__(self, i: int) -> Any:
        """Row ``i`` as a view of ``values`` (negative indices count from the end)."""
        try:
            i = operator.index(i)
        except TypeError:
            raise TypeError(f"scree.Array indices must be integers, got {type(i).__name__}") from None
        b = self.batch_size
        if not -b <= i < b:
            raise IndexError(f"row {i} out of range for a batch of {b}")
        if i < 0:
            i += b
        host = self.host_offsets
        return self._values[int(host[i]) : int(host[i + 1])]

    def __iter__(self) -> Iterator[Any]:
        host = self.host_offsets
        for i in range(self.batch_size):
            yield self._values[int(host[i]) : int(host[i + 1])]

    def __repr__(self) -> str:
        device = f", device={self.device}" if self._framework == "torch" else ""
        return (
            f"scree.Array({self._framework}, batch_size={self.batch_size}, "
            f"total_length={self.total_length}, max_length={self.max_length}, "
            f"inner_shape={self.inner_shape}, dtype={dtype_name(self.dtype)}, "
            f"offsets={dtype_name(self._offsets.dtype)}{device})"
        )


def pack(rows: Sequence[Any], *, offsets_dtype: Any = "int64") -> Array:
    """Concatenate a list of numpy, torch or mlx arrays into an :class:`Array`.

    Every element needs the same framework (and torch device), dtype and
    non-ragged dims ``shape[1:]``; elements may have zero rows. The result's
    values are a new array (a copy) in that framework; its offsets are
    ``offsets_dtype``: int64, or int32 (FlashAttention's ``cu_seqlens``),
    which raises :class:`scree.InvalidArgument` past 2**31 - 1 rows.
    A mismatch raises :class:`scree.InvalidArgument` naming the first element
    that differs, what differs, and the expected and actual values.
    """
    od = offsets_dtype_name(offsets_dtype)
    rows = list(rows)
    if not rows:
        raise InvalidArgument("pack needs at least one element to know the dtype and shape")
    first = rows[0]
    fw = framework_of(first)
    if fw is None:
        raise InvalidArgument(
            f"pack: element 0 is a {type(first).__name__}, expected a numpy, torch or mlx array"
        )
    if first.ndim < 1:
        raise InvalidArgument("pack: element 0 is a scalar; each element needs a length dimension")
    inner = tuple(first.shape[1:])
    for i, r in enumerate(rows[1:], start=1):
        if framework_of(r) != fw:
            raise InvalidArgument(
                f"pack: element {i} is a {_type_label(r)}, expected {_type_label(first)} like element 0"
            )
        if r.ndim < 1:
            raise InvalidArgument(f"pack: element {i} is a scalar; each element needs a length dimension")
        if r.dtype != first.dtype:
            raise InvalidArgument(
                f"pack: element {i} has dtype {dtype_name(r.dtype)}, "
                f"expected {dtype_name(first.dtype)} (the dtype of element 0)"
            )
        if tuple(r.shape[1:]) != inner:
            raise InvalidArgument(
                f"pack: element {i} has non-ragged dims {tuple(r.shape[1:])} (shape {tuple(r.shape)}), "
                f"expected {inner} (shape[1:] of element 0)"
            )
        if fw == "torch" and r.device != first.device:
            raise InvalidArgument(f"pack: element {i} is on {r.device}, expected {first.device}")

    host = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum([int(r.shape[0]) for r in rows], out=host[1:])
    if od == "int32" and host[-1] > np.iinfo(np.int32).max:
        raise InvalidArgument(
            f"offsets_dtype=int32 cannot hold {int(host[-1])} rows (int32 offsets end at "
            f"{np.iinfo(np.int32).max}): use offsets_dtype='int64'"
        )
    if fw == "numpy":
        values = np.concatenate(rows, axis=0)
        offsets = host.astype(od)
    elif fw == "torch":
        torch = sys.modules["torch"]
        values = torch.cat(rows, dim=0)
        offsets = torch.from_numpy(host.astype(od)).to(first.device)
    else:
        mx = sys.modules["mlx.core"]
        values = mx.concatenate(rows, axis=0)
        offsets = mx.array(host.astype(od))
    # The offsets are correct by construction; skip re-validating them.
    return Array(values, offsets, host_offsets=host, validate=False)


def from_cu_seqlens(values: Any, cu_seqlens: Any) -> Array:
    """Wrap FlashAttention-style ``(values, cu_seqlens)`` as an :class:`Array`
    without copying: ``arr.values is values`` and ``arr.offsets is cu_seqlens``.

    The offsets are validated; for CUDA tensors that costs one small
    device-to-host copy of ``cu_seqlens`` (the only sync), after which every
    piece of metadata is a host int.
    """
    return Array(values, cu_seqlens)
