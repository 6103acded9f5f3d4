"""scree.Client with a GPU screed: CUDA tensors in, torch CUDA tensors out
through DLPack. Skips, saying why, without a CUDA device or without CUDA
import support in this build of scree._native."""

from __future__ import annotations

import gc

import pytest
import torch

import scree

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="SKIP: no CUDA device")


def no_cuda_import(e: Exception):
    pytest.skip(f"SKIP: this scree._native cannot import CUDA memory ({e})")


@pytest.fixture
def gpu_client(screed_factory):
    d = screed_factory("--device", "0")
    with scree.Client(d.socket) as c:
        assert c.info.backend == "cuda" and c.info.device == "cuda:0"
        yield c


def test_cuda_tensors_round_trip_through_dlpack(gpu_client):
    values = torch.randn(10, 4, 16, device="cuda", dtype=torch.bfloat16)
    offsets = torch.tensor([0, 3, 3, 10], device="cuda", dtype=torch.int32)
    try:
        gpu_client.put("g", scree.from_cu_seqlens(values, offsets))
        batch = gpu_client.get("g")
    except scree.NotSupported as e:
        no_cuda_import(e)
    with batch:
        assert batch.framework == "torch" and batch.values.is_cuda
        assert batch.values.dtype == torch.bfloat16 and batch.offsets.dtype == torch.int32
        assert torch.equal(batch.values, values) and torch.equal(batch.offsets, offsets)
        assert batch.values.data_ptr() == batch.address
        kept = batch.values
    assert gpu_client.stat("g").leases == 1
    del kept
    gc.collect()
    assert gpu_client.stat("g").leases == 0


def test_create_on_the_gpu_and_seal(gpu_client):
    try:
        b = gpu_client.create("c", torch.float16, (8,), lengths=[2, 5])
    except scree.NotSupported as e:
        no_cuda_import(e)
    assert b.values.is_cuda, "create on a GPU daemon must give CUDA tensors"
    b.values.copy_(torch.ones(7, 8, device="cuda", dtype=torch.float16))
    torch.cuda.synchronize()
    b.seal()
    with gpu_client.get("c") as g:
        assert float(g.values.sum()) == 56.0


def _reference(q, k, v, lengths, causal, scale):
    """Per-sequence attention in float32 with GQA by repeating k/v heads."""
    out = torch.zeros(q.shape, dtype=torch.float32, device=q.device)
    group = q.shape[1] // k.shape[1]
    start = 0
    for n in lengths:
        if n:
            qs = q[start:start + n].float().transpose(0, 1)
            ks = k[start:start + n].float().repeat_interleave(group, 1).transpose(0, 1)
            vs = v[start:start + n].float().repeat_interleave(group, 1).transpose(0, 1)
            s = (qs @ ks.transpose(1, 2)) * scale
            if causal:
                s = s.masked_fill(torch.ones(n, n, dtype=torch.bool, device=q.device).triu(1),
                                  float("-inf"))
            out[start:start + n] = (torch.softmax(s, -1) @ vs).transpose(0, 1)
        start += n
    return out


@pytest.mark.parametrize("causal", [True, False])
def test_attention_runs_in_a_gpu_screed(gpu_client, causal):
    lengths = [0, 1, 17, 100, 333]
    offsets = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32,
                           device="cuda")
    total = int(offsets[-1])
    q = torch.randn(total, 4, 64, device="cuda", dtype=torch.bfloat16)
    k = torch.randn(total, 2, 64, device="cuda", dtype=torch.bfloat16)
    v = torch.randn(total, 2, 64, device="cuda", dtype=torch.bfloat16)
    try:
        for name, t in (("q", q), ("k", k), ("v", v)):
            gpu_client.put(name, scree.from_cu_seqlens(t, offsets))
    except scree.NotSupported as e:
        no_cuda_import(e)
    gpu_client.attention("q", "k", "v", "o", causal=causal)
    want = _reference(q, k, v, lengths, causal, 64 ** -0.5)
    with gpu_client.get("o") as o:
        assert o.values.is_cuda and o.values.dtype == torch.bfloat16
        assert torch.equal(o.offsets, offsets)
        err = (o.values.float() - want).norm() / want.norm()
        assert err < 1e-2, f"relative error {err:.2e}"
