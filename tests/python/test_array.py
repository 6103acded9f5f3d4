"""scree.Array, scree.pack and scree.from_cu_seqlens over numpy, torch and mlx."""

from __future__ import annotations

import pickle

import mlx.core as mx
import numpy as np
import pytest
import torch

import scree

LENGTHS = [3, 0, 5, 1]


def rows_numpy(lengths=LENGTHS, inner=(4,), dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((n, *inner)).astype(dtype) for n in lengths]


def rows_in(fw: str, **kw):
    rows = rows_numpy(**kw)
    if fw == "torch":
        return [torch.from_numpy(r) for r in rows]
    if fw == "mlx":
        return [mx.array(r) for r in rows]
    return rows


def as_np(x) -> np.ndarray:
    return x.numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


@pytest.mark.parametrize("fw", ["numpy", "torch", "mlx"])
def test_pack_metadata_and_rows(fw):
    rows = rows_in(fw)
    arr = scree.pack(rows)
    assert arr.framework == fw
    assert type(arr.values) is type(rows[0])
    assert arr.batch_size == len(arr) == 4
    assert arr.total_length == 9
    assert arr.max_length == 5
    assert arr.inner_shape == (4,)
    assert scree.array.dtype_name(arr.offsets.dtype) == "int64"
    assert as_np(arr.offsets).tolist() == [0, 3, 3, 8, 9]
    assert as_np(arr.lengths).tolist() == LENGTHS
    assert type(arr.lengths) is type(rows[0])
    for got, want in zip(arr, rows):
        np.testing.assert_array_equal(as_np(got), as_np(want))
    np.testing.assert_array_equal(as_np(arr[-1]), as_np(rows[-1]))
    assert arr[1].shape[0] == 0
    assert f"batch_size=4" in repr(arr) and fw in repr(arr)


def test_getitem_is_a_view_and_checks_range():
    arr = scree.pack(rows_numpy())
    arr[2][0, 0] = 123.0
    assert arr.values[3, 0] == 123.0
    with pytest.raises(IndexError, match="row 4 out of range"):
        arr[4]
    with pytest.raises(IndexError):
        arr[-5]
    with pytest.raises(TypeError):
        arr["a"]  # type: ignore[index]
    assert arr[np.int64(0)].shape == (3, 4)


def test_from_cu_seqlens_is_zero_copy_for_both_offset_dtypes():
    q = torch.randn(9, 2, 8)
    for dtype in (torch.int32, torch.int64):
        cu = torch.tensor([0, 3, 3, 8, 9], dtype=dtype)
        arr = scree.from_cu_seqlens(q, cu)
        assert arr.values is q and arr.offsets is cu
        assert arr.lengths.dtype == dtype
        assert arr.max_length == 5 and arr.total_length == 9 and arr.batch_size == 4


@pytest.mark.parametrize(
    "offsets, message",
    [
        ([1, 3, 9], r"offsets\[0\]=1, expected 0"),
        ([0, 3, 2, 9], r"offsets\[1\]=3 > offsets\[2\]=2"),
        ([0, 3, 8], r"offsets\[2\]=8 but values has 9 rows"),
        ([0, 3, 10], r"offsets\[2\]=10 but values has 9 rows"),
    ],
)
def test_bad_offsets_name_the_index(offsets, message):
    values = np.zeros((9, 2), np.float32)
    with pytest.raises(scree.InvalidArgument, match=message):
        scree.from_cu_seqlens(values, np.array(offsets, np.int64))
    with pytest.raises(ValueError, match=message):
        scree.from_cu_seqlens(torch.from_numpy(values), torch.tensor(offsets, dtype=torch.int32))


def test_bad_offsets_in_the_brief_example():
    values = torch.zeros(38, 4)
    offsets = torch.tensor([0, 4, 10, 20, 30, 40, 38])
    with pytest.raises(ValueError, match=r"offsets\[5\]=40 > offsets\[6\]=38"):
        scree.from_cu_seqlens(values, offsets)


