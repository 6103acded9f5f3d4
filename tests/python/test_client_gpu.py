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
