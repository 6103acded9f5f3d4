"""Varlen attention over packed batches.

:func:`varlen_attention` runs the project's kernels (screekernels, in C and
CUDA) through the native extension ``scree._native``: the C reference on CPU
tensors and numpy arrays, the CUDA kernel on CUDA tensors. Without the
extension, CPU inputs fall back to the plain per-sequence torch reference
(:func:`reference_attention`), so the function works everywhere; CUDA inputs
then raise :class:`scree.NotSupported` (use
:func:`scree.kernels.triton.varlen_attention_triton` on the GPU instead).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..array import check_offsets, framework_of, to_host
from ..errors import InvalidArgument, NotSupported

# The native extension is optional: pip install ./client/python builds it.
from .._ext import DTYPE_CODES
from .._ext import native as _native

__all__ = ["varlen_attention", "reference_attention", "native_kernels_available"]

# scree_dtype codes of the element types the kernels know (scree/dtype.h,
# through the extension; empty without it, where the kernels are not used).
_DTYPE_CODES = {k: DTYPE_CODES[k] for k in ("float16", "bfloat16", "float32", "float64")
                if k in DTYPE_CODES}
_INT32_MAX = 2**31 - 1


def native_kernels_available(device: str = "cpu") -> bool:
    """Whether :func:`varlen_attention` runs screekernels on ``device``
    (``"cpu"`` or ``"cuda"``): the native extension is built and, for CUDA,
    built with the CUDA kernels. Says nothing about a GPU being present."""
    if _native is None or not hasattr(_native, "attention_fwd"):
        return False
    return device == "cpu" or bool(getattr(_native, "HAVE_CUDA_KERNELS", 0))


def _check_shapes(q: Any, k: Any, v: Any) -> tuple[int, int, int]:
    """Checks what only the shapes say; the kernels check the rest."""
    if q.ndim != 3 or k.ndim != 3 or v.ndim != 3:
        raise InvalidArgument(
            f"q, k, v must be (tokens, heads, head_dim); got shapes "
            f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}"
        )
    if tuple(k.shape) != tuple(v.shape):
        raise InvalidArgument(f"k and v shapes differ: {tuple(k.shape)} vs {tuple(v.shape)}")
    hq, hkv, d = int(q.shape[1]), int(k.shape[1]), int(q.shape[2])
    if int(k.shape[2]) != d:
        raise InvalidArgument(f"q has head_dim {d} but k has {int(k.shape[2])}")
    return hq, hkv, d


def _check_qkv(q: Any, k: Any, v: Any) -> tuple[int, int, int]:
    hq, hkv, d = _check_shapes(q, k, v)
    if hkv == 0 or hq % hkv:
        raise InvalidArgument(f"query heads ({hq}) must be a multiple of key/value heads ({hkv})")
    return hq, hkv, d


def _window(window: Any, causal: bool) -> tuple[int, int]:
    if window is None:
        return -1, -1
    try:
        left, right = (int(w) for w in window)
    except (TypeError, ValueError):
        raise InvalidArgument(
            f"window must be (left, right) with -1 for unbounded, got {window!r}"
        ) from None
    return left, right


def reference_attention(
    q: Any,
    k: Any,
    v: Any,
    offsets_q: Any,
    offsets_k: Any,
    causal: bool,
    scale: float | None = None,
    accum_dtype: Any = None,
    window: tuple[int, int] | None = None,
    return_lse: bool = False,
) -> Any:
    """Per-sequence ``softmax(Q K^T * scale + mask) V`` in torch, looping over
    sequences; the ground truth the kernels are tested against.

    Masking is that of screekernels (scree/attention.h): with ``Lq`` queries
    and ``Lk`` keys, query ``i`` sees key ``j`` when
    ``j <= i + Lk - Lq + right`` (``right`` is 0 when causal) and
    ``j >= i + Lk - Lq - left``, a bound of -1 being none; ``window`` is
    ``(left, right)``. A query that sees no key gets a zero output (and an
    lse of -inf). Computed in ``accum_dtype`` (float32 by default) and
    returned in ``q``'s dtype; with ``return_lse`` also the
    ``(heads, total_q)`` log-sum-exp of the scaled scores, in ``accum_dtype``.
    """
    import torch

    hq, hkv, d = _check_qkv(q, k, v)
    scale = 1.0 / math.sqrt(d) if scale is None else float(scale)
    left, right = _window(window, causal)
    if causal:
        right = 0
    acc = accum_dtype or torch.float32
    hq_per_kv = hq // hkv
    oq = _host_offsets(offsets_q, "offsets_q")
    ok = _host_offsets(offsets_k, "offsets_k")
    out = torch.zeros(q.shape, dtype=acc, device=q.device)
    lse = torch.full((hq, q.shape[0]), float("-inf"), dtype=acc, device=q.device)
    for b in range(oq.shape[0] - 1):
        qs, qe, ks, ke = int(oq[b]), int(oq[b + 1]), int(ok[b]), int(ok[b + 1])
        lq, lk = qe - qs, ke - ks
        if lq == 0 or lk == 0:
            continue
        qb = q[qs:qe].to(acc).transpose(0, 1)  # (Hq, Lq, D)
        kb = k[ks:ke].to(acc).repeat_interleave(hq_per_kv, dim=1).transpose(0, 1)
        vb = v[ks:ke].to(acc).repeat_interleave(hq_per_kv, dim=1).transpose(0, 1)
        s = qb @ kb.transpose(1, 2) * scale
        i = torch.arange(lq, device=q.device)[:, None]
        j = torch.arange(lk, device=q.device)[None, :]
        hidden = torch.zeros((lq, lk), dtype=torch.bool, device=q.device)
        if right >= 0:
            hidden |= j > i + (lk - lq) + right
        if left >= 0:
            hidden |= j < i + (lk - lq) - left
        s = s.masked_fill(hidden, float("-inf"))
        p = torch.softmax(s, dim=-1).nan_to_num(0.0)  # rows with no visible key
        out[qs:qe] = (p @ vb).transpose(0, 1)
        lse[:, qs:qe] = torch.logsumexp(s, dim=-1)
    out = out.to(q.dtype)
    return (out, lse) if return_lse else out


def _host_offsets(cu: Any, name: str) -> np.ndarray:
    """The offsets as a 1-D int64 numpy array; one device-to-host copy (a
    sync) for CUDA tensors."""
    try:
        host = np.asarray(to_host(cu) if framework_of(cu) else cu)
    except InvalidArgument:
        raise InvalidArgument(
            f"{name} must be a torch tensor, numpy array or sequence of ints, "
            f"got {type(cu).__name__}"
        ) from None
    if host.dtype.kind not in "iu" and host.size:
        raise InvalidArgument(f"{name} must hold integers, got dtype {host.dtype}")
    if host.ndim != 1 or host.shape[0] < 1:
        raise InvalidArgument(
            f"{name} must be 1-D with batch_size+1 >= 1 entries, got shape {tuple(host.shape)}"
        )
    return host.astype(np.int64, copy=False)


def _check_int32(host: np.ndarray, name: str) -> None:
    """The kernels take int32 offsets: a wider value must not wrap into a
    plausible one."""
    bad = np.flatnonzero((host < -(2**31)) | (host > _INT32_MAX))
    if bad.size:
        i = int(bad[0])
        raise InvalidArgument(f"{name}[{i}]={int(host[i])} does not fit the kernels' int32")


def _max_length(host: np.ndarray) -> int:
    # Invalid offsets may give negative lengths; the kernels name them.
    return max(0, int(np.diff(host).max())) if host.shape[0] > 1 else 0


def _fits_int32(x: int, name: str) -> int:
    if not -1 <= x <= _INT32_MAX:
        raise InvalidArgument(f"{name}={x} does not fit the kernels' int32")
    return x


def _dtype_code(x: Any, name: str) -> int:
    dname = str(x.dtype).rsplit(".", 1)[-1]
    if dname not in _DTYPE_CODES:
        raise InvalidArgument(f"{name} has dtype {dname}; the kernels take bfloat16, float16 "
                              f"or float32 (float16 and bfloat16 on CUDA)")
    return _DTYPE_CODES[dname]


def _native_numpy(q, k, v, hq, hkv, d, oq, ok, causal, scale, left, right, return_lse):
    """The C reference on numpy arrays (the CPU)."""
    q, k, v = (np.ascontiguousarray(t) for t in (q, k, v))
    out = np.empty(q.shape, dtype=q.dtype)
    lse = np.empty((hq, q.shape[0]), dtype=np.float32) if return_lse else None
    cq = np.ascontiguousarray(oq, dtype=np.int32)
    ck = np.ascontiguousarray(ok, dtype=np.int32)
    addr = lambda a: a.ctypes.data if a is not None and a.size else 0  # noqa: E731
    _native.attention_fwd(
        device=0, q_dtype=_dtype_code(q, "q"), k_dtype=_dtype_code(k, "k"),
        v_dtype=_dtype_code(v, "v"), q=addr(q), k=addr(k), v=addr(v), out=addr(out),
        lse=addr(lse), cu_seqlens_q=addr(cq), cu_seqlens_k=addr(ck),
        batch=oq.shape[0] - 1, total_q=_fits_int32(q.shape[0], "total_q"),
        total_k=_fits_int32(k.shape[0], "total_k"), max_seqlen_q=_max_length(oq),
        max_seqlen_k=_max_length(ok), num_heads_q=hq, num_heads_kv=hkv, head_dim=d,
        scale=scale, causal=causal, window_left=left, window_right=right,
    )
    return (out, lse) if return_lse else out


def _device_offsets(cu: Any, host: np.ndarray, device: Any) -> Any:
    """int32 offsets on ``device``: ``cu`` itself when it already is that."""
    import torch

    if (isinstance(cu, torch.Tensor) and cu.device == device and cu.dtype == torch.int32
            and cu.is_contiguous()):
        return cu
    if isinstance(cu, torch.Tensor) and cu.device == device:
        return cu.to(torch.int32).contiguous()  # stays on the device, on the current stream
    return torch.from_numpy(host.astype(np.int32)).to(device)


def _native_torch(q, k, v, hq, hkv, d, cu_q, cu_k, oq, ok, causal, scale, left, right,
                  return_lse):
    """screekernels on torch tensors: the C reference on the CPU, the CUDA
    kernel on the current stream of q's device."""
    import torch

    dev = q.device
    for name, t in (("k", k), ("v", v)):
        if t.device != dev:
            raise InvalidArgument(f"q is on {dev} but {name} is on {t.device}")
    cuda = dev.type == "cuda"
    if not cuda and dev.type != "cpu":
        raise NotSupported(f"varlen_attention runs on the CPU and CUDA, not on {dev}")

    def ready(t):
        t = t.detach().contiguous()
        if cuda and t.data_ptr() % 16:
            t = t.clone()  # the kernel reads rows with 16-byte vectors
        return t

    q, k, v = ready(q), ready(k), ready(v)
    out = torch.empty_like(q, memory_format=torch.contiguous_format)
    lse = (torch.empty((hq, q.shape[0]), dtype=torch.float32, device=dev)
           if return_lse else None)
    if cuda:
        # The kernel trusts its offsets: check them here, on the host.
        check_offsets(oq, int(q.shape[0]), "cu_seqlens_q")
        check_offsets(ok, int(k.shape[0]), "cu_seqlens_k")
        cq, ck = _device_offsets(cu_q, oq, dev), _device_offsets(cu_k, ok, dev)
    else:
        cq = torch.from_numpy(np.ascontiguousarray(oq, dtype=np.int32))
        ck = torch.from_numpy(np.ascontiguousarray(ok, dtype=np.int32))
    addr = lambda t: t.data_ptr() if t is not None and t.numel() else 0  # noqa: E731
    kw = dict(
        device=1 if cuda else 0, q_dtype=_dtype_code(q, "q"), k_dtype=_dtype_code(k, "k"),
        v_dtype=_dtype_code(v, "v"), q=addr(q), k=addr(k), v=addr(v), out=addr(out),
        lse=addr(lse), cu_seqlens_q=cq.data_ptr(), cu_seqlens_k=ck.data_ptr(),
        batch=oq.shape[0] - 1, total_q=_fits_int32(int(q.shape[0]), "total_q"),
        total_k=_fits_int32(int(k.shape[0]), "total_k"), max_seqlen_q=_max_length(oq),
        max_seqlen_k=_max_length(ok), num_heads_q=hq, num_heads_kv=hkv, head_dim=d,
        scale=scale, causal=causal, window_left=left, window_right=right,
    )
    if cuda:
        with torch.cuda.device(dev):
            kw["stream"] = torch.cuda.current_stream(dev).cuda_stream
            _native.attention_fwd(**kw)
    else:
        kw["num_threads"] = torch.get_num_threads()
        _native.attention_fwd(**kw)
    return (out, lse) if return_lse else out


