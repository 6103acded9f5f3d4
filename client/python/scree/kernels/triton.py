"""A FlashAttention-style varlen attention forward written in Triton.

One program computes one (query block, head) tile of one sequence. Tiles are
listed on the host (sequence, query block) for the query blocks that exist,
so sequences of very different lengths launch no empty programs; the list is
ordered longest work first so the long causal tiles start early.

Inside a tile the softmax is computed online, in base 2: the scale is folded
into ``scale * log2(e)`` so each score costs one multiply and one ``exp2``.
Key blocks that are entirely visible to every query of the tile run without
masks; only the blocks on the causal diagonal or at the end of the sequence
pay for masking.

On the CPU the kernel runs under Triton's interpreter: set
``TRITON_INTERPRET=1`` before this module is first imported.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np
import torch
import triton
import triton.language as tl

from ..array import check_offsets, to_host
from ..errors import InvalidArgument, NotSupported

__all__ = ["varlen_attention_triton", "pack_padded", "unpack_padded"]

_LOG2E = 1.4426950408889634
_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


@triton.jit
def _attn_blocks(
    acc, l_i, m_i, q, k_base, v_base, stride_kt, stride_vt,
    offs_m, offs_d, d_ok, lo, hi, len_k, diag, qk_scale,
    BLOCK_N: tl.constexpr, MASKED: tl.constexpr, CAUSAL: tl.constexpr,
    PRECISION: tl.constexpr, DOT_F32: tl.constexpr,
):
    offs_n = tl.arange(0, BLOCK_N)
    for start_n in range(lo, hi, BLOCK_N):
        cols = start_n + offs_n
        if MASKED:
            col_ok = cols < len_k
            kt = tl.load(k_base + cols[None, :] * stride_kt + offs_d[:, None],
                         mask=col_ok[None, :] & d_ok[:, None], other=0.0)
            v = tl.load(v_base + cols[:, None] * stride_vt + offs_d[None, :],
                        mask=col_ok[:, None] & d_ok[None, :], other=0.0)
        else:
            kt = tl.load(k_base + cols[None, :] * stride_kt + offs_d[:, None],
                         mask=d_ok[:, None], other=0.0)
            v = tl.load(v_base + cols[:, None] * stride_vt + offs_d[None, :],
                        mask=d_ok[None, :], other=0.0)
        if DOT_F32:
            kt = kt.to(tl.float32)
            v = v.to(tl.float32)
        s = tl.dot(q, kt, input_precision=PRECISION) * qk_scale
        if MASKED:
            visible = col_ok[None, :]
            if CAUSAL:
                visible = visible & (cols[None, :] <= offs_m[:, None] + diag)
            s = tl.where(visible, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        # A row that has seen no visible key yet keeps m = -inf; subtracting 0
        # instead keeps exp2 from producing NaN (-inf - -inf).
        m_use = tl.where(m_new == float("-inf"), 0.0, m_new)
        alpha = tl.math.exp2(m_i - m_use)
        p = tl.math.exp2(s - m_use[:, None])
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
        m_i = m_new
    return acc, l_i, m_i


@triton.jit
def _attn_fwd(
    Q, K, V, O, CU_Q, CU_K, TILE_SEQ, TILE_BLK, qk_scale,
    stride_qt, stride_qh, stride_kt, stride_kh, stride_vt, stride_vh, stride_ot, stride_oh,
    GROUP: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, CAUSAL: tl.constexpr,
    PRECISION: tl.constexpr, DOT_F32: tl.constexpr,
):
    tile = tl.program_id(0)
    head = tl.program_id(1)
    seq = tl.load(TILE_SEQ + tile)
    mblk = tl.load(TILE_BLK + tile)
    q_start = tl.load(CU_Q + seq).to(tl.int64)
    len_q = tl.load(CU_Q + seq + 1).to(tl.int64) - q_start
    k_start = tl.load(CU_K + seq).to(tl.int64)
    len_k = tl.load(CU_K + seq + 1).to(tl.int64) - k_start
    kv_head = head // GROUP
    # Bottom-right causal alignment: query i sees keys j <= i + diag.
    diag = len_k - len_q

    offs_m = mblk * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    d_ok = offs_d < HEAD_DIM
    row_ok = offs_m < len_q
    q = tl.load(Q + (q_start + offs_m)[:, None] * stride_qt + head * stride_qh + offs_d[None, :],
                mask=row_ok[:, None] & d_ok[None, :], other=0.0)
    if DOT_F32:
        q = q.to(tl.float32)

    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
    k_base = K + k_start * stride_kt + kv_head * stride_kh
    v_base = V + k_start * stride_vt + kv_head * stride_vh

    if CAUSAL:
        # Keys every query of the tile sees, then the end of the diagonal.
        full = tl.minimum(len_k, mblk * BLOCK_M + diag + 1)
        hi = tl.minimum(len_k, (mblk + 1) * BLOCK_M + diag)
    else:
        full = len_k
        hi = len_k
    full = tl.maximum(full, 0) // BLOCK_N * BLOCK_N
    hi = tl.maximum(hi, 0)
    acc, l_i, m_i = _attn_blocks(
        acc, l_i, m_i, q, k_base, v_base, stride_kt, stride_vt, offs_m, offs_d, d_ok,
        0, full, len_k, diag, qk_scale, BLOCK_N, False, CAUSAL, PRECISION, DOT_F32)
    acc, l_i, m_i = _attn_blocks(
        acc, l_i, m_i, q, k_base, v_base, stride_kt, stride_vt, offs_m, offs_d, d_ok,
        full, hi, len_k, diag, qk_scale, BLOCK_N, True, CAUSAL, PRECISION, DOT_F32)

    # A query that sees no key at all (causal with more queries than keys,
    # or no keys) outputs zeros.
    l_i = tl.where(l_i == 0.0, 1.0, l_i)
    out = acc / l_i[:, None]
    tl.store(O + (q_start + offs_m)[:, None] * stride_ot + head * stride_oh + offs_d[None, :],
             out.to(O.dtype.element_ty), mask=row_ok[:, None] & d_ok[None, :])


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def _host_offsets(offsets: Any, total: int, name: str) -> np.ndarray:
    if not isinstance(offsets, torch.Tensor):
        raise InvalidArgument(f"{name} must be a torch tensor, got {type(offsets).__name__}")
    if offsets.dtype not in (torch.int32, torch.int64):
        raise InvalidArgument(f"{name} must be int32 or int64, got {offsets.dtype}")
    host = np.asarray(to_host(offsets), dtype=np.int64)
    check_offsets(host, total, name)
    return host


def varlen_attention_triton(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    offsets: torch.Tensor,
    causal: bool = False,
    scale: float | None = None,
    offsets_k: torch.Tensor | None = None,
) -> torch.Tensor:
    """Attention forward over packed sequences with a Triton kernel.

    Args:
        q: (total_q, Hq, D) float16, bfloat16 or float32.
        k, v: (total_k, Hkv, D), same dtype; Hq must be a multiple of Hkv
            (grouped-query attention).
        offsets: (B + 1) int32 or int64 ``cu_seqlens`` of the queries, on the
            CPU or on q's device.
        causal: mask future keys; when a sequence has different query and key
            lengths the mask is aligned bottom-right (the last query sees
            every key). Queries that see no key output zeros.
        scale: softmax scale, ``1/sqrt(D)`` by default.
        offsets_k: ``cu_seqlens`` of k/v; defaults to ``offsets``.

    Returns a new contiguous (total_q, Hq, D) tensor of q's dtype. The offsets
    are copied to the host once (one small sync) to validate them and to list
    the tiles. CPU tensors need ``TRITON_INTERPRET=1``.
    """
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor) or t.ndim != 3:
            raise InvalidArgument(f"{name} must be a (tokens, heads, head_dim) torch tensor")
        if t.dtype not in _DTYPES:
            raise InvalidArgument(f"{name} has dtype {t.dtype}; expected float16, bfloat16 or float32")
        if t.device != q.device or t.dtype != q.dtype:
            raise InvalidArgument(f"{name} is {t.dtype} on {t.device}, q is {q.dtype} on {q.device}")
    if k.shape != v.shape:
        raise InvalidArgument(f"k and v shapes differ: {tuple(k.shape)} vs {tuple(v.shape)}")
    total_q, hq, d = q.shape
    total_k, hkv, dk = k.shape
    if dk != d:
        raise InvalidArgument(f"q has head_dim {d} but k has {dk}")
    if hkv == 0 or hq % hkv:
        raise InvalidArgument(f"query heads ({hq}) must be a multiple of key/value heads ({hkv})")
    if d > 256:
        raise InvalidArgument(f"head_dim {d} is larger than the supported 256")
    if q.device.type == "cpu" and not _interpreting():
        raise NotSupported(
            "CPU tensors run only under Triton's interpreter: set TRITON_INTERPRET=1 before "
            "importing scree.kernels.triton"
        )
    if offsets_k is None:
        offsets_k = offsets
        if total_k != total_q:
            raise InvalidArgument("k has a different number of tokens than q; pass offsets_k")
    host_q = _host_offsets(offsets, total_q, "offsets")
    host_k = _host_offsets(offsets_k, total_k, "offsets_k")
    if host_q.shape != host_k.shape:
        raise InvalidArgument(
            f"offsets has {host_q.shape[0]} entries but offsets_k has {host_k.shape[0]}"
        )

    out = torch.empty((total_q, hq, d), dtype=q.dtype, device=q.device)
    if total_q == 0 or hq == 0:
        return out
    q, k, v = (t if t.stride(-1) == 1 else t.contiguous() for t in (q, k, v))

    block_d = max(16, triton.next_power_of_2(d))
    if _interpreting():
        block_m, block_n, warps, stages = 16, 16, 4, 1  # the interpreter is slow per element
    else:
        block_m, block_n = (128, 64) if d <= 64 else (64, 64)
        warps, stages = (4, 3) if d <= 64 else (8, 2)

    # One tile per existing (sequence, query block), heaviest first.
    len_q, len_k = np.diff(host_q), np.diff(host_k)
    blocks = -(-len_q // block_m)
    tile_seq = np.repeat(np.arange(len_q.shape[0], dtype=np.int32), blocks)
    tile_blk = (np.arange(tile_seq.shape[0]) - np.repeat(np.cumsum(blocks) - blocks, blocks)).astype(np.int32)
    if causal:
        work = np.minimum(len_k[tile_seq], (tile_blk + 1) * block_m + (len_k - len_q)[tile_seq])
    else:
        work = len_k[tile_seq]
    order = np.argsort(-work, kind="stable")
    dev = q.device
    tile_seq_t = torch.from_numpy(tile_seq[order]).to(dev)
    tile_blk_t = torch.from_numpy(tile_blk[order]).to(dev)
    cu_q = offsets.to(dev)
    cu_k = offsets_k.to(dev)

    scale = 1.0 / math.sqrt(d) if scale is None else float(scale)
    grid = (int(tile_seq.shape[0]), hq)
    _attn_fwd[grid](
        q, k, v, out, cu_q, cu_k, tile_seq_t, tile_blk_t, scale * _LOG2E,
        q.stride(0), q.stride(1), k.stride(0), k.stride(1), v.stride(0), v.stride(1),
        out.stride(0), out.stride(1),
        GROUP=hq // hkv, HEAD_DIM=d, BLOCK_D=block_d, BLOCK_M=block_m, BLOCK_N=block_n,
        CAUSAL=bool(causal), PRECISION="ieee" if q.dtype == torch.float32 else "tf32",
        # Triton's interpreter computes bfloat16 dots wrongly; there the
        # blocks are widened to float32 first (the GPU path is unaffected).
        DOT_F32=_interpreting() and q.dtype == torch.bfloat16,
        num_warps=warps, num_stages=stages,
    )
    return out


# --- padded <-> packed copies for scree.bridges ---------------------------------
#
# Unpacking with torch ops fills the whole padded tensor and then writes the
# real rows a second time (full + index_copy_). These kernels write every
# padded element exactly once and read every packed element once, which is
# the least traffic either direction can have. Each program copies a block of
# rows of one sequence by a block of the flattened inner dims.

_COPY_ELEMS = 8192  # elements one program moves


def _copy_blocks(inner: int) -> tuple[int, int]:
    block_i = min(1024, triton.next_power_of_2(max(inner, 1)))
    return max(1, _COPY_ELEMS // block_i), block_i


@triton.jit
def _pack_kernel(PADDED, VALUES, OFFSETS, SHIFT, INNER, n_sblk,
                 BLOCK_S: tl.constexpr, BLOCK_I: tl.constexpr):
    pid = tl.program_id(0)
    b = pid // n_sblk
    sblk = pid % n_sblk
    off = tl.load(OFFSETS + b).to(tl.int64)
    n = tl.load(OFFSETS + b + 1).to(tl.int64) - off
    shift = tl.load(SHIFT + b).to(tl.int64)  # padded row of packed row t is t + shift
    s = sblk * BLOCK_S + tl.arange(0, BLOCK_S)
    cols = tl.program_id(1) * BLOCK_I + tl.arange(0, BLOCK_I)
    ok = (s < n)[:, None] & (cols < INNER)[None, :]
    dst = off + s
    x = tl.load(PADDED + (dst + shift)[:, None] * INNER + cols[None, :], mask=ok)
    tl.store(VALUES + dst[:, None] * INNER + cols[None, :], x, mask=ok)


@triton.jit
def _unpack_kernel(VALUES, OUT, OFFSETS, pad_value, S, INNER, n_sblk,
                   LEFT: tl.constexpr, BLOCK_S: tl.constexpr, BLOCK_I: tl.constexpr):
    pid = tl.program_id(0)
    b = pid // n_sblk
    sblk = pid % n_sblk
    off = tl.load(OFFSETS + b).to(tl.int64)
    n = tl.load(OFFSETS + b + 1).to(tl.int64) - off
    s = sblk * BLOCK_S + tl.arange(0, BLOCK_S)
    cols = tl.program_id(1) * BLOCK_I + tl.arange(0, BLOCK_I)
    col_ok = (cols < INNER)[None, :]
    if LEFT:
        j = s - (S - n)
    else:
        j = s.to(tl.int64)
    real = ((j >= 0) & (j < n))[:, None] & col_ok
    x = tl.load(VALUES + (off + j)[:, None] * INNER + cols[None, :], mask=real)
    x = tl.where(real, x, pad_value).to(OUT.dtype.element_ty)
    row = b.to(tl.int64) * S + s
    tl.store(OUT + row[:, None] * INNER + cols[None, :], x, mask=(s < S)[:, None] & col_ok)


def pack_padded(padded: torch.Tensor, offsets: torch.Tensor, shift: torch.Tensor,
                total: int, max_length: int) -> torch.Tensor:
    """Gather the real rows of a contiguous (B, S, *inner) tensor into a new
    packed (total, *inner) tensor.

    Packed row ``t`` of sequence ``b`` (``offsets[b] <= t < offsets[b + 1]``)
    is row ``t + shift[b]`` of the flattened (B * S) padded rows. ``offsets``
    and ``shift`` (B) live on the padded tensor's device; ``total`` (the last
    offset) and ``max_length`` (the longest sequence) are host ints, so the
    call needs no sync.
    """
    B = int(padded.shape[0])
    inner_shape = tuple(padded.shape[2:])
    inner = math.prod(inner_shape)
    out = torch.empty((total, *inner_shape), dtype=padded.dtype, device=padded.device)
    if total == 0 or inner == 0:
        return out
    padded = padded if padded.is_contiguous() else padded.contiguous()
    block_s, block_i = _copy_blocks(inner)
    n_sblk = triton.cdiv(max_length, block_s)
    grid = (B * n_sblk, triton.cdiv(inner, block_i))
    _pack_kernel[grid](padded, out, offsets, shift, inner, n_sblk,
                       BLOCK_S=block_s, BLOCK_I=block_i, num_warps=4)
    return out


def unpack_padded(values: torch.Tensor, offsets: torch.Tensor, S: int, pad_value: Any = 0,
                  left: bool = False) -> torch.Tensor:
    """Scatter packed (total, *inner) rows into a new (B, S, *inner) tensor
    filled with ``pad_value``, each sequence's rows at the start of its padded
    row (or at the end with ``left=True``). ``S`` must be at least the longest
    sequence; ``offsets`` (B + 1) live on the values' device. No host sync."""
    B = int(offsets.shape[0]) - 1
    inner_shape = tuple(values.shape[1:])
    inner = math.prod(inner_shape)
    out = torch.empty((B, S, *inner_shape), dtype=values.dtype, device=values.device)
    if out.numel() == 0:
        return out
    values = values if values.is_contiguous() else values.contiguous()
    block_s, block_i = _copy_blocks(inner)
    n_sblk = triton.cdiv(S, block_s)
    grid = (B * n_sblk, triton.cdiv(inner, block_i))
    pad = float(pad_value) if values.dtype.is_floating_point else int(pad_value)
    _unpack_kernel[grid](values, out, offsets, pad, S, inner, n_sblk,
                         LEFT=bool(left), BLOCK_S=block_s, BLOCK_I=block_i, num_warps=4)
    return out
