"""One-line conversions between :class:`scree.Array` and the layouts existing
code already uses: HuggingFace padded hidden states with an attention mask, a
generic padded tensor with a bool or integer mask, ``torch.nested`` jagged
tensors, and numpy/torch arrays.

Every bridge comes in a pair (``from_x`` / ``to_x``) and the pairs round-trip
exactly.

Costs on CUDA. Packing needs the number of real tokens on the host to size
its output, so ``from_hf_padded`` and ``from_padded`` with a mask make one
small device-to-host transfer: one small C kernel (scree/ragged.h)
summarises the mask and computes offsets and per-row shifts, and writes the
offsets, the first bad row and the longest row to host memory. Waiting for
it is their only sync.
``from_padded`` given host ``lengths`` needs none: one C call checks them and
queues the offsets' copy and the gather. The gather is one C kernel.
Unpacking (``to_hf_padded``, ``to_padded``) takes the padded length from the
host-cached ``arr.max_length`` and writes each padded element once with
scree's Triton kernels: no sync either. Neither direction loops over the
batch in Python. Without CUDA in ``scree._native`` the same conversions run
on torch ops with the same single sync.
"""

from __future__ import annotations

import os
from typing import Any, Literal

import numpy as np

from .array import Array, _type_label, framework_of, offsets_dtype_name, pack, to_host
from .errors import InvalidArgument

from ._ext import DTYPE_CODES, native_attr
from ._ext import native as _native

__all__ = [
    "from_hf_padded",
    "to_hf_padded",
    "from_padded",
    "to_padded",
    "from_torch_nested",
    "to_torch_nested",
    "to_torch",
    "to_numpy",
]

_SIDES = ("right", "left")
_INT32_MAX = 2**31 - 1

#: Where a row's padding is: after its real tokens or before them. (The
#: masked conversions also find the side row by row: see :func:`from_padded`.)
PaddingSide = Literal["right", "left"]


def _torch() -> Any:
    import torch

    return torch


def _mx() -> Any:
    import mlx.core as mx

    return mx


def _triton_copies(device: Any, dtype: Any, default: bool) -> bool:
    """Whether to move rows with scree's Triton kernels instead of torch ops.

    ``SCREE_BRIDGES_KERNEL=triton`` or ``=torch`` forces one way (read on every
    call); unset, ``default`` decides. Unpacking defaults to the kernels on
    CUDA: they write each padded element once, where torch's unpacking fills
    the whole output and then writes the real rows again (0.85-1.02 of a
    device copy against 0.72-0.85 on an H100, docs/benchmarks.md). Packing
    defaults to the C kernels (:func:`_native_packing`), which beat both. CPU
    tensors use the kernels only under Triton's interpreter (for tests), and
    other dtypes (bool, complex, fp8) keep the torch ops.
    """
    choice = os.environ.get("SCREE_BRIDGES_KERNEL", "")
    if choice == "torch" or (choice != "triton" and not default):
        return False
    torch = _torch()
    if dtype not in (torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.uint8,
                     torch.int8, torch.int16, torch.int32, torch.int64):
        return False
    if device.type == "cuda":
        return True
    return choice == "triton" and os.environ.get("TRITON_INTERPRET") == "1"


def _native_packing(device: Any) -> bool:
    """Whether to pack CUDA tensors with screekernels' C packing kernels
    (scree/ragged.h, through ``scree._native``): the default on CUDA when the
    extension was built with CUDA. ``SCREE_BRIDGES_KERNEL=torch`` or
    ``=triton`` picks those paths instead, for comparing them."""
    if device.type != "cuda" or os.environ.get("SCREE_BRIDGES_KERNEL", "") in ("torch", "triton"):
        return False
    return _native is not None and bool(getattr(_native, "HAVE_CUDA_KERNELS", 0)) and hasattr(
        _native, "pack_rows")


def _check_side(side: str, allow_auto: bool = False) -> None:
    allowed = _SIDES + (("auto",) if allow_auto else ())
    if side not in allowed:
        raise InvalidArgument(f"padding_side must be one of {allowed}, got {side!r}")


