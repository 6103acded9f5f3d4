"""Round trips and errors of scree.bridges (the cookbook's "tests/test_bridges.py")."""

from __future__ import annotations

import os

from _mlx import MLX, mx, needs_mlx
import numpy as np
import pytest
import torch

import scree
from scree import bridges

LENGTHS = [3, 0, 6, 1, 6]
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def torch_array(lengths=LENGTHS, inner=(4,), dtype=torch.float32, offsets_dtype=torch.int64,
                device="cpu", seed=0) -> scree.Array:
    g = torch.Generator().manual_seed(seed)
    total = sum(lengths)
    values = torch.randn(total, *inner, generator=g).to(dtype).to(device)
    offsets = torch.tensor([0, *np.cumsum(lengths)], dtype=offsets_dtype, device=device)
    return scree.from_cu_seqlens(values, offsets)


def assert_same(a: scree.Array, b: scree.Array) -> None:
    assert a.batch_size == b.batch_size and a.max_length == b.max_length
    assert np.array_equal(a.host_offsets, b.host_offsets)
    if a.framework == "torch":
        assert torch.equal(a.values.cpu(), b.values.cpu())
        assert torch.equal(a.offsets.cpu().long(), b.offsets.cpu().long())
    else:
        assert np.array_equal(np.asarray(a.values), np.asarray(b.values))


# --- HF padded -----------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("offsets_dtype", [torch.int32, torch.int64])
@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.int64])
def test_hf_round_trip(device, offsets_dtype, side, dtype):
    arr = torch_array(dtype=dtype, offsets_dtype=offsets_dtype, device=device)
    hs, mask = bridges.to_hf_padded(arr, padding_side=side)
    assert hs.shape == (5, 6, 4) and mask.shape == (5, 6)
    assert mask.dtype == torch.int64 and hs.dtype == dtype and hs.device == arr.values.device
    assert mask.sum(1).tolist() == LENGTHS
    assert (hs[mask == 0] == 0).all()
    if side == "left":
        assert mask[0].tolist() == [0, 0, 0, 1, 1, 1]
        assert torch.equal(hs[0, 3:], arr[0])
    else:
        assert torch.equal(hs[3, :1], arr[3])
    arr2 = bridges.from_hf_padded(hs, mask)
    assert arr2.offsets.dtype == torch.int64
    assert_same(arr, arr2)


def test_hf_mixed_left_and_right_rows_in_one_batch():
    hs = torch.arange(2 * 4 * 1, dtype=torch.float32).reshape(2, 4, 1)
    mask = torch.tensor([[1, 1, 0, 0], [0, 1, 1, 1]])
    arr = bridges.from_hf_padded(hs, mask)
    assert arr.values.flatten().tolist() == [0, 1, 5, 6, 7]
    assert arr.offsets.tolist() == [0, 2, 5]


def test_hf_multi_dim_inner_and_pad_value():
    arr = torch_array(inner=(2, 3))
    hs, mask = bridges.to_hf_padded(arr, pad_value=-7)
    assert hs.shape == (5, 6, 2, 3)
    assert (hs[mask == 0] == -7).all()
    assert_same(arr, bridges.from_hf_padded(hs, mask))


def test_hf_accepts_bool_and_int32_masks():
    arr = torch_array()
    hs, mask = bridges.to_hf_padded(arr)
    for m in (mask.bool(), mask.int()):
        assert_same(arr, bridges.from_hf_padded(hs, m))


def test_hf_all_empty_and_empty_batch():
    hs = torch.zeros(3, 0, 4)
    arr = bridges.from_hf_padded(hs, torch.zeros(3, 0, dtype=torch.int64))
    assert arr.batch_size == 3 and arr.total_length == 0 and arr.max_length == 0
    hs2, mask2 = bridges.to_hf_padded(arr)
    assert hs2.shape == (3, 0, 4) and mask2.shape == (3, 0)
    arr = bridges.from_hf_padded(torch.zeros(0, 5, 4), torch.zeros(0, 5, dtype=torch.int64))
    assert arr.batch_size == 0 and arr.offsets.tolist() == [0]
    arr = bridges.from_hf_padded(torch.ones(2, 3, 4), torch.zeros(2, 3, dtype=torch.int64))
    assert arr.total_length == 0 and arr.offsets.tolist() == [0, 0, 0]