def varlen_attention(
    q: Any,
    k: Any,
    v: Any,
    cu_seqlens_q: Any,
    cu_seqlens_k: Any = None,
    causal: bool = False,
    scale: float | None = None,
    window: tuple[int, int] | None = None,
    return_lse: bool = False,
) -> Any:
    """Attention forward over packed sequences (FlashAttention's varlen layout).

    Args:
        q: (total_q, Hq, D); k, v: (total_k, Hkv, D) with Hq a multiple of
            Hkv (grouped-query attention). torch tensors (CPU or CUDA) or
            numpy arrays, all of one dtype: bfloat16, float16 or float32 on
            the CPU, bfloat16 or float16 with D 64 or 128 on CUDA (and D
            256 on compute capability 9.0, Hopper).
        cu_seqlens_q, cu_seqlens_k: offsets (B + 1, int32 or int64) of the
            sequences in q and in k/v; ``cu_seqlens_k`` defaults to
            ``cu_seqlens_q``. Host arrays, or tensors on q's device.
        causal: mask future keys, aligned bottom-right when lengths differ
            (the last query sees every key). Off by default, as in C
            (``scree_attention_args``) and FlashAttention.
        scale: softmax scale, ``1/sqrt(D)`` by default.
        window: ``(left, right)`` sliding window, -1 for unbounded; query
            ``i`` sees keys ``i + Lk - Lq - left .. i + Lk - Lq + right``.
            ``right`` must be -1 or 0 when causal.
        return_lse: also return the (Hq, total_q) float32 natural-log
            sum of ``exp(scale * q.k)`` over the visible keys (-inf where
            none is visible).

    Returns a new (total_q, Hq, D) array of q's framework, device and dtype,
    or ``(out, lse)``. A query that sees no key gets zeros.

    The kernels need the longest sequence lengths on the host. Offsets given
    on the host cost nothing; offsets in GPU memory are copied to the host
    once (one small device-to-host copy, which waits for the GPU), to find
    those lengths and to check the offsets, which the CUDA kernel does not
    read on the host. On CUDA the kernel is launched on
    ``torch.cuda.current_stream()`` of q's device and the call returns
    without waiting for it.

    Errors: :class:`scree.InvalidArgument` for a bad argument, with the
    kernels' message naming it (``cu_seqlens_q[2]=5 < cu_seqlens_q[1]=7``,
    ``num_heads_q=3 is not a multiple of num_heads_kv=2``);
    :class:`scree.NotSupported` for a dtype or head_dim the device does not
    run, or CUDA tensors without the extension's CUDA kernels.
    """
    if cu_seqlens_k is None:
        cu_seqlens_k = cu_seqlens_q
    fw = framework_of(q)
    if fw not in ("torch", "numpy"):
        raise InvalidArgument(f"q must be a torch tensor or numpy array, got {type(q).__name__}")
    for name, t in (("k", k), ("v", v)):
        if framework_of(t) != fw:
            raise InvalidArgument(
                f"q is a {fw} array but {name} is a {type(t).__name__}: use one framework"
            )
    hq, hkv, d = _check_shapes(q, k, v)
    left, right = _window(window, causal)
    oq = _host_offsets(cu_seqlens_q, "cu_seqlens_q")
    ok = _host_offsets(cu_seqlens_k, "cu_seqlens_k")
    if oq.shape != ok.shape:
        raise InvalidArgument(
            f"cu_seqlens_q has {oq.shape[0]} entries but cu_seqlens_k has {ok.shape[0]}"
        )
    _check_int32(oq, "cu_seqlens_q")
    _check_int32(ok, "cu_seqlens_k")
    if scale is not None and not math.isfinite(float(scale)):
        raise InvalidArgument(f"scale={scale} is not finite")
    if native_kernels_available():
        if fw == "numpy":
            return _native_numpy(q, k, v, hq, hkv, d, oq, ok, bool(causal),
                                 0.0 if scale is None else float(scale), left, right,
                                 return_lse)
        return _native_torch(q, k, v, hq, hkv, d, cu_seqlens_q, cu_seqlens_k, oq, ok,
                             bool(causal), 0.0 if scale is None else float(scale), left,
                             right, return_lse)
    return _fallback(q, k, v, fw, oq, ok, causal, scale, window, return_lse)


def _fallback(q, k, v, fw, oq, ok, causal, scale, window, return_lse):
    """The torch reference, for a source tree without the native extension."""
    if fw == "torch" and q.device.type != "cpu":
        raise NotSupported(
            "varlen_attention on CUDA needs the native extension scree._native, which is not "
            "built; use scree.kernels.triton.varlen_attention_triton instead"
        )
    import torch

    left, right = _window(window, causal)
    if causal and right > 0:
        raise InvalidArgument(f"window_right={right} with causal (must be -1 or 0)")
    as_torch = (lambda x: torch.from_numpy(np.asarray(x))) if fw == "numpy" else (lambda x: x)
    q, k, v = as_torch(q), as_torch(k), as_torch(v)
    _check_qkv(q, k, v)
    check_offsets(oq, int(q.shape[0]), "cu_seqlens_q")
    check_offsets(ok, int(k.shape[0]), "cu_seqlens_k")
    acc = torch.float64 if q.dtype == torch.float64 else torch.float32
    res = reference_attention(q, k, v, oq, ok, causal, scale, acc, window, return_lse)
    if return_lse:
        res = (res[0], res[1].float())
    if fw == "numpy":
        return tuple(r.numpy() for r in res) if return_lse else res.numpy()
    return res
