"""scree.kernels.varlen_attention on the project's kernels (screekernels,
through scree._native): the C reference for CPU tensors and numpy arrays, the
CUDA kernel for CUDA tensors, each against the float64 torch reference
(scree.kernels.reference_attention) on random varlen inputs."""

from __future__ import annotations

import itertools
import math
import os

import numpy as np
import pytest
import torch

import scree
from scree.kernels import native_kernels_available, reference_attention, varlen_attention

HAS_CUDA = torch.cuda.is_available()
LENGTHS = [0, 1, 17, 100]
# Query and key lengths that differ: decode-like (fewer queries), more
# queries than keys (with causal, early queries see nothing) and empty sides.
LQ, LK = [3, 0, 40, 5, 1, 17], [10, 4, 20, 0, 33, 17]
EINVAL = -22


@pytest.fixture(autouse=True)
def native_kernels():
    if not native_kernels_available():
        why = "scree._native (with the attention kernels) is not built"
        if os.environ.get("SCREE_REQUIRE_NATIVE") == "1":
            pytest.fail(why)
        pytest.skip(why)


def cu(lengths, dtype=torch.int64, device="cpu"):
    return torch.tensor([0, *itertools.accumulate(lengths)], dtype=dtype, device=device)


def qkv(lq, lk, hq, hkv, d, dtype, device="cpu", seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(sum(lq), hq, d, generator=g)
    k = torch.randn(sum(lk), hkv, d, generator=g)
    v = torch.randn(sum(lk), hkv, d, generator=g)
    return tuple(t.to(dtype).to(device) for t in (q, k, v))


def ref64(q, k, v, oq, ok, causal, scale=None, window=None):
    """The float64 reference on exactly the values the kernel saw."""
    q, k, v = (t.detach().cpu().double() for t in (q, k, v))
    return reference_attention(q, k, v, oq.cpu(), ok.cpu(), causal, scale, torch.float64,
                               window=window, return_lse=True)


# The kernels accumulate in float32 and round the output to the input dtype.
TOL = {torch.float32: 2e-5, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}

MASKS = [  # (causal, window)
    (True, None),
    (False, None),
    (False, (8, 3)),
    (True, (5, 0)),
    (False, (-1, 0)),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("causal, window", MASKS)
@pytest.mark.parametrize("hq, hkv, d", [(2, 2, 16), (4, 2, 32), (6, 1, 8)])
def test_cpu_matches_the_float64_reference(dtype, causal, window, hq, hkv, d):
    q, k, v = qkv(LENGTHS, LENGTHS, hq, hkv, d, dtype)
    offsets = cu(LENGTHS, torch.int32)
    out, lse = varlen_attention(q, k, v, offsets, causal=causal, window=window,
                                return_lse=True)
    assert out.shape == q.shape and out.dtype == dtype and out.device.type == "cpu"
    assert lse.shape == (hq, q.shape[0]) and lse.dtype == torch.float32
    want, want_lse = ref64(q, k, v, offsets, offsets, causal, window=window)
    torch.testing.assert_close(out.double(), want, atol=TOL[dtype], rtol=TOL[dtype])
    torch.testing.assert_close(lse.double(), want_lse, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("causal, window", MASKS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cpu_different_query_and_key_lengths(causal, window, dtype):
    q, k, v = qkv(LQ, LK, 4, 2, 16, dtype, seed=1)
    oq, ok = cu(LQ), cu(LK, torch.int32)
    out, lse = varlen_attention(q, k, v, oq, ok, causal=causal, scale=0.3, window=window,
                                return_lse=True)
    want, want_lse = ref64(q, k, v, oq, ok, causal, scale=0.3, window=window)
    torch.testing.assert_close(out.double(), want, atol=TOL[dtype], rtol=TOL[dtype])
    torch.testing.assert_close(lse.double(), want_lse, atol=1e-4, rtol=1e-5)
    if causal:
        # Sequence 5 has 1 query and 33 keys: bottom-right alignment shows it
        # every key (in its window); sequence 0 query 0 sees keys 0..7.
        assert torch.isfinite(lse[:, sum(LQ[:4])]).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_numpy_in_numpy_out(dtype):
    q, k, v = (t.numpy().astype(dtype) for t in qkv(LENGTHS, LENGTHS, 4, 2, 16, torch.float32))
    offsets = cu(LENGTHS).numpy()
    out = varlen_attention(q, k, v, offsets, offsets.astype(np.int32), causal=False)
    assert isinstance(out, np.ndarray) and out.dtype == dtype and out.shape == q.shape
    want, _ = ref64(*(torch.from_numpy(t) for t in (q, k, v)), torch.from_numpy(offsets),
                    torch.from_numpy(offsets), False)
    tol = TOL[torch.float32 if dtype == np.float32 else torch.float16]
    np.testing.assert_allclose(out.astype(np.float64), want.numpy(), atol=tol, rtol=tol)
    out2, lse = varlen_attention(q, k, v, [0, *itertools.accumulate(LENGTHS)],
                                 return_lse=True)
    assert isinstance(lse, np.ndarray) and lse.shape == (4, q.shape[0])


def test_defaults_and_non_contiguous_inputs():
    q, k, v = qkv([3, 4], [3, 4], 2, 2, 8, torch.float32)
    qt = q.transpose(0, 1).contiguous().transpose(0, 1)  # same values, other strides
    assert not qt.is_contiguous()
    out = varlen_attention(qt, k, v, cu([3, 4]))  # not causal, 1/sqrt(8), k offsets = q's
    want, _ = ref64(q, k, v, cu([3, 4]), cu([3, 4]), False, 1 / math.sqrt(8))
    torch.testing.assert_close(out.double(), want, atol=1e-5, rtol=1e-5)


def test_only_empty_sequences():
    q, k, v = qkv([0, 0], [0, 0], 2, 1, 8, torch.float16)
    out, lse = varlen_attention(q, k, v, cu([0, 0]), return_lse=True)
    assert out.shape == (0, 2, 8) and lse.shape == (2, 0)


def raises(match, *args, exc=scree.InvalidArgument, **kw):
    with pytest.raises(exc, match=match) as info:
        varlen_attention(*args, **kw)
    return info.value


def test_bad_arguments_raise_naming_the_argument():
    q, k, v = qkv([4, 6], [4, 6], 2, 2, 8, torch.float32)
    good = cu([4, 6])
    # Messages of the C library, with its code.
    e = raises(r"cu_seqlens_q\[2\]=3 < cu_seqlens_q\[1\]=5", q, k, v,
               torch.tensor([0, 5, 3, 10]), cu([4, 2, 4]))
    assert e.code == EINVAL
    e = raises(r"cu_seqlens_k\[2\]=9 != total=10", q, k, v, good, torch.tensor([0, 4, 9]))
    assert e.code == EINVAL
    raises(r"cu_seqlens_q\[0\]=1, expected 0", q, k, v, torch.tensor([1, 4, 10]), good)
    q3 = torch.randn(10, 3, 8)
    e = raises("num_heads_q=3 is not a multiple of num_heads_kv=2", q3, k, v, good)
    assert e.code == EINVAL
    raises("k_dtype=float16 does not match q_dtype=float32", q, k.half(), v, good)
    raises("v_dtype=bfloat16 does not match q_dtype=float32", q, k, v.bfloat16(), good)
    raises("q_dtype=float64 is not bfloat16, float16 or float32", q.double(), k.double(),
           v.double(), good)
    raises(r"window_right=2 with causal \(must be -1 or 0\)", q, k, v, good, causal=True,
           window=(4, 2))
    raises("window_left=-5 must be -1 or >= 0", q, k, v, good, causal=False, window=(-5, 1))
    # Checked in Python, where only the shapes or the framework tell.
    raises("k and v shapes differ", q, k, v[:9], good)
    raises("q has head_dim 8 but k has 4", q, k[..., :4], v[..., :4], good)
    raises(r"must be \(tokens, heads, head_dim\)", q[:, 0], k, v, good)
    raises("cu_seqlens_q has 3 entries but cu_seqlens_k has 2", q, k, v, good,
           torch.tensor([0, 10]))
    raises("cu_seqlens_q must be 1-D", q, k, v, good.reshape(1, 3))
    raises("cu_seqlens_q must hold integers", q, k, v, good.float())
    # 2**32 + 4 would wrap to a valid 4 in int32.
    raises(r"cu_seqlens_q\[1\]=4294967300 does not fit the kernels' int32", q, k, v,
           torch.tensor([0, 2**32 + 4, 10]), good)
    raises("window must be \\(left, right\\)", q, k, v, good, window=3)
    raises("scale=nan is not finite", q, k, v, good, scale=float("nan"))
    raises("q is a torch array but k is a ndarray", q, k.numpy(), v, good)
    raises("q must be a torch tensor or numpy array", q.tolist(), k, v, good)
    raises("has dtype int32", q.int(), k.int(), v.int(), good)


# --- CUDA ---------------------------------------------------------------------

cuda_only = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device (none here)")


def d256_runs():
    """Whether head_dim 256 runs on this device: compute capability 9.0 with
    the Hopper kernel not switched off (SCREE_ATTN_SM90=0)."""
    return (torch.cuda.get_device_capability() == (9, 0)
            and int(os.environ.get("SCREE_ATTN_SM90", "1") or 0) > 0
            and int(os.environ.get("SCREE_ATTN_VARIANT", "0") or 0) == 0)


@pytest.fixture
def cuda_kernels():
    if not native_kernels_available("cuda"):
        why = "scree._native was built without the CUDA attention kernels"
        if os.environ.get("SCREE_REQUIRE_NATIVE") == "1":
            pytest.fail(why)
        pytest.skip(why)


@cuda_only
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("causal, window", MASKS)
@pytest.mark.parametrize("hq, hkv, d", [(4, 4, 64), (8, 2, 128), (4, 2, 256)])
def test_cuda_matches_the_float64_reference(cuda_kernels, dtype, causal, window, hq, hkv, d):
    q, k, v = qkv(LENGTHS, LENGTHS, hq, hkv, d, dtype, device="cuda")
    offsets = cu(LENGTHS, torch.int32, device="cuda")
    if d == 256 and not d256_runs():
        # Only the Hopper kernel has head_dim 256: elsewhere a clear refusal.
        with pytest.raises(scree.NotSupported, match="head_dim=256"):
            varlen_attention(q, k, v, offsets, causal=causal, window=window)
        return
    out, lse = varlen_attention(q, k, v, offsets, causal=causal, window=window,
                                return_lse=True)
    assert out.device == q.device and out.dtype == dtype
    want, want_lse = ref64(q, k, v, offsets, offsets, causal, window=window)
    torch.testing.assert_close(out.cpu().double(), want, atol=TOL[dtype], rtol=TOL[dtype])
    torch.testing.assert_close(lse.cpu().double(), want_lse, atol=1e-3, rtol=1e-4)


@cuda_only
@pytest.mark.parametrize("where", ["host-int64", "device-int64", "device-int32", "numpy"])
def test_cuda_different_lengths_and_offsets_anywhere(cuda_kernels, where):
    q, k, v = qkv(LQ, LK, 4, 2, 64, torch.bfloat16, device="cuda", seed=2)
    oq, ok = cu(LQ), cu(LK)
    if where == "numpy":
        aq, ak = oq.numpy(), ok.numpy()
    elif where == "host-int64":
        aq, ak = oq, ok
    else:
        dt = torch.int64 if where == "device-int64" else torch.int32
        aq, ak = oq.to("cuda", dt), ok.to("cuda", dt)
    out = varlen_attention(q, k, v, aq, ak, causal=True, scale=0.2)
    want, _ = ref64(q, k, v, oq, ok, True, scale=0.2)
    torch.testing.assert_close(out.cpu().double(), want, atol=1.6e-2, rtol=1.6e-2)


@cuda_only
def test_cuda_runs_on_the_current_stream(cuda_kernels):
    q, k, v = qkv([100, 17], [100, 17], 4, 4, 128, torch.float16, device="cuda")
    offsets = cu([100, 17], torch.int32, device="cuda")
    want = varlen_attention(q, k, v, offsets)
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        out = varlen_attention(q, k, v, offsets)
        out2 = out * 1  # ordered after the kernel on s
    s.synchronize()
    torch.testing.assert_close(out2, want, atol=0, rtol=0)


@cuda_only
def test_cuda_unsupported_and_bad_arguments(cuda_kernels):
    q, k, v = qkv([4], [4], 2, 2, 32, torch.float16, device="cuda")
    off = cu([4], device="cuda")
    raises("head_dim=32 is not supported on CUDA", q, k, v, off, exc=scree.NotSupported)
    q, k, v = qkv([4], [4], 2, 2, 64, torch.float32, device="cuda")
    raises("q_dtype=float32 is not supported on CUDA", q, k, v, off, exc=scree.NotSupported)
    q, k, v = (t.half() for t in (q, k, v))
    # The kernel does not read offsets on the host: they are checked in Python.
    raises(r"cu_seqlens_q\[1\]=5 but values has 4 rows", q, k, v, cu([5], device="cuda"))
    raises("q is on cuda:0 but k is on cpu", q, k.cpu(), v, off)



def test_the_torch_fallback_agrees(monkeypatch):
    """Without the extension, varlen_attention runs reference_attention in
    float32: the same masks, lse and errors."""
    q, k, v = qkv(LQ, LK, 4, 2, 16, torch.float32, seed=3)
    oq, ok = cu(LQ), cu(LK)
    native = varlen_attention(q, k, v, oq, ok, causal=True, window=(6, 0), return_lse=True)
    monkeypatch.setattr(scree.kernels, "_native", None)
    assert not native_kernels_available()
    plain = varlen_attention(q, k, v, oq, ok, causal=True, window=(6, 0), return_lse=True)
    for a, b in zip(native, plain):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    raises(r"window_right=2 with causal", q, k, v, oq, ok, causal=True, window=(4, 2))
    if HAS_CUDA:
        raises("needs the native extension", q.cuda(), k.cuda(), v.cuda(), oq, ok,
               exc=scree.NotSupported)