def test_hf_numpy_inputs():
    arr = scree.pack([np.full((n, 2), n, np.float32) for n in LENGTHS])
    hs, mask = bridges.to_hf_padded(arr)
    assert isinstance(hs, np.ndarray) and mask.dtype == np.int64
    assert_same(arr, bridges.from_hf_padded(hs, mask))


@pytest.mark.parametrize(
    "mask, message",
    [
        ([[1, 1, 0], [1, 2, 0]], r"attention_mask row 1 holds values \[0, 1, 2\]"),
        ([[1, 1, 0], [1, 0, 1]], r"attention_mask row 1 is not contiguous"),
        ([[0, 1, 0], [1, 1, 1]], r"attention_mask row 0 has its real tokens at positions 1..1"),
        ([[1, -1, 0], [1, 0, 0]], r"row 0 holds values \[-1, 0, 1\]"),
    ],
)
def test_hf_bad_masks_name_the_row(mask, message):
    hs = torch.zeros(2, 3, 4)
    with pytest.raises(scree.InvalidArgument, match=message):
        bridges.from_hf_padded(hs, torch.tensor(mask))
    with pytest.raises(ValueError, match=message):
        bridges.from_hf_padded(hs.numpy(), np.array(mask))


def test_hf_mask_shape_and_dtype_errors():
    hs = torch.zeros(2, 3, 4)
    with pytest.raises(scree.InvalidArgument, match=r"attention_mask has shape \(2, 4\), expected \(2, 3\)"):
        bridges.from_hf_padded(hs, torch.ones(2, 4, dtype=torch.int64))
    with pytest.raises(scree.InvalidArgument, match="bool or an integer dtype"):
        bridges.from_hf_padded(hs, torch.ones(2, 3))
    with pytest.raises(scree.InvalidArgument, match="hidden_states must be"):
        bridges.from_hf_padded(torch.zeros(3), torch.ones(3))
    with pytest.raises(scree.InvalidArgument, match="attention_mask must be a torch.Tensor"):
        bridges.from_hf_padded(hs, np.ones((2, 3), np.int64))
    with pytest.raises(scree.InvalidArgument, match="padding_side"):
        bridges.to_hf_padded(torch_array(), padding_side="middle")


