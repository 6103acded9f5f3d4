"""Varlen attention over packed batches.

:func:`varlen_attention` runs the project's C/CUDA kernels through the native
extension ``scree._native`` when it is built. Without it, CPU inputs fall back
to a plain per-sequence reference written in torch, so the function works
everywhere; CUDA inputs then raise :class:`scree.NotSupported` (use
:func:`scree.kernels.triton.varlen_attention_triton` on the GPU instead).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..array import check_offsets, framework_of, to_host
from ..errors import InvalidArgument, NotSupported

try:  # The native extension is optional: the lead's CMake build adds it.
    from .. import _native  # type: ignore[attr-defined]
except ImportError:
    _native = None

__all__ = ["varlen_attention", "reference_attention"]


def _check_qkv(q: Any, k: Any, v: Any) -> tuple[int, int, int]:
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
    if hkv == 0 or hq % hkv:
        raise InvalidArgument(f"query heads ({hq}) must be a multiple of key/value heads ({hkv})")
    return hq, hkv, d


def reference_attention(
    q: Any,
    k: Any,
    v: Any,
    offsets_q: Any,
    offsets_k: Any,
    causal: bool,
    scale: float | None = None,
    accum_dtype: Any = None,
) -> Any:
    """Per-sequence ``softmax(Q K^T * scale + mask) V`` in torch, looping over
    sequences; the ground truth the kernels are tested against.

    Causal masking is aligned bottom-right: query ``i`` of a sequence with
    ``Lq`` queries and ``Lk`` keys sees keys ``j <= i + Lk - Lq``. A query
    that sees no key gets a zero output. Computed in ``accum_dtype``
    (float32 by default) and returned in ``q``'s dtype.
    """
    import torch

    hq, hkv, d = _check_qkv(q, k, v)
    scale = 1.0 / math.sqrt(d) if scale is None else float(scale)
    acc = accum_dtype or torch.float32
    hq_per_kv = hq // hkv
    oq = np.asarray(to_host(offsets_q), dtype=np.int64)
    ok = np.asarray(to_host(offsets_k), dtype=np.int64)
    out = torch.zeros(q.shape, dtype=acc, device=q.device)
    for b in range(oq.shape[0] - 1):
        qs, qe, ks, ke = int(oq[b]), int(oq[b + 1]), int(ok[b]), int(ok[b + 1])
        lq, lk = qe - qs, ke - ks
        if lq == 0 or lk == 0:
            continue
        qb = q[qs:qe].to(acc).transpose(0, 1)  # (Hq, Lq, D)
        kb = k[ks:ke].to(acc).repeat_interleave(hq_per_kv, dim=1).transpose(0, 1)
        vb = v[ks:ke].to(acc).repeat_interleave(hq_per_kv, dim=1).transpose(0, 1)
        s = qb @ kb.transpose(1, 2) * scale
        if causal:
            i = torch.arange(lq, device=q.device)[:, None]
            j = torch.arange(lk, device=q.device)[None, :]
            s = s.masked_fill(j > i + (lk - lq), float("-inf"))
        p = torch.softmax(s, dim=-1).nan_to_num(0.0)  # rows with no visible key
        out[qs:qe] = (p @ vb).transpose(0, 1)
    return out.to(q.dtype)


def varlen_attention(
    q: Any,
    k: Any,
    v: Any,
    cu_seqlens_q: Any,
    cu_seqlens_k: Any = None,
    causal: bool = True,
    scale: float | None = None,
) -> Any:
    """Attention forward over packed sequences.

    Args:
        q: (total_q, Hq, D); k, v: (total_k, Hkv, D) with Hq a multiple of Hkv.
        cu_seqlens_q, cu_seqlens_k: offsets (B + 1) of the sequences in q and
            in k/v; ``cu_seqlens_k`` defaults to ``cu_seqlens_q``.
        causal: mask future keys, aligned bottom-right when lengths differ.
        scale: softmax scale, ``1/sqrt(D)`` by default.

    Returns a new (total_q, Hq, D) array of q's dtype. Uses the native
    extension when it is built; otherwise CPU torch tensors or numpy arrays
    use the float32 reference (a loop over sequences, for correctness rather
    than speed) and CUDA tensors raise :class:`scree.NotSupported`.
    """
    if cu_seqlens_k is None:
        cu_seqlens_k = cu_seqlens_q
    if _native is not None and hasattr(_native, "varlen_attention"):
        return _native.varlen_attention(q, k, v, cu_seqlens_q, cu_seqlens_k, causal, scale)
    fw = framework_of(q)
    if fw not in ("torch", "numpy"):
        raise InvalidArgument(f"q must be a torch tensor or numpy array, got {type(q).__name__}")
    if fw == "torch" and q.device.type != "cpu":
        raise NotSupported(
            "varlen_attention on CUDA needs the native extension scree._native, which is not "
            "built; use scree.kernels.triton.varlen_attention_triton instead"
        )
    import torch

    as_torch = (lambda x: torch.from_numpy(np.asarray(x))) if fw == "numpy" else (lambda x: x)
    q, k, v = as_torch(q), as_torch(k), as_torch(v)
    _check_qkv(q, k, v)
    oq = np.asarray(to_host(cu_seqlens_q), dtype=np.int64)
    ok = np.asarray(to_host(cu_seqlens_k), dtype=np.int64)
    check_offsets(oq, int(q.shape[0]), "cu_seqlens_q")
    check_offsets(ok, int(k.shape[0]), "cu_seqlens_k")
    if oq.shape != ok.shape:
        raise InvalidArgument(
            f"cu_seqlens_q has {oq.shape[0]} entries but cu_seqlens_k has {ok.shape[0]}"
        )
    acc = torch.float64 if q.dtype == torch.float64 else torch.float32
    out = reference_attention(q, k, v, oq, ok, causal, scale, acc)
    return out.numpy() if fw == "numpy" else out