def test_bad_offset_dtype_shape_and_framework():
    v = np.zeros((3, 2))
    with pytest.raises(scree.InvalidArgument, match="int32 or int64"):
        scree.from_cu_seqlens(v, np.array([0.0, 3.0]))
    with pytest.raises(scree.InvalidArgument, match="1-D"):
        scree.from_cu_seqlens(v, np.array([[0, 3]]))
    with pytest.raises(scree.InvalidArgument, match=r"batch_size\+1 >= 1 elements"):
        scree.from_cu_seqlens(v, np.array([], np.int64))
    with pytest.raises(scree.InvalidArgument, match="numpy.ndarray like values"):
        scree.from_cu_seqlens(v, torch.tensor([0, 3]))
    with pytest.raises(scree.InvalidArgument, match="numpy, torch or mlx"):
        scree.from_cu_seqlens([[1.0]], np.array([0, 1]))


def test_empty_batch_and_all_empty_rows():
    arr = scree.from_cu_seqlens(np.zeros((0, 3)), np.array([0], np.int64))
    assert arr.batch_size == 0 and arr.max_length == 0 and list(arr) == []
    arr = scree.pack([np.zeros((0, 3))] * 3)
    assert arr.batch_size == 3 and arr.total_length == 0 and arr.max_length == 0


def test_host_metadata_skips_the_copy():
    values = torch.zeros(9, 2)
    offsets = torch.tensor([0, 3, 9])
    arr = scree.Array(values, offsets, host_offsets=[0, 3, 9])
    assert arr.max_length == 6
    arr = scree.Array(values, offsets, max_length=6, validate=False)
    assert arr.max_length == 6
    assert arr[1].shape == (6, 2)  # host offsets fetched lazily
    with pytest.raises(scree.InvalidArgument, match="host_offsets has shape"):
        scree.Array(values, offsets, host_offsets=[0, 9])


@pytest.mark.parametrize("fw", ["numpy", "torch", "mlx"])
def test_pack_errors_name_the_element(fw):
    rows = rows_in(fw)
    other = rows_in(fw, dtype=np.float16)
    wide = rows_in(fw, inner=(5,))
    with pytest.raises(scree.InvalidArgument, match=r"element 2 has dtype float16, expected float32"):
        scree.pack(rows[:2] + other[2:])
    with pytest.raises(ValueError, match=r"element 3 has non-ragged dims \(5,\).*expected \(4,\)"):
        scree.pack(rows[:3] + wide[3:])


def test_pack_errors_for_mixed_frameworks_and_empty_list():
    with pytest.raises(scree.InvalidArgument, match="element 1 is a torch.Tensor, expected numpy.ndarray"):
        scree.pack([np.zeros((1, 2)), torch.zeros(1, 2)])
    with pytest.raises(scree.InvalidArgument, match="at least one element"):
        scree.pack([])
    with pytest.raises(scree.InvalidArgument, match="element 1 is a scalar"):
        scree.pack([np.zeros(2), np.array(1.0)])


def test_pack_one_dimensional_rows():
    arr = scree.pack([torch.arange(3), torch.arange(0), torch.arange(2)])
    assert arr.values.tolist() == [0, 1, 2, 0, 1]
    assert arr.inner_shape == ()


def test_errors_hierarchy_and_pickling():
    for cls in (scree.InvalidArgument, scree.NotFound, scree.Exists, scree.NoSpace,
                scree.PermissionDenied, scree.Disconnected, scree.CudaError, scree.NotSupported):
        assert issubclass(cls, scree.Error)
    assert issubclass(scree.InvalidArgument, ValueError)
    assert issubclass(scree.NotFound, KeyError)
    err = scree.NotFound("no batch named 'x'", code=-2)
    assert str(err) == "no batch named 'x'" and err.code == -2 and err.message == "no batch named 'x'"
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is scree.NotFound and back.code == -2 and back.message == err.message
    assert scree.InvalidArgument("bad").code is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_array_keeps_device_and_caches_max_length():
    values = torch.randn(9, 4, device="cuda")
    offsets = torch.tensor([0, 3, 3, 8, 9], device="cuda", dtype=torch.int32)
    arr = scree.from_cu_seqlens(values, offsets)
    assert arr.device == values.device and arr.max_length == 5
    assert arr.lengths.device == values.device
    assert arr[2].data_ptr() == values[3].data_ptr()