def test_hf_packing_uses_no_boolean_indexing(monkeypatch):
    # The mask must drive index_select, not hs[mask.bool()] (a sync and slower).
    calls = []
    original = torch.Tensor.index_select
    monkeypatch.setattr(torch.Tensor, "index_select",
                        lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    arr = torch_array()
    bridges.from_hf_padded(*bridges.to_hf_padded(arr))
    assert calls


# --- generic padded + mask -----------------------------------------------------------


@pytest.mark.parametrize("fw", ["numpy", "torch", MLX])
@pytest.mark.parametrize("side", ["right", "left"])
def test_padded_round_trip_all_frameworks(fw, side):
    rows = [np.arange(n * 2, dtype=np.float32).reshape(n, 2) + 10 * i for i, n in enumerate(LENGTHS)]
    conv = {"numpy": lambda x: x, "torch": torch.from_numpy, "mlx": lambda x: mx.array(x)}[fw]
    arr = scree.pack([conv(r) for r in rows])
    padded, mask = bridges.to_padded(arr, pad_value=-1, padding_side=side)
    assert type(padded) is type(arr.values) and padded.shape == (5, 6, 2)
    assert np.asarray(mask).dtype == np.bool_
    assert np.asarray(mask).sum(1).tolist() == LENGTHS
    assert (np.asarray(padded)[~np.asarray(mask)] == -1).all()
    back = bridges.from_padded(padded, mask, padding_side=side)
    assert back.framework == fw
    assert_same(arr, back)
    auto = bridges.from_padded(padded, mask, padding_side="auto")
    assert_same(arr, auto)
    by_len = bridges.from_padded(padded, lengths=LENGTHS, padding_side=side)
    assert_same(arr, by_len)


def test_padded_int_mask_and_longer_max_length():
    arr = torch_array()
    padded, mask = bridges.to_padded(arr, max_length=9)
    assert padded.shape == (5, 9, 4)
    assert_same(arr, bridges.from_padded(padded, mask.to(torch.uint8)))
    with pytest.raises(scree.InvalidArgument, match="shorter than the longest row"):
        bridges.to_padded(arr, max_length=5)


def test_padded_side_errors():
    padded = torch.zeros(2, 4, 1)
    left = torch.tensor([[0, 0, 1, 1], [0, 1, 1, 1]], dtype=torch.bool)
    with pytest.raises(scree.InvalidArgument, match="row 0 .* not a prefix .*padding_side='left'"):
        bridges.from_padded(padded, left)
    with pytest.raises(scree.InvalidArgument, match="row 0 .* not a suffix"):
        bridges.from_padded(padded, ~left, padding_side="left")
    with pytest.raises(scree.InvalidArgument, match="exactly one of mask or lengths"):
        bridges.from_padded(padded)
    with pytest.raises(scree.InvalidArgument, match=r"lengths\[1\]=5 is outside \[0, 4\]"):
        bridges.from_padded(padded, lengths=[1, 5])
    with pytest.raises(scree.InvalidArgument, match="lengths has 3 entries, expected 2"):
        bridges.from_padded(padded, lengths=[1, 1, 1])


# --- torch.nested ------------------------------------------------------------------


@pytest.mark.parametrize("offsets_dtype", [torch.int32, torch.int64])
def test_nested_round_trip_is_zero_copy(offsets_dtype):
    arr = torch_array(offsets_dtype=offsets_dtype)
    nt = bridges.to_torch_nested(arr)
    assert nt.is_nested and nt.layout == torch.jagged
    assert nt.values().data_ptr() == arr.values.data_ptr()
    assert nt.offsets() is arr.offsets
    for got, want in zip(nt.unbind(), arr):
        assert torch.equal(got, want)
    arr2 = bridges.from_torch_nested(nt)
    assert arr2.values.data_ptr() == nt.values().data_ptr()
    assert arr2.offsets is nt.offsets()
    assert arr2.max_length == arr.max_length
    assert_same(arr, arr2)


def test_nested_from_numpy_array_shares_memory():
    arr = scree.pack([np.ones((n, 3), np.float32) for n in LENGTHS])
    nt = bridges.to_torch_nested(arr)
    assert np.shares_memory(nt.values().numpy(), arr.values)


@pytest.mark.filterwarnings("ignore:The PyTorch API of nested tensors")
def test_nested_strided_layout_and_holes():
    rows = [torch.randn(n, 3) for n in (2, 4)]
    strided = torch.nested.nested_tensor(rows)
    arr = bridges.from_torch_nested(strided)
    assert torch.equal(arr.values, torch.cat(rows))
    holes = torch.nested.narrow(torch.randn(2, 5, 3), 1, torch.tensor([0, 1]), torch.tensor([2, 3]),
                                layout=torch.jagged)
    with pytest.raises(scree.InvalidArgument, match="holes"):
        bridges.from_torch_nested(holes)
    with pytest.raises(scree.InvalidArgument, match="expected a nested tensor"):
        bridges.from_torch_nested(torch.zeros(3))


# --- numpy <-> torch ---------------------------------------------------------------


def test_numpy_torch_round_trip_shares_memory():
    arr_np = scree.pack([np.random.randn(n, 4).astype(np.float32) for n in [3, 5, 2]])
    arr_t = bridges.to_torch(arr_np)
    assert isinstance(arr_t.values, torch.Tensor)
    assert np.shares_memory(arr_t.values.numpy(), arr_np.values)
    assert np.shares_memory(arr_t.offsets.numpy(), arr_np.offsets)
    arr_np2 = bridges.to_numpy(arr_t)
    assert arr_np2.values is not arr_np.values
    assert np.shares_memory(arr_np2.values, arr_np.values)
    assert bridges.to_torch(arr_t) is arr_t and bridges.to_numpy(arr_np) is arr_np
    assert_same(arr_np, arr_np2)


@needs_mlx
def test_mlx_to_torch_and_numpy():
    arr = scree.pack([mx.array(np.full((n, 2), n, np.float32)) for n in LENGTHS])
    t = bridges.to_torch(arr)
    assert t.framework == "torch" and t.values[:3].eq(3).all()
    n = bridges.to_numpy(arr)
    assert n.framework == "numpy" and np.array_equal(n.values, np.asarray(arr.values))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float8_e4m3fn, torch.float8_e5m2])