def _narrow_offsets(arr: Array, od: str) -> Array:
    """``arr`` with offsets of dtype ``od`` ("int32" or "int64"). The bridges
    build int64 offsets; int32 (FlashAttention's ``cu_seqlens``) is a cast of
    B + 1 integers, queued without a sync, once the host offsets show that
    the total fits."""
    if od == "int64":
        return arr
    host = arr.host_offsets
    total = int(host[-1])
    if total > _INT32_MAX:
        raise InvalidArgument(
            f"offsets_dtype=int32 cannot hold this batch's {total} rows (int32 offsets end at "
            f"{_INT32_MAX}): use offsets_dtype='int64'"
        )
    fw = arr.framework
    if fw == "torch":
        offsets = arr.offsets.to(_torch().int32)
    elif fw == "mlx":
        offsets = arr.offsets.astype(_mx().int32)
    else:
        offsets = arr.offsets.astype(np.int32)
    return Array._trusted(arr.values, offsets, np.array(host), arr.max_length, fw)


def _padded_length(arr: Array, pad_to: Any, pad_to_multiple_of: Any, name: str) -> int:
    """The padded width: ``pad_to`` when given, else the longest row, then
    rounded up to a multiple of ``pad_to_multiple_of`` when given (an explicit
    ``pad_to`` must already be one). Host ints only: no sync."""
    longest = arr.max_length
    if pad_to_multiple_of is not None:
        if isinstance(pad_to_multiple_of, bool) or not isinstance(pad_to_multiple_of, (int, np.integer)):
            raise InvalidArgument(
                f"pad_to_multiple_of must be a positive int, got {pad_to_multiple_of!r}"
            )
        if pad_to_multiple_of < 1:
            raise InvalidArgument(f"pad_to_multiple_of must be at least 1, got {pad_to_multiple_of}")
    if pad_to is None:
        S = longest
        if pad_to_multiple_of is not None:
            m = int(pad_to_multiple_of)
            S = -(-S // m) * m
        return S
    if isinstance(pad_to, bool) or not isinstance(pad_to, (int, np.integer)):
        raise InvalidArgument(f"{name} must be an int, got {pad_to!r}")
    S = int(pad_to)
    if S < longest:
        raise InvalidArgument(f"{name}={S} is shorter than the longest row ({longest})")
    if pad_to_multiple_of is not None and S % int(pad_to_multiple_of):
        raise InvalidArgument(
            f"{name}={S} is not a multiple of pad_to_multiple_of={int(pad_to_multiple_of)}"
        )
    return S


# --- analysing a mask ---------------------------------------------------------

# Rows of the per-row summary of a mask: the number of real tokens, the first
# and last real position (S and -1 for an empty row), and whether the row holds
# values other than 0 and 1. Computed where the mask lives: with numpy, or,
# for a CUDA mask without the C kernels, with torch ops whose stacked summary
# is the one device-to-host copy of a conversion (the C plan keeps its
# summary on the device and reads it back only to name a bad row).
_LEN, _FIRST, _LAST, _NOT_BINARY_ROW = 0, 1, 2, 3


def _mask_summary_torch(mask: Any) -> tuple[Any, np.ndarray]:
    """Returns ``(lengths, summary)``: the lengths stay on the mask's device
    (int64), the (4, B) summary comes back to the host."""
    torch = _torch()
    if mask.dtype == torch.bool:
        real = mask
    elif mask.is_floating_point() or mask.is_complex():
        raise InvalidArgument(f"mask must be bool or an integer dtype of 0 and 1, got {mask.dtype}")
    else:
        real = mask != 0
    B, S = mask.shape
    lengths = real.sum(1)
    if S == 0:
        return lengths, np.zeros((4, B), dtype=np.int64)
    pos = torch.arange(S, device=mask.device)
    first = torch.where(real, pos, S).amin(1)
    last = torch.where(real, pos, -1).amax(1)
    if mask.dtype == torch.bool:
        not_binary = torch.zeros_like(lengths)
    else:
        not_binary = (real & (mask != 1)).any(1)
    summary = torch.stack([lengths, first, last, not_binary.to(lengths.dtype)])
    return lengths, summary.cpu().numpy()


def _mask_summary_numpy(mask: np.ndarray) -> np.ndarray:
    """The numpy twin of :func:`_mask_summary_torch`; returns the summary."""
    if mask.dtype == np.bool_:
        real = mask
    elif not np.issubdtype(mask.dtype, np.integer):
        raise InvalidArgument(f"mask must be bool or an integer dtype of 0 and 1, got {mask.dtype}")
    else:
        real = mask != 0
    B, S = mask.shape
    if S == 0:
        return np.zeros((4, B), dtype=np.int64)
    pos = np.arange(S)
    return np.stack([
        real.sum(1),
        np.where(real, pos, S).min(1),
        np.where(real, pos, -1).max(1),
        (real & (mask != 1)).any(1),
    ]).astype(np.int64)


def _check_mask_rows(summary: np.ndarray, S: int, side: str, mask: Any, name: str) -> np.ndarray:
    """Check every row of a mask summary against ``side`` ("right", "left" or
    "auto") and return the start of each row's real tokens (0 when empty).
    Raises :class:`InvalidArgument` for the first bad row."""
    n, first, last, not_binary = summary
    empty = n == 0
    contiguous = empty | (last - first + 1 == n)
    prefix, suffix = empty | (first == 0), empty | (last == S - 1)
    sided = {"right": prefix, "left": suffix}.get(side, prefix | suffix)
    bad = np.flatnonzero((not_binary != 0) | ~contiguous | ~sided)
    if bad.size:
        row = int(bad[0])
        a, b, k = int(first[row]), int(last[row]), int(n[row])
        if not_binary[row]:
            values = sorted({int(v) for v in np.asarray(to_host(mask[row])).tolist()})
            raise InvalidArgument(
                f"{name} row {row} holds values {values[:8]}: a mask must hold only 0 and 1"
            )
        if not contiguous[row]:
            raise InvalidArgument(
                f"{name} row {row} is not contiguous: its {k} real tokens lie between positions "
                f"{a} and {b}; padding must be on one side only"
            )
        where = {"right": "a prefix (right padding)", "left": "a suffix (left padding)"}.get(
            side, "a prefix (right padding) or a suffix (left padding)"
        )
        raise InvalidArgument(
            f"{name} row {row} has its real tokens at positions {a}..{b}, which is not {where}"
            + ("; pass padding_side='left' for left-padded input" if side == "right" else "")
        )
    return np.where(empty, 0, first)


# --- packing and unpacking ----------------------------------------------------


def _host_offsets(lengths: np.ndarray) -> np.ndarray:
    host = np.zeros(lengths.shape[0] + 1, dtype=np.int64)
    np.cumsum(lengths, out=host[1:])
    return host


def _upload(host: np.ndarray, device: Any) -> Any:
    """Copy a small int64 host array to ``device`` without waiting for it:
    through pinned memory, so the copy is queued on the stream like a kernel."""
    torch = _torch()
    if device.type == "cpu":
        return torch.from_numpy(host)
    staging = torch.empty(host.shape, dtype=torch.int64, pin_memory=True)
    staging.numpy()[...] = host
    return staging.to(device, non_blocking=True)


# What the C plan reads, from the extension (scree/dtype.h, scree/array.h,
# scree/ragged.h); empty without it, where the C plan is not used.
_MASK_CODES = {k: DTYPE_CODES[k] for k in ("bool", "int8", "int16", "int32", "int64", "uint8")
               if k in DTYPE_CODES}
_SIDE_CODES = ({"right": native_attr("PAD_RIGHT"), "left": native_attr("PAD_LEFT"),
                "auto": native_attr("PAD_AUTO")} if _native is not None else {})


class _CudaCall:
    """Makes ``device`` current for the native launches when it is not
    already (the usual case costs one query), and holds its current stream."""

    def __init__(self, device: Any) -> None:
        torch = _torch()
        index = device.index if device.index is not None else torch.cuda.current_device()
        self._guard = None if index == torch.cuda.current_device() else torch.cuda.device(index)
        self.device = device

    def __enter__(self) -> int:
        if self._guard is not None:
            self._guard.__enter__()
        return _torch().cuda.current_stream(self.device).cuda_stream

    def __exit__(self, *exc: Any) -> None:
        if self._guard is not None:
            self._guard.__exit__(*exc)


def _row_bytes(padded: Any) -> int:
    n = padded.element_size()
    for d in padded.shape[2:]:
        n *= int(d)
    return n


class _PackSource:
    """What the gather needs of the padded tensor, taken before the plan's
    sync so that little host work is left between the sync and the launch."""

    def __init__(self, padded: Any) -> None:
        src = padded if padded.is_contiguous() else padded.contiguous()
        self.keep = src  # alive until the gather is queued
        self.ptr = src.data_ptr()
        self.batch = int(padded.shape[0])
        self.inner = tuple(padded.shape[2:])
        self.dtype = padded.dtype
        self.device = padded.device
        self.row_bytes = _row_bytes(padded)


def _pack_rows_native(src: _PackSource, offsets: Any, shift_ptr: int, host: np.ndarray,
                      longest: int, stream: int) -> Array:
    """Queue the C gather of the padded rows into a new packed tensor
    (``offsets`` and the shifts at ``shift_ptr`` already on the device;
    ``host``, the offsets on the host, becomes the Array's own)."""
    total = int(host[-1])
    values = _torch().empty((total, *src.inner), dtype=src.dtype, device=src.device)
    if total and src.row_bytes:
        _native.pack_rows(src.ptr, values.data_ptr(), src.row_bytes, offsets.data_ptr(),
                          shift_ptr, src.batch, total, stream)
    return Array._trusted(values, offsets, host, longest, "torch")


def _from_masked_native(padded: Any, mask: Any, side: str, name: str) -> Array:
    """The CUDA path of :func:`_from_masked`: the C plan summarises the mask
    and computes offsets and shifts in one small kernel that writes what the
    host needs into mapped pinned memory (the one sync), and the C gather
    packs."""
    torch = _torch()
    code = _MASK_CODES.get(str(mask.dtype).rsplit(".", 1)[-1])
    if code is None:
        raise InvalidArgument(f"mask must be bool or an integer dtype of 0 and 1, got {mask.dtype}")
    B, S = int(mask.shape[0]), int(mask.shape[1])
    dev = padded.device
    mask = mask if mask.is_contiguous() else mask.contiguous()
    src = _PackSource(padded)
    at = _native.pack_plan_layout(B)  # where each part of work starts (scree/ragged.h)
    work = torch.empty(at["work_len"], dtype=torch.int64, device=dev)
    plan = np.empty(at["host_len"], dtype=np.int64)
    with _CudaCall(dev) as stream:
        _native.pack_plan(mask.data_ptr(), code, B, S, _SIDE_CODES[side], work.data_ptr(),
                          plan.ctypes.data, stream)
        bad = int(plan[at["bad_row"]])
        if bad >= 0:
            # A bad row: the summary, read back only now, names what is wrong.
            n = at["summary_entries"]
            summary = work[at["summary"] : at["summary"] + n * B].view(n, B).cpu().numpy()
            _check_mask_rows(summary, S, side, mask, name)
            raise InvalidArgument(f"{name} row {bad} is not a valid mask row")
        off = at["offsets"]
        return _pack_rows_native(src, work[off : off + B + 1],
                                 work.data_ptr() + work.element_size() * at["shift"],
                                 plan[off : off + B + 1], int(plan[at["longest"]]), stream)


def _from_lengths_native(padded: Any, lengths: np.ndarray, side: str) -> Array:
    """The CUDA path of :func:`from_padded` with host lengths: one C call
    checks the lengths, computes the offsets on the host, and queues their
    copy (with the per-row shifts) and the gather. No sync."""
    torch = _torch()
    B, S = int(padded.shape[0]), int(padded.shape[1])
    total = int(lengths.sum())
    dev = padded.device
    values = torch.empty((max(total, 0), *padded.shape[2:]), dtype=padded.dtype, device=dev)
    work = torch.empty(2 * B + 1, dtype=torch.int64, device=dev)
    host = np.empty(B + 1, dtype=np.int64)
    src = padded if padded.is_contiguous() else padded.contiguous()
    with _CudaCall(dev) as stream:
        _native.pack_lengths(src.data_ptr(), values.data_ptr(), _row_bytes(padded),
                             lengths.ctypes.data, B, S, total, _SIDE_CODES[side],
                             host.ctypes.data, work.data_ptr(), stream)
    return Array._trusted(values, work[: B + 1], host, int(lengths.max()) if B else 0, "torch")


def _gather(padded: Any, fw: str, lengths: np.ndarray, starts: np.ndarray,
            lengths_dev: Any = None) -> Array:
    """Pack row ``b``'s tokens ``[starts[b], starts[b] + lengths[b])`` of a
    (B, S, *inner) padded array with one gather.

    ``lengths`` and ``starts`` are on the host; the packed position of every
    token differs from its padded position by a per-row shift, computed here
    for the B rows. For torch the offsets and shifts travel to the device in
    one queued copy, and ``lengths_dev`` (the lengths already on the device,
    if any) spares reading them back from the offsets.
    """
    B, S = int(padded.shape[0]), int(padded.shape[1])
    inner = tuple(padded.shape[2:])
    host = _host_offsets(lengths)
    total = int(host[-1])
    shift = np.arange(B, dtype=np.int64) * S + starts - host[:-1]
    if fw == "torch":
        torch = _torch()
        dev = padded.device
        both = _upload(np.concatenate([host, shift]), dev)
        offsets, shift_dev = both[: B + 1], both[B + 1 :]
        if _triton_copies(dev, padded.dtype, default=False):
            from .kernels.triton import pack_padded

            longest = int(lengths.max()) if B else 0
            values = pack_padded(padded, offsets, shift_dev, total, longest)
            return Array(values, offsets, host_offsets=host, validate=False)
        if lengths_dev is None:
            lengths_dev = offsets[1:] - offsets[:-1]
        ar = torch.arange(max(B, total), device=dev)
        row = torch.repeat_interleave(ar[:B], lengths_dev, output_size=total)
        src = ar[:total] + shift_dev[row]
        values = padded.reshape(B * S, *inner).index_select(0, src)
        return Array(values, offsets, host_offsets=host, validate=False)
    src = np.arange(total, dtype=np.int64) + np.repeat(shift, lengths)
    if fw == "numpy":
        values = padded.reshape(B * S, *inner)[src]
        return Array(values, host.copy(), host_offsets=host, validate=False)
    mx = _mx()
    values = mx.take(mx.reshape(padded, (B * S, *inner)), mx.array(src), axis=0)
    return Array(values, mx.array(host), host_offsets=host, validate=False)


def _scatter(arr: Array, S: int, side: str, pad_value: Any) -> tuple[Any, Any]:
    """Unpack ``arr`` into a (B, S, *inner) array filled with ``pad_value`` and
    a (B, S) bool mask, with the real tokens right- or left-aligned."""
    B, T, inner = arr.batch_size, arr.total_length, arr.inner_shape
    if S < arr.max_length:
        raise InvalidArgument(f"max_length={S} is shorter than the longest row ({arr.max_length})")
    fw = arr.framework
    if fw == "torch":
        torch = _torch()
        values = arr.values
        dev = values.device
        lengths = arr.lengths.to(torch.int64)
        pad_start = (S - lengths) if side == "left" else torch.zeros_like(lengths)
        if _triton_copies(dev, values.dtype, default=True):
            from .kernels.triton import unpack_padded

            out = unpack_padded(values, arr.offsets, S, pad_value, side == "left")
        else:
            # The big fill is queued first; the small index kernels follow it.
            out = torch.full((B * S, *inner), pad_value, dtype=values.dtype, device=dev)
            if T:
                row = torch.repeat_interleave(torch.arange(B, device=dev), lengths, output_size=T)
                shift = torch.arange(B, device=dev) * S + pad_start - arr.offsets[:-1].to(torch.int64)
                dest = torch.arange(T, device=dev) + shift[row]
                out.index_copy_(0, dest, values)
        pos = torch.arange(S, device=dev)
        if side == "left":
            mask = pos[None, :] >= pad_start[:, None]
        else:
            mask = pos[None, :] < lengths[:, None]
        return out.view(B, S, *inner), mask
    host = arr.host_offsets
    lengths = np.diff(host)
    pad_start = (S - lengths) if side == "left" else np.zeros_like(lengths)
    row = np.repeat(np.arange(B), lengths)
    dest = np.arange(T, dtype=np.int64) + (np.arange(B, dtype=np.int64) * S + pad_start - host[:-1])[row]
    pos = np.arange(S)
    mask = (pos[None, :] >= pad_start[:, None]) & (pos[None, :] < (pad_start + lengths)[:, None])
    if fw == "numpy":
        out = np.full((B * S, *inner), pad_value, dtype=arr.values.dtype)
        out[dest] = arr.values
        return out.reshape(B, S, *inner), mask
    mx = _mx()
    out = mx.full((B * S, *inner), pad_value, dtype=arr.values.dtype)
    if T:
        out[mx.array(dest)] = arr.values
    return mx.reshape(out, (B, S, *inner)), mx.array(mask)


def _check_padded(padded: Any, mask: Any, names: tuple[str, str]) -> str:
    fw = framework_of(padded)
    if fw is None:
        raise InvalidArgument(
            f"{names[0]} must be a numpy, torch or mlx array, got {type(padded).__name__}"
        )
    if padded.ndim < 2:
        raise InvalidArgument(
            f"{names[0]} must be (batch, seq, ...), got shape {tuple(padded.shape)}"
        )
    if mask is not None:
        if framework_of(mask) != fw:
            raise InvalidArgument(
                f"{names[1]} must be a {_type_label(padded)} like {names[0]}, got {_type_label(mask)}"
            )
        if tuple(mask.shape) != tuple(padded.shape[:2]):
            raise InvalidArgument(
                f"{names[1]} has shape {tuple(mask.shape)}, expected "
                f"{tuple(padded.shape[:2])} ({names[0]}.shape[:2])"
            )
        if fw == "torch" and mask.device != padded.device:
            raise InvalidArgument(
                f"{names[1]} is on {mask.device} but {names[0]} is on {padded.device}"
            )
    return fw


def _from_masked(padded: Any, mask: Any, side: str, names: tuple[str, str]) -> Array:
    fw = _check_padded(padded, mask, names)
    if fw == "torch" and _native_packing(padded.device):
        return _from_masked_native(padded, mask, side, names[1])
    if fw == "torch":
        lengths_dev, summary = _mask_summary_torch(mask)
    else:
        lengths_dev, summary = None, _mask_summary_numpy(np.asarray(to_host(mask)))
    starts = _check_mask_rows(summary, int(mask.shape[1]), side, mask, names[1])
    return _gather(padded, fw, summary[0], starts, lengths_dev)


# --- HuggingFace ----------------------------------------------------------------


def from_hf_padded(hidden_states: Any, attention_mask: Any, *,
                   offsets_dtype: Any = "int64") -> Array:
    """Pack HuggingFace-style padded hidden states into an :class:`Array`.

    Args:
        hidden_states: (B, S, *inner) torch tensor (numpy and mlx work too).
        attention_mask: (B, S) mask of 1 for real tokens and 0 for padding,
            int64 as HF makes it (any integer dtype or bool is accepted).

    Each row's real tokens must be one contiguous block at the start (right
    padding) or at the end (left padding, as HF uses for generation); the
    side is detected per row and the tokens keep their order. A mask holding
    other values than 0 and 1, with gaps, or of the wrong shape raises
    :class:`scree.InvalidArgument` naming the first bad row.

    Returns a new Array: values are a packed copy (total_real_tokens, *inner),
    offsets are ``offsets_dtype`` (int64, or int32 as FlashAttention's varlen
    functions take ``cu_seqlens``: a batch of more than 2**31 - 1 tokens then
    raises :class:`scree.InvalidArgument`) on the same device. On CUDA this
    costs one sync, for the offsets (the packed size must be known to
    allocate the output).
    """
    od = offsets_dtype_name(offsets_dtype)
    arr = _from_masked(hidden_states, attention_mask, "auto", ("hidden_states", "attention_mask"))
    return _narrow_offsets(arr, od)


def to_hf_padded(arr: Array, *, padding_side: PaddingSide = "right", pad_value: Any = 0,
                 pad_to: int | None = None,
                 pad_to_multiple_of: int | None = None) -> tuple[Any, Any]:
    """Unpack ``arr`` into HF's ``(hidden_states, attention_mask)``.

    ``hidden_states`` is (B, S, *inner) with ``pad_value`` in the padding,
    and ``attention_mask`` is (B, S) int64 of 1 for real tokens and 0 for
    padding, right-padded unless ``padding_side="left"``. ``S`` is
    ``arr.max_length``, or ``pad_to`` (a fixed width, such as the original
    sequence length for labels or CUDA graphs; shorter than the longest row
    raises :class:`scree.InvalidArgument`), then rounded up to a multiple of
    ``pad_to_multiple_of`` when given (an explicit ``pad_to`` must be one).
    Both are new arrays in ``arr``'s framework and on its device. No host
    sync: the padded length comes from the cached ``arr.max_length``.
    """
    _check_side(padding_side)
    S = _padded_length(arr, pad_to, pad_to_multiple_of, "pad_to")
    padded, mask = _scatter(arr, S, padding_side, pad_value)
    if arr.framework == "torch":
        return padded, mask.to(_torch().int64)
    if arr.framework == "mlx":
        return padded, mask.astype(_mx().int64)
    return padded, mask.astype(np.int64)


# --- generic padded + mask -------------------------------------------------------


def from_padded(
    padded: Any,
    mask: Any = None,
    *,
    lengths: Any = None,
    padding_side: Literal["right", "left", "auto"] = "right",
    offsets_dtype: Any = "int64",
) -> Array:
    """Pack a padded (B, S, *inner) array into an :class:`Array`.

    Give either ``mask`` ((B, S), bool, or integers of 0 and 1, True/1 for
    real rows) or ``lengths`` (B real lengths: a host sequence, which needs no
    sync, or an array). ``padding_side`` says where the padding is:
    ``"right"`` (real tokens first, the default), ``"left"``, or ``"auto"``
    (detected per row; masks only). A mask that disagrees raises
    :class:`scree.InvalidArgument` naming the first bad row.

    Works on torch, numpy and mlx arrays and returns an Array of the same
    framework (values copied; offsets of ``offsets_dtype``, int64 or int32,
    as for :func:`from_hf_padded`).
    """
    od = offsets_dtype_name(offsets_dtype)
    return _narrow_offsets(_from_padded(padded, mask, lengths, padding_side), od)


def _from_padded(padded: Any, mask: Any, lengths: Any, padding_side: str) -> Array:
    if (mask is None) == (lengths is None):
        raise InvalidArgument("from_padded needs exactly one of mask or lengths")
    if mask is not None:
        _check_side(padding_side, allow_auto=True)
        return _from_masked(padded, mask, padding_side, ("padded", "mask"))
    _check_side(padding_side)
    fw = _check_padded(padded, None, ("padded", "mask"))
    B, S = int(padded.shape[0]), int(padded.shape[1])
    raw = np.asarray(to_host(lengths) if framework_of(lengths) else list(lengths))
    if raw.size and not np.issubdtype(raw.dtype, np.integer):
        # A cast would truncate 2.5 to 2 and pack the wrong rows.
        raise InvalidArgument(f"lengths must be integers, got {raw.dtype}")
    host_lengths = raw.astype(np.int64).reshape(-1)
    if host_lengths.shape != (B,):
        raise InvalidArgument(f"lengths has {host_lengths.size} entries, expected {B} (batch size)")
    if fw == "torch" and _native_packing(padded.device):
        # The C call checks each length itself, with the message below.
        return _from_lengths_native(padded, np.ascontiguousarray(host_lengths), padding_side)
    bad = np.flatnonzero((host_lengths < 0) | (host_lengths > S))
    if bad.size:
        i = int(bad[0])
        raise InvalidArgument(f"lengths[{i}]={int(host_lengths[i])} is outside [0, {S}]")
    starts = (S - host_lengths) if padding_side == "left" else np.zeros(B, dtype=np.int64)
    return _gather(padded, fw, host_lengths, starts)


def to_padded(
    arr: Array,
    pad_value: Any = 0,
    *,
    padding_side: PaddingSide = "right",
    max_length: int | None = None,
    pad_to: int | None = None,
    pad_to_multiple_of: int | None = None,
) -> tuple[Any, Any]:
    """Unpack ``arr`` into ``(padded, mask)``: a (B, S, *inner) array filled
    with ``pad_value`` where there is no data, and a (B, S) bool mask, True
    for real rows. ``S`` is ``pad_to`` if given (at least ``arr.max_length``,
    else :class:`scree.InvalidArgument`), else ``arr.max_length``, then
    rounded up to a multiple of ``pad_to_multiple_of`` when given (an
    explicit ``pad_to`` must be one). ``max_length`` is the older name of
    ``pad_to``. Real rows sit at the start of each row, or at the end with
    ``padding_side="left"``. New arrays in ``arr``'s framework and device;
    no host sync.
    """
    _check_side(padding_side)
    name = "pad_to"
    if max_length is not None:
        if pad_to is not None and pad_to != max_length:
            raise InvalidArgument(
                f"max_length={max_length} and pad_to={pad_to} disagree: give one of them"
            )
        pad_to, name = max_length, "max_length"
    S = _padded_length(arr, pad_to, pad_to_multiple_of, name)
    return _scatter(arr, S, padding_side, pad_value)


# --- torch.nested -----------------------------------------------------------------


def from_torch_nested(nt: Any) -> Array:
    """Wrap a jagged ``torch.nested`` tensor as an :class:`Array`, zero-copy.

    ``arr.values`` shares memory with ``nt.values()`` and ``arr.offsets`` is
    ``nt.offsets()``. A jagged tensor with holes (made by ``narrow``, so
    ``nt.lengths()`` is set) must be made contiguous first. A strided-layout
    nested tensor is packed instead, which copies.
    """
    torch = _torch()
    if not isinstance(nt, torch.Tensor) or not nt.is_nested:
        raise InvalidArgument(f"expected a nested tensor, got {_type_label(nt)}")
    if nt.layout != torch.jagged:
        return pack(nt.unbind())
    if nt.lengths() is not None:
        raise InvalidArgument(
            "this jagged nested tensor has holes (nt.lengths() is set); call nt.contiguous() first"
        )
    if getattr(nt, "_ragged_idx", 1) != 1:
        raise InvalidArgument("the ragged dimension of the nested tensor must be dim 1")
    values, offsets = nt.values(), nt.offsets()
    # torch caches the max length when it knows it; then no sync is needed.
    max_len = getattr(nt, "_maybe_max_seqlen", None)
    if max_len is not None:
        return Array(values, offsets, max_length=int(max_len), validate=False)
    return Array(values, offsets)


def to_torch_nested(arr: Array) -> Any:
    """Return a jagged ``torch.nested`` tensor over ``arr``'s values and
    offsets without copying (numpy arrays go through :func:`to_torch`,
    which shares CPU memory). The cached max and min lengths are handed to
    torch so it never needs a sync to learn them."""
    torch = _torch()
    arr = to_torch(arr)
    lengths = np.diff(arr.host_offsets)
    return torch.nested.nested_tensor_from_jagged(
        arr.values,
        arr.offsets,
        min_seqlen=int(lengths.min()) if lengths.size else 0,
        max_seqlen=arr.max_length,
    )


# --- numpy <-> torch ---

# dtypes numpy has only through ml_dtypes, with the torch dtype of the same
# width that carries their bits across torch.from_numpy and Tensor.numpy.
_ML_DTYPES = {"bfloat16": "int16", "float8_e4m3fn": "uint8", "float8_e5m2": "uint8"}


def _ml_dtype(name: str) -> Any:
    try:
        import ml_dtypes
    except ImportError:
        raise InvalidArgument(
            f"numpy has no {name} without the ml_dtypes package (a dependency of scree): "
            f"pip install ml_dtypes, or cast the values first (e.g. .float())"
        ) from None
    return np.dtype(getattr(ml_dtypes, name))


def _numpy_to_torch(a: np.ndarray) -> Any:
    """``torch.from_numpy``, sharing memory, for ml_dtypes' bfloat16 and fp8
    too (torch cannot take those directly: they travel as their bits)."""
    torch = _torch()
    name = a.dtype.name
    if name in _ML_DTYPES:
        bits = torch.from_numpy(a.view(np.dtype(_ML_DTYPES[name])))
        return bits.view(getattr(torch, name))
    return torch.from_numpy(a)


def _torch_to_numpy(t: Any) -> np.ndarray:
    """``Tensor.numpy()`` for a CPU tensor, sharing memory; bfloat16 and fp8
    come out as ml_dtypes' numpy types instead of raising."""
    torch = _torch()
    name = str(t.dtype).rsplit(".", 1)[-1]
    if name in _ML_DTYPES:
        want = _ml_dtype(name)
        return t.view(getattr(torch, _ML_DTYPES[name])).numpy().view(want)
    return t.numpy()


def to_torch(arr: Array) -> Array:
    """Return ``arr`` backed by torch tensors.

    A torch Array is returned as is. numpy arrays become CPU tensors that share
    their memory (``torch.from_numpy``); mlx arrays go through DLPack. The
    host metadata is carried over, so nothing is recomputed.
    """
    if arr.framework == "torch":
        return arr
    torch = _torch()
    if arr.framework == "numpy":
        values, offsets = _numpy_to_torch(arr.values), torch.from_numpy(arr.offsets)
    else:
        values, offsets = torch.from_dlpack(arr.values), torch.from_dlpack(arr.offsets)
    return Array(values, offsets, host_offsets=arr.host_offsets, validate=False)


def to_numpy(arr: Array) -> Array:
    """Return ``arr`` backed by numpy arrays.

    A numpy Array is returned as is. CPU torch tensors are shared, not copied
    (``Tensor.numpy()``). CUDA tensors are COPIED to host memory (this waits
    for the device); use DLPack consumers such as ``to_torch`` to stay on the
    GPU. bfloat16 and fp8 become ``ml_dtypes``' numpy types (shared memory
    too). mlx arrays are converted with ``np.asarray``.
    """
    if arr.framework == "numpy":
        return arr
    if arr.framework == "torch":
        values = _torch_to_numpy(arr.values.detach().cpu())
        offsets = arr.offsets.detach().cpu().numpy()
    else:
        values, offsets = np.asarray(arr.values), np.asarray(arr.offsets)
    return Array(values, offsets, host_offsets=arr.host_offsets, validate=False)
