"""Every snippet of the bridges cookbook (reference/bridges-cookbook.txt), as a test.

Where the cookbook calls code that is not installed here (flash_attn), the
snippet runs with scree's own kernels instead; where it leaves a snippet out
("Going back:", "Just pack:"), the test shows the call the text describes.
"""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest
import torch

import scree
import scree.bridges as bridges
from scree.kernels import varlen_attention


@pytest.fixture()
def hf_batch(tiny_models):
    bert, _ = tiny_models
    input_ids = torch.randint(1, 100, (3, 8), generator=torch.Generator().manual_seed(1))
    attention_mask = torch.tensor([[1] * 8, [1] * 5 + [0] * 3, [1] * 2 + [0] * 6])
    return bert, input_ids, attention_mask


@torch.no_grad()
def test_coming_from_huggingface(hf_batch, tiny_models):
    model, input_ids, attention_mask = hf_batch
    _, next_model = tiny_models
    # Existing code:
    outputs = model(input_ids=input_ids, attention_mask=attention_mask)
    hidden_states = outputs.last_hidden_state  # (B, S, D)

    # At the boundary where you receive HF outputs:
    arr = bridges.from_hf_padded(hidden_states, attention_mask)
    assert arr.values.shape == (15, 32)  # (total_real_tokens, D): no padding wasted
    assert arr.offsets.tolist() == [0, 8, 13, 15]  # row boundaries
    assert arr.batch_size == 3 and arr.total_length == 15

    # When you need to call back into HF or a model that expects padded:
    hidden_states, attention_mask = bridges.to_hf_padded(arr)
    outputs = next_model(inputs_embeds=hidden_states, attention_mask=attention_mask)
    assert outputs.last_hidden_state.shape == (3, 8, 32)


def test_hf_mask_convention():
    arr = scree.pack([torch.randn(n, 4) for n in (3, 1, 4)])
    _, mask = bridges.to_hf_padded(arr)
    assert mask.dtype == torch.int64
    assert ((mask == 0) | (mask == 1)).all()


def test_coming_from_cu_seqlens():
    lengths = [5, 0, 12, 7]
    cu_seqlens = torch.tensor([0, *np.cumsum(lengths)], dtype=torch.int32)
    q, k, v = (torch.randn(24, 4, 16) for _ in range(3))

    arr_q = scree.from_cu_seqlens(q, cu_seqlens)
    arr_k = scree.from_cu_seqlens(k, cu_seqlens)
    arr_v = scree.from_cu_seqlens(v, cu_seqlens)
    assert arr_q.values is q
    assert arr_q.offsets is cu_seqlens

    # flash_attn_varlen_func(arr_q.values, ..., int(arr_q.lengths.max()), ...):
    # the arguments it takes, computed as the cookbook does.
    max_q, max_k = int(arr_q.lengths.max()), int(arr_k.lengths.max())
    assert max_q == max_k == arr_q.max_length == 12
    out = varlen_attention(arr_q.values, arr_k.values, arr_v.values,
                           arr_q.offsets, arr_k.offsets, causal=True)
    assert out.shape == q.shape

    # Or the bundled Triton kernel (Triton's interpreter on a CPU-only machine).
    from scree.kernels.triton import varlen_attention_triton

    dev = "cuda" if torch.cuda.is_available() else "cpu"
    arr_q, arr_k, arr_v = (scree.from_cu_seqlens(t.to(dev), cu_seqlens.to(dev)) for t in (q, k, v))
    out_t = varlen_attention_triton(arr_q.values, arr_k.values, arr_v.values, arr_q.offsets, causal=True)
    torch.testing.assert_close(out_t.cpu(), out, atol=1e-3, rtol=1e-3)


def test_coming_from_torch_nested():
    nt = torch.nested.nested_tensor([torch.randn(n, 8) for n in (4, 1, 6)], layout=torch.jagged)
    # Convert:
    arr = scree.bridges.from_torch_nested(nt)
    assert arr.values.data_ptr() == nt.values().data_ptr()  # arr.values is nt.values()
    assert arr.offsets is nt.offsets()  # zero-copy
    # Going back:
    nt2 = scree.bridges.to_torch_nested(arr)
    assert nt2.values().data_ptr() == nt.values().data_ptr()
    assert all(torch.equal(a, b) for a, b in zip(nt2.unbind(), nt.unbind()))