def test_to_numpy_and_back_keep_bfloat16_and_fp8(dtype):
    # ml_dtypes gives numpy these dtypes; the memory stays shared both ways.
    arr = torch_array(dtype=dtype)
    n = bridges.to_numpy(arr)
    name = str(dtype).rsplit(".", 1)[-1]
    assert n.values.dtype.name == name
    assert np.shares_memory(n.values.view(np.uint8), arr.values.view(torch.uint8).numpy())
    back = bridges.to_torch(n)
    assert back.values.dtype == dtype
    assert torch.equal(back.values.view(torch.uint8), arr.values.view(torch.uint8))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_round_trips_stay_on_device():
    arr = torch_array(device="cuda", dtype=torch.bfloat16)
    hs, mask = bridges.to_hf_padded(arr)
    assert hs.is_cuda and mask.is_cuda
    arr2 = bridges.from_hf_padded(hs, mask)
    assert arr2.values.is_cuda and arr2.offsets.is_cuda
    assert_same(arr, arr2)
    arr_np = bridges.to_numpy(torch_array(device="cuda"))  # copies to the host
    assert isinstance(arr_np.values, np.ndarray)


# --- the Triton copy kernels (SCREE_BRIDGES_KERNEL=triton) ------------------------


@pytest.fixture()
def triton_copies(monkeypatch):
    if not torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("no CUDA and TRITON_INTERPRET is not set")  # conftest sets it
    monkeypatch.setenv("SCREE_BRIDGES_KERNEL", "triton")
    return "cuda" if torch.cuda.is_available() else "cpu"


@pytest.mark.parametrize("offsets_dtype", [torch.int32, torch.int64])
@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("dtype, inner", [(torch.float32, (4,)), (torch.bfloat16, (2, 3)),
                                          (torch.int64, ()), (torch.float16, (1100,)),
                                          (torch.bool, (2,))])
def test_triton_copies_match_torch_ops(triton_copies, monkeypatch, offsets_dtype, side, dtype, inner):
    arr = torch_array(inner=inner, dtype=dtype, offsets_dtype=offsets_dtype, device=triton_copies)
    if dtype == torch.bool:  # not a Triton dtype here: the torch ops take over
        arr = scree.from_cu_seqlens(arr.values > 0, arr.offsets)
    hs, mask = bridges.to_hf_padded(arr, padding_side=side, pad_value=3)
    back = bridges.from_hf_padded(hs, mask)
    by_len = bridges.from_padded(hs, lengths=LENGTHS, padding_side=side)
    wide, _ = bridges.to_padded(arr, pad_value=-1, padding_side=side, max_length=8)
    monkeypatch.setenv("SCREE_BRIDGES_KERNEL", "torch")
    hs_t, mask_t = bridges.to_hf_padded(arr, padding_side=side, pad_value=3)
    wide_t, _ = bridges.to_padded(arr, pad_value=-1, padding_side=side, max_length=8)
    assert torch.equal(hs, hs_t) and torch.equal(mask, mask_t) and torch.equal(wide, wide_t)
    assert_same(arr, back)
    assert_same(arr, by_len)


@pytest.mark.parametrize("bad", [[1.5, 2.0], [True, False], ["2", "1"]])
def test_lengths_must_be_integers(bad):
    hs = torch.zeros(2, 3, 4)
    with pytest.raises(scree.InvalidArgument, match="lengths must be integers"):
        bridges.from_padded(hs, lengths=bad)


# --- offsets_dtype, pad_to, pad_to_multiple_of (issue 16) -------------------------


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("od", ["int32", torch.int32, np.int32, "int64"])
def test_packing_bridges_make_int32_cu_seqlens_on_request(device, od):
    arr = torch_array(device=device)
    hs, mask = bridges.to_hf_padded(arr)
    want = torch.int32 if "32" in str(od) else torch.int64
    for packed in (bridges.from_hf_padded(hs, mask, offsets_dtype=od),
                   bridges.from_padded(hs, mask.bool(), offsets_dtype=od),
                   bridges.from_padded(hs, lengths=LENGTHS, offsets_dtype=od),
                   scree.pack(list(arr), offsets_dtype=od)):
        assert packed.offsets.dtype == want and packed.offsets.device == arr.values.device
        assert packed.offsets.tolist() == arr.offsets.tolist()
        assert_same(packed, arr)


@pytest.mark.parametrize("fw", ["numpy", MLX])
def test_int32_offsets_in_numpy_and_mlx(fw):
    arr = bridges.to_numpy(torch_array())
    padded, mask = bridges.to_padded(arr)
    if fw == "mlx":
        padded, mask = mx.array(padded), mx.array(mask)
    packed = bridges.from_padded(padded, mask, offsets_dtype="int32")
    assert str(packed.offsets.dtype).endswith("int32")
    assert np.array_equal(np.asarray(packed.offsets), arr.host_offsets)
    assert scree.pack([np.zeros((2, 3))], offsets_dtype="int32").offsets.dtype == np.int32


