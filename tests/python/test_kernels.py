"""scree.kernels: the Triton varlen attention kernel (Triton's interpreter on the
CPU, compiled on CUDA) and varlen_attention's CPU fallback, both against a
float64 per-sequence reference."""

from __future__ import annotations

import itertools
import math
import os

import numpy as np
import pytest
import torch

import scree
from scree.kernels import reference_attention, varlen_attention

HAS_CUDA = torch.cuda.is_available()
DEVICE = "cuda" if HAS_CUDA else "cpu"
LENGTHS = [0, 1, 17, 64, 100]


def cu(lengths, dtype=torch.int64, device="cpu"):
    return torch.tensor([0, *itertools.accumulate(lengths)], dtype=dtype, device=device)


def qkv(lq, lk, hq, hkv, d, dtype, device=DEVICE, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(sum(lq), hq, d, generator=g)
    k = torch.randn(sum(lk), hkv, d, generator=g)
    v = torch.randn(sum(lk), hkv, d, generator=g)
    return (t.to(dtype).to(device) for t in (q, k, v))


def naive(q, k, v, oq, ok, causal, scale=None):
    """softmax(Q K^T * scale + mask) V per sequence and head, in float64,
    written as plainly as possible (independent of reference_attention)."""
    q, k, v = (t.detach().cpu().double() for t in (q, k, v))
    oq, ok = oq.tolist(), ok.tolist()
    d = q.shape[-1]
    scale = 1 / math.sqrt(d) if scale is None else scale
    out = torch.zeros_like(q)
    group = q.shape[1] // k.shape[1]
    for b in range(len(oq) - 1):
        lq, lk = oq[b + 1] - oq[b], ok[b + 1] - ok[b]
        for h in range(q.shape[1]):
            qb = q[oq[b]:oq[b + 1], h]
            kb = k[ok[b]:ok[b + 1], h // group]
            vb = v[ok[b]:ok[b + 1], h // group]
            s = qb @ kb.T * scale
            if causal:
                allowed = torch.arange(lk)[None, :] <= torch.arange(lq)[:, None] + (lk - lq)
                s = s.masked_fill(~allowed, -math.inf)
            p = torch.softmax(s, -1).nan_to_num(0.0)
            out[oq[b]:oq[b + 1], h] = p @ vb
    return out


TOL = {torch.float32: 1e-4, torch.float16: 4e-3, torch.bfloat16: 3e-2}


@pytest.fixture(scope="module")
def triton_attn():
    if not HAS_CUDA and os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("no CUDA and TRITON_INTERPRET is not set")  # conftest sets it
    from scree.kernels.triton import varlen_attention_triton

    return varlen_attention_triton


@pytest.mark.parametrize(
    "hq, hkv, d, dtype, causal",
    [
        (2, 2, 16, torch.float32, True),
        (2, 2, 16, torch.float32, False),
        (4, 2, 32, torch.float16, True),
        (4, 1, 32, torch.bfloat16, False),
        (2, 1, 64, torch.bfloat16, True),
        (3, 3, 64, torch.float16, False),
    ],
)
def test_triton_matches_reference(triton_attn, hq, hkv, d, dtype, causal):
    q, k, v = qkv(LENGTHS, LENGTHS, hq, hkv, d, dtype)
    offsets = cu(LENGTHS, device=DEVICE)
    out = triton_attn(q, k, v, offsets, causal=causal)
    assert out.shape == q.shape and out.dtype == dtype and out.device == q.device
    want = naive(q, k, v, offsets.cpu(), offsets.cpu(), causal)
    torch.testing.assert_close(out.cpu().double(), want, atol=TOL[dtype], rtol=TOL[dtype])


@pytest.mark.parametrize("causal", [True, False])
def test_triton_different_q_and_k_lengths(triton_attn, causal):
    # Queries at the end of longer key sequences (decode/prefix style), more
    # queries than keys (early queries see nothing when causal) and empty sides.
    lq, lk = [3, 0, 40, 5, 1], [10, 4, 20, 0, 33]
    q, k, v = qkv(lq, lk, 4, 2, 32, torch.float32)
    oq, ok = cu(lq, device=DEVICE), cu(lk, torch.int32, device=DEVICE)
    out = triton_attn(q, k, v, oq, causal=causal, scale=0.3, offsets_k=ok)
    want = naive(q, k, v, oq.cpu(), ok.cpu(), causal, scale=0.3)
    torch.testing.assert_close(out.cpu().double(), want, atol=1e-4, rtol=1e-4)


def test_triton_offsets_on_the_host_and_scree_arrays(triton_attn):
    q, k, v = qkv([5, 9], [5, 9], 2, 2, 16, torch.float32)
    arr_q = scree.from_cu_seqlens(q, cu([5, 9], torch.int32, device=DEVICE))
    out = triton_attn(arr_q.values, k, v, arr_q.offsets.cpu(), causal=True)
    want = naive(q, k, v, cu([5, 9]), cu([5, 9]), True)
    torch.testing.assert_close(out.cpu().double(), want, atol=1e-4, rtol=1e-4)


def test_triton_argument_errors(triton_attn):
    q, k, v = qkv([4], [4], 3, 2, 16, torch.float32)
    with pytest.raises(scree.InvalidArgument, match="multiple of key/value heads"):
        triton_attn(q, k, v, cu([4], device=DEVICE))
    q, k, v = qkv([4], [4], 2, 2, 16, torch.float32)
    with pytest.raises(scree.InvalidArgument, match=r"offsets\[1\]=5 but values has 4 rows"):
        triton_attn(q, k, v, cu([5], device=DEVICE))
    with pytest.raises(scree.InvalidArgument, match="dtype torch.float64"):
        triton_attn(q.double(), k.double(), v.double(), cu([4], device=DEVICE))


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("fw", ["torch", "numpy"])
def test_varlen_attention_cpu_fallback(causal, fw):
    lq, lk = [0, 1, 7, 12], [2, 1, 7, 20]
    q, k, v = qkv(lq, lk, 4, 2, 8, torch.float32, device="cpu")
    oq, ok = cu(lq), cu(lk, torch.int32)
    if fw == "numpy":
        out = varlen_attention(q.numpy(), k.numpy(), v.numpy(), oq.numpy(), ok.numpy(), causal=causal)
        out = torch.from_numpy(out)
    else:
        out = varlen_attention(q, k, v, oq, ok, causal=causal)
    torch.testing.assert_close(out.double(), naive(q, k, v, oq, ok, causal), atol=1e-5, rtol=1e-5)
    ref = reference_attention(q, k, v, oq, ok, causal)
    torch.testing.assert_close(out, ref)


def test_varlen_attention_defaults_and_errors():
    q, k, v = qkv([3, 4], [3, 4], 2, 2, 8, torch.float32, device="cpu")
    out = varlen_attention(q, k, v, cu([3, 4]))  # not causal unless asked, as in C and FA
    torch.testing.assert_close(out.double(), naive(q, k, v, cu([3, 4]), cu([3, 4]), False),
                               atol=1e-5, rtol=1e-5)
    # "cu_seqlens_q[2]=8 > total=7" from the kernels, "... but values has 7
    # rows" from the fallback without them.
    with pytest.raises(scree.InvalidArgument, match=r"cu_seqlens_q\[2\]=8 (> total=7|but values)"):
        varlen_attention(q, k, v, cu([3, 5]))


@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")
def test_varlen_attention_cuda_needs_native_or_raises():
    q, k, v = qkv([3], [3], 2, 2, 8, torch.float16, device="cuda")
    if scree.kernels._native is None:
        with pytest.raises(scree.NotSupported, match="native extension"):
            varlen_attention(q, k, v, cu([3], device="cuda"))


@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device (compares with torch SDPA)")
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("hq, hkv, d", [(8, 8, 64), (8, 2, 128)])
def test_triton_matches_sdpa_on_cuda(triton_attn, dtype, causal, hq, hkv, d):
    rng = np.random.default_rng(0)
    lengths = np.clip(rng.lognormal(np.log(300), 0.8, 16).astype(int), 0, 2048).tolist()
    lengths[0] = 0
    q, k, v = qkv(lengths, lengths, hq, hkv, d, dtype, device="cuda")
    offsets = cu(lengths, torch.int32, device="cuda")
    out = triton_attn(q, k, v, offsets, causal=causal)
    host = offsets.tolist()
    for b in range(len(lengths)):
        s, e = host[b], host[b + 1]
        if s == e:
            continue
        want = torch.nn.functional.scaled_dot_product_attention(
            q[s:e].transpose(0, 1), k[s:e].transpose(0, 1), v[s:e].transpose(0, 1),
            is_causal=causal, enable_gqa=hq != hkv,
        ).transpose(0, 1)
        torch.testing.assert_close(out[s:e], want, atol=2e-2, rtol=2e-2)