@pytest.mark.parametrize("make", [np.ones, torch.ones, mx.ones], ids=["numpy", "torch", "mlx"])
def test_coming_from_a_list_of_tensors(make):
    # Just pack:
    tensors = [make((n, 4)) for n in (2, 0, 5)]
    arr = scree.pack(tensors)
    assert type(arr.values) is type(tensors[0])
    assert arr.batch_size == 3 and arr.total_length == 7 and arr.max_length == 5


def test_pack_requires_shared_dtype_and_non_ragged_dims():
    with pytest.raises(ValueError, match="element 1 has dtype"):
        scree.pack([np.ones((2, 4), np.float32), np.ones((2, 4), np.float64)])
    with pytest.raises(ValueError, match="element 1 has non-ragged dims"):
        scree.pack([np.ones((2, 4)), np.ones((2, 3))])


@pytest.mark.parametrize("mask_dtype", [torch.bool, torch.int64, torch.int32])
def test_coming_from_padded_and_mask(mask_dtype):
    padded = torch.randn(3, 5, 4)
    valid_mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [0, 0, 0, 0, 0]]).to(mask_dtype)
    arr = bridges.from_padded(padded, valid_mask)
    assert arr.offsets.tolist() == [0, 3, 8, 8]
    assert torch.equal(arr[0], padded[0, :3])
    padded2, mask2 = bridges.to_padded(arr)
    assert torch.equal(mask2, valid_mask.bool())
    assert torch.equal(padded2[mask2], padded[valid_mask.bool()])


def test_left_padded_flip_first():
    rows = [torch.arange(n, dtype=torch.float32)[:, None] + 1 for n in (3, 5, 1)]
    arr = scree.pack(rows)
    padded, valid_mask = bridges.to_padded(arr, padding_side="left")
    # The cookbook's recipe: flip left padding into right padding first. A
    # flip along the sequence also reverses each row's tokens, so the packed
    # rows come out reversed...
    flipped = bridges.from_padded(padded.flip(1), valid_mask.flip(1))
    assert all(torch.equal(f, r.flip(0)) for f, r in zip(flipped, rows))
    # ...while padding_side="left" packs left-padded rows in order.
    arr2 = bridges.from_padded(padded, valid_mask, padding_side="left")
    assert all(torch.equal(a, r) for a, r in zip(arr2, rows))


@pytest.mark.parametrize("offsets_dtype", [torch.int32, torch.int64])
def test_round_trip_identity(offsets_dtype):
    lengths = [4, 0, 7, 2]
    offsets = torch.tensor([0, *np.cumsum(lengths)], dtype=offsets_dtype)
    arr = scree.from_cu_seqlens(torch.randn(13, 16), offsets)
    arr2 = bridges.from_hf_padded(*bridges.to_hf_padded(arr))
    assert (arr.values == arr2.values).all()
    assert (arr.offsets == arr2.offsets).all()


def test_cross_framework_conversion():
    arr_np = scree.pack([np.random.randn(n, 4).astype(np.float32) for n in [3, 5, 2]])
    arr_t = bridges.to_torch(arr_np)  # torch tensors
    arr_np2 = bridges.to_numpy(arr_t)  # back to numpy
    assert isinstance(arr_t.values, torch.Tensor) and isinstance(arr_np2.values, np.ndarray)
    assert np.shares_memory(arr_np2.values, arr_np.values)  # zero-copy on CPU
    assert np.array_equal(arr_np2.offsets, arr_np.offsets)


def test_mlx_pack_from_the_start_and_boundaries():
    arr = scree.pack([mx.array(np.random.randn(n, 4).astype(np.float32)) for n in [3, 5, 2]])
    assert isinstance(arr.values, mx.array) and isinstance(arr.offsets, mx.array)
    # NumPy <-> MLX at the boundary, then re-pack.
    rows_np = [np.array(row) for row in arr]
    arr_np = scree.pack(rows_np)
    arr_mx = scree.pack([mx.array(r) for r in rows_np])
    assert np.array_equal(arr_np.values, np.array(arr_mx.values))