def test_offsets_dtype_errors():
    arr = torch_array()
    hs, mask = bridges.to_hf_padded(arr)
    with pytest.raises(scree.InvalidArgument, match="offsets_dtype must be int32 or int64"):
        bridges.from_hf_padded(hs, mask, offsets_dtype="int16")
    with pytest.raises(scree.InvalidArgument, match="offsets_dtype must be int32 or int64"):
        bridges.from_padded(hs, lengths=LENGTHS, offsets_dtype=torch.float32)
    # More rows than int32 offsets can count (zero-byte rows: nothing is allocated).
    big = 2**31
    with pytest.raises(scree.InvalidArgument, match=f"cannot hold {big} rows"):
        scree.pack([np.empty((big, 0), np.float32)], offsets_dtype="int32")
    huge = scree.from_cu_seqlens(np.empty((big, 0), np.float32), np.array([0, big]))
    with pytest.raises(scree.InvalidArgument, match=f"this batch's {big} rows.*int64"):
        bridges._narrow_offsets(huge, "int32")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("side", ["right", "left"])
def test_pad_to_restores_a_chosen_width(device, side):
    arr = torch_array(device=device)  # longest row 6
    hs, mask = bridges.to_hf_padded(arr, padding_side=side, pad_to=9, pad_value=-1)
    assert hs.shape == (5, 9, 4) and mask.shape == (5, 9)
    assert mask.sum(1).tolist() == LENGTHS and (hs[mask == 0] == -1).all()
    assert_same(bridges.from_hf_padded(hs, mask), arr)
    padded, m = bridges.to_padded(arr, padding_side=side, pad_to=6)
    assert padded.shape == (5, 6, 4) and m.dtype == torch.bool
    assert_same(bridges.from_padded(padded, m, padding_side=side), arr)


@pytest.mark.parametrize("fw", ["torch", "numpy", MLX])
def test_pad_to_multiple_of(fw):
    arr = torch_array()
    if fw == "numpy":
        arr = bridges.to_numpy(arr)
    elif fw == "mlx":
        arr = scree.pack([mx.array(r.numpy()) for r in arr])
    assert bridges.to_hf_padded(arr, pad_to_multiple_of=4)[0].shape == (5, 8, 4)
    assert bridges.to_hf_padded(arr, pad_to_multiple_of=3)[0].shape == (5, 6, 4)
    assert bridges.to_padded(arr, pad_to_multiple_of=8)[1].shape == (5, 8)
    assert bridges.to_padded(arr, pad_to=16, pad_to_multiple_of=8)[1].shape == (5, 16)
    assert bridges.to_padded(arr, max_length=7)[1].shape == (5, 7)  # the older name


def test_pad_to_errors():
    arr = torch_array()
    with pytest.raises(scree.InvalidArgument, match=r"pad_to=5 is shorter than the longest row \(6\)"):
        bridges.to_hf_padded(arr, pad_to=5)
    with pytest.raises(scree.InvalidArgument, match=r"pad_to=3 is shorter"):
        bridges.to_padded(arr, pad_to=3)
    with pytest.raises(scree.InvalidArgument, match=r"max_length=3 is shorter"):
        bridges.to_padded(arr, max_length=3)
    with pytest.raises(scree.InvalidArgument, match="pad_to=10 is not a multiple of"):
        bridges.to_hf_padded(arr, pad_to=10, pad_to_multiple_of=4)
    with pytest.raises(scree.InvalidArgument, match="pad_to_multiple_of must be at least 1"):
        bridges.to_hf_padded(arr, pad_to_multiple_of=0)
    with pytest.raises(scree.InvalidArgument, match="pad_to_multiple_of must be a positive int"):
        bridges.to_padded(arr, pad_to_multiple_of=2.5)
    with pytest.raises(scree.InvalidArgument, match="pad_to must be an int"):
        bridges.to_hf_padded(arr, pad_to="8")
    with pytest.raises(scree.InvalidArgument, match="disagree"):
        bridges.to_padded(arr, max_length=8, pad_to=9)


def test_empty_batch_pads_to_the_chosen_width():
    arr = scree.pack([np.zeros((0, 2), np.float32)] * 3)
    padded, mask = bridges.to_padded(arr, pad_to=4)
    assert padded.shape == (3, 4, 2) and not mask.any()
    assert bridges.to_hf_padded(arr, pad_to_multiple_of=8)[0].shape == (3, 0, 2)
