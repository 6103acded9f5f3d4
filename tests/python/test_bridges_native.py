"""The C packing kernels (scree/ragged.h) behind from_hf_padded and
from_padded on CUDA tensors, against the torch path on fresh random input:
every mask dtype, right, left and mixed padding, empty rows, row sizes of
every vector width, strided input, and the same errors as the torch path."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from scree import InvalidArgument, bridges

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available() or not bridges._native_packing(torch.device("cuda")),
    reason="no CUDA device (or scree._native built without CUDA)")


def random_batch(B, S, inner, dtype, left_share, seed):
    g = np.random.default_rng(seed)
    lengths = g.integers(0, S + 1, size=B)
    if B:
        lengths[g.integers(0, B)] = S
        lengths[g.random(B) < 0.15] = 0
    left = g.random(B) < left_share
    pos = np.arange(S)
    start = np.where(left, S - lengths, 0)
    mask = (pos[None, :] >= start[:, None]) & (pos[None, :] < (start + lengths)[:, None])
    hs = torch.randn(B, S, *inner, generator=torch.Generator().manual_seed(seed))
    return hs.to(dtype).cuda(), torch.from_numpy(mask).cuda(), lengths, left


def both_paths(monkeypatch, fn):
    native = fn()
    monkeypatch.setenv("SCREE_BRIDGES_KERNEL", "torch")
    reference = fn()
    monkeypatch.delenv("SCREE_BRIDGES_KERNEL")
    return native, reference


def assert_same(a, b):
    assert a.values.is_cuda and a.offsets.is_cuda
    assert a.values.dtype == b.values.dtype and a.values.shape == b.values.shape
    assert torch.equal(a.values, b.values)
    assert torch.equal(a.offsets, b.offsets) and a.offsets.dtype == torch.int64
    assert np.array_equal(a.host_offsets, b.host_offsets) and a.max_length == b.max_length


@pytest.mark.parametrize("mask_dtype", [torch.bool, torch.int8, torch.uint8, torch.int16,
                                        torch.int32, torch.int64])
@pytest.mark.parametrize("left_share", [0.0, 1.0, 0.5])
def test_hf_padded_every_mask_dtype(monkeypatch, mask_dtype, left_share):
    seed = int(np.random.default_rng().integers(1 << 31))
    hs, mask, lengths, _ = random_batch(23, 77, (40,), torch.bfloat16, left_share, seed)
    mask = mask.to(mask_dtype)
    native, reference = both_paths(monkeypatch, lambda: bridges.from_hf_padded(hs, mask))
    assert_same(native, reference)
    assert native.lengths.cpu().tolist() == lengths.tolist()


@pytest.mark.parametrize("inner, dtype", [((), torch.float16), ((3,), torch.float16),
                                          ((2, 3), torch.bfloat16), ((8,), torch.float32),
                                          ((4096,), torch.bfloat16), ((5000,), torch.float32),
                                          ((7,), torch.uint8), ((3,), torch.float64),
                                          ((2,), torch.bool)])
@pytest.mark.parametrize("side", ["right", "left"])
def test_row_sizes_and_lengths(monkeypatch, inner, dtype, side):
    seed = int(np.random.default_rng().integers(1 << 31))
    B, S = (5, 9) if inner and inner[0] >= 4096 else (31, 50)
    hs, mask, lengths, _ = random_batch(B, S, inner, dtype, 1.0 if side == "left" else 0.0, seed)
    native, reference = both_paths(
        monkeypatch, lambda: bridges.from_padded(hs, mask, padding_side=side))
    assert_same(native, reference)
    by_len, by_len_ref = both_paths(
        monkeypatch, lambda: bridges.from_padded(hs, lengths=lengths.tolist(), padding_side=side))
    assert_same(by_len, by_len_ref)
    assert_same(by_len, native)


@pytest.mark.parametrize("B, S", [(0, 4), (1, 1), (3, 0), (1, 1000), (1500, 3), (2049, 5)])
def test_odd_batches(monkeypatch, B, S):
    seed = int(np.random.default_rng().integers(1 << 31))
    hs, mask, lengths, _ = random_batch(B, S, (6,), torch.float16, 0.5, seed)
    native, reference = both_paths(monkeypatch, lambda: bridges.from_hf_padded(hs, mask))
    assert_same(native, reference)
    assert native.total_length == int(lengths.sum())


def test_strided_input_and_mask(monkeypatch):
    hs, mask, _, _ = random_batch(12, 40, (16,), torch.float32, 0.0, 7)
    wide = torch.zeros(12, 40, 32, device="cuda")
    wide[..., ::2] = hs  # a non-contiguous view with the same values
    view = wide[..., ::2]
    mask_t = mask.t().contiguous().t()  # a transposed layout
    native, reference = both_paths(monkeypatch, lambda: bridges.from_hf_padded(view, mask_t))
    assert not view.is_contiguous() and not mask_t.is_contiguous()
    assert_same(native, reference)


def test_round_trip_keeps_values_bit_for_bit():
    hs, mask, _, _ = random_batch(64, 300, (128,), torch.bfloat16, 0.3, 11)
    arr = bridges.from_hf_padded(hs, mask)
    hs2, mask2 = bridges.to_hf_padded(arr)
    arr2 = bridges.from_hf_padded(hs2, mask2)
    assert torch.equal(arr.values, arr2.values) and torch.equal(arr.offsets, arr2.offsets)


@pytest.mark.parametrize("bad, message", [
    ("value", "holds values [0, 1, 2]"),
    ("negative", "holds values [-1, 0, 1]"),
    ("gap", "is not contiguous"),
    ("middle", "not a prefix (right padding) or a suffix (left padding)"),
])
def test_bad_masks_raise_the_same_errors(monkeypatch, bad, message):
    hs, mask, _, _ = random_batch(9, 10, (4,), torch.float32, 0.0, 3)
    mask = torch.zeros(9, 10, dtype=torch.int64, device="cuda")
    mask[:, :4] = 1
    if bad == "value":
        mask[5, 2] = 2
    elif bad == "negative":
        mask[5, 2] = -1
    elif bad == "gap":
        mask[5, 2] = 0
    else:
        mask[5] = 0
        mask[5, 3:6] = 1
    errors = []
    for kernel in ("", "torch"):
        monkeypatch.setenv("SCREE_BRIDGES_KERNEL", kernel)
        with pytest.raises(InvalidArgument) as info:
            bridges.from_hf_padded(hs, mask)
        errors.append(str(info.value))
    assert errors[0] == errors[1]
    assert "attention_mask row 5" in errors[0] and message in errors[0]


def test_side_is_enforced(monkeypatch):
    hs, mask, _, _ = random_batch(6, 8, (4,), torch.float32, 1.0, 5)
    mask[:, :] = False
    mask[2, 5:] = True  # a left-padded row
    with pytest.raises(InvalidArgument, match="padding_side='left'"):
        bridges.from_padded(hs, mask, padding_side="right")
    arr = bridges.from_padded(hs, mask, padding_side="left")
    assert arr.lengths.cpu().tolist() == [0, 0, 3, 0, 0, 0]
    assert torch.equal(arr.values, hs[2, 5:])


def test_float_mask_is_rejected():
    hs, mask, _, _ = random_batch(2, 3, (4,), torch.float32, 0.0, 1)
    with pytest.raises(InvalidArgument, match="bool or an integer dtype"):
        bridges.from_hf_padded(hs, mask.float())


def test_bad_lengths_raise_the_same_errors(monkeypatch):
    hs, _, _, _ = random_batch(4, 6, (4,), torch.float32, 0.0, 2)
    for bad, message in (([1, 2, 7, 0], "lengths[2]=7 is outside [0, 6]"),
                         ([1, -1, 2, 0], "lengths[1]=-1 is outside [0, 6]")):
        errors = []
        for kernel in ("", "torch"):
            monkeypatch.setenv("SCREE_BRIDGES_KERNEL", kernel)
            with pytest.raises(InvalidArgument) as info:
                bridges.from_padded(hs, lengths=bad)
            errors.append(str(info.value))
        assert errors[0] == errors[1] == message


def test_many_conversions_in_flight():
    """Host-length packing returns before its copies run: forty of them
    queued back to back (reusing the staging memory) must each be right."""
    g = np.random.default_rng()
    hs = torch.randn(300, 64, 8, device="cuda", dtype=torch.float16)
    wanted, got = [], []
    for i in range(40):
        B = int(g.integers(1, 300))
        lengths = g.integers(0, 65, size=B)
        side = "left" if i % 2 else "right"
        got.append(bridges.from_padded(hs[:B], lengths=lengths.tolist(), padding_side=side))
        wanted.append((B, lengths, side))
    for arr, (B, lengths, side) in zip(got, wanted):
        rows = [hs[b, 64 - n:] if side == "left" else hs[b, :n] for b, n in enumerate(lengths)]
        assert torch.equal(arr.values, torch.cat(rows))
        assert arr.offsets.cpu().tolist() == [0, *np.cumsum(lengths).tolist()]


@pytest.mark.parametrize("kernel", ["", "torch"])
def test_no_sync_where_lengths_are_known(monkeypatch, kernel):
    """With the lengths on the host, packing, unpacking and the Array's
    metadata run without a device-to-host sync, on the C path and on the
    torch-ops path alike: torch's sync debug mode turns any sync it sees
    (.item(), .cpu(), nonzero, ...) into an error."""
    monkeypatch.setenv("SCREE_BRIDGES_KERNEL", kernel)
    hs, _, lengths, _ = random_batch(16, 40, (8,), torch.bfloat16, 0.0, 9)
    hl = lengths.tolist()
    bridges.from_padded(hs, lengths=hl)  # warm up (Triton compiles, caches fill)
    bridges.to_hf_padded(bridges.from_padded(hs, lengths=hl))
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        arr = bridges.from_padded(hs, lengths=hl)
        assert arr.max_length == int(lengths.max()) and arr.batch_size == 16
        padded, mask = bridges.to_hf_padded(arr)
        wide, _ = bridges.to_padded(arr, pad_value=-1, max_length=48)
        nt = bridges.to_torch_nested(arr)
        with pytest.raises(RuntimeError, match="synchroniz"):
            arr.values.sum().item()  # the mode does catch a sync here
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.equal(padded[mask.bool()], arr.values)
    assert wide.shape == (16, 48, 8) and nt.size(0) == 16
