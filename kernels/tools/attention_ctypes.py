"""scree_attention_fwd through ctypes, for the scripts that load
libscreekernels.so directly rather than through the scree package:
bench/attention.py and tests/gpu/test_attention_accuracy.py. They add this
folder to sys.path and import it.

Tensors are torch tensors, packed (tokens, heads, head_dim) as
scree/attention.h describes; the call runs on their device (CUDA on torch's
current stream, or the CPU path for CPU tensors). dtype codes and error names
come from libscree itself (scree_dtype_from_name, scree_err_name, found
through the library's own dependencies), so nothing here copies a C enum but
the device codes and the argument block, which mirrors the header.
"""

from __future__ import annotations

import ctypes

# scree_device_type in scree/array.h.
SCREE_DEVICE_CPU = 0
SCREE_DEVICE_CUDA = 1


class Args(ctypes.Structure):
    # Mirrors scree_attention_args in kernels/include/scree/attention.h.
    _fields_ = [
        ("device", ctypes.c_int),
        ("q_dtype", ctypes.c_int),
        ("k_dtype", ctypes.c_int),
        ("v_dtype", ctypes.c_int),
        ("out_dtype", ctypes.c_int),
        ("q", ctypes.c_void_p),
        ("k", ctypes.c_void_p),
        ("v", ctypes.c_void_p),
        ("out", ctypes.c_void_p),
        ("lse", ctypes.c_void_p),
        ("cu_seqlens_q", ctypes.c_void_p),
        ("cu_seqlens_k", ctypes.c_void_p),
        ("batch", ctypes.c_int32),
        ("total_q", ctypes.c_int32),
        ("total_k", ctypes.c_int32),
        ("max_seqlen_q", ctypes.c_int32),
        ("max_seqlen_k", ctypes.c_int32),
        ("num_heads_q", ctypes.c_int32),
        ("num_heads_kv", ctypes.c_int32),
        ("head_dim", ctypes.c_int32),
        ("softmax_scale", ctypes.c_float),
        ("causal", ctypes.c_int),
        ("window_left", ctypes.c_int32),
        ("window_right", ctypes.c_int32),
        ("num_threads", ctypes.c_int),
        ("stream", ctypes.c_void_p),
        ("msg", ctypes.c_char_p),
        ("msg_len", ctypes.c_size_t),
    ]


class ScreeError(RuntimeError):
    """A call that returned a negative SCREE_E* code: rc, its name
    (e.g. "ENOTSUP") and the library's message."""

    def __init__(self, rc: int, name: str, msg: str):
        super().__init__(f"scree rc={rc} ({name}): {msg}")
        self.rc, self.name, self.msg = rc, name, msg


def load(path: str) -> ctypes.CDLL:
    """libscreekernels at path, with the prototypes this module calls.
    Raises OSError when it cannot be loaded."""
    lib = ctypes.CDLL(path)
    lib.scree_attention_fwd.argtypes = [ctypes.POINTER(Args)]
    lib.scree_attention_fwd.restype = ctypes.c_int
    lib.scree_attention_have_cuda.argtypes = []
    lib.scree_attention_have_cuda.restype = ctypes.c_int
    lib.scree_dtype_from_name.argtypes = [ctypes.c_char_p]
    lib.scree_dtype_from_name.restype = ctypes.c_int
    lib.scree_err_name.argtypes = [ctypes.c_int]
    lib.scree_err_name.restype = ctypes.c_char_p
    return lib


def dtype_code(lib: ctypes.CDLL, dtype) -> int:
    """The scree_dtype of a torch dtype (torch.bfloat16 -> SCREE_BFLOAT16),
    by name through libscree; ValueError for one it does not know."""
    name = str(dtype).replace("torch.", "")
    code = lib.scree_dtype_from_name(name.encode())
    if code <= 0:
        raise ValueError(f"libscree has no dtype named {name!r}")
    return code


def err_name(lib: ctypes.CDLL, rc: int) -> str:
    """libscree's name of a SCREE_E* code, without the SCREE_ prefix."""
    name = lib.scree_err_name(rc)
    return name.decode() if name else str(rc)


def attention_call(lib, q, k, v, out, lse, cu_q, cu_k, max_q, max_k, causal,
                   window=(-1, -1), scale=0.0):
    """A function that runs scree_attention_fwd on packed tensors (q, k, v
    and out of one dtype; lse, (Hq, total_q) float32, may be None; cu_q and
    cu_k int32) and returns out, raising ScreeError with the library's
    message when the call fails. window is (left, right), -1 for unbounded;
    scale 0 selects 1/sqrt(head_dim). CUDA tensors run on torch's current
    stream at the time of this call. The argument block is built once, here,
    outside any timed calls."""
    import torch

    hq, hkv, d = q.shape[1], k.shape[1], q.shape[2]
    cuda = q.device.type == "cuda"
    code = dtype_code(lib, q.dtype)
    msg = ctypes.create_string_buffer(512)
    a = Args(device=SCREE_DEVICE_CUDA if cuda else SCREE_DEVICE_CPU, q_dtype=code, k_dtype=code,
             v_dtype=code, out_dtype=code, q=q.data_ptr(), k=k.data_ptr(), v=v.data_ptr(),
             out=out.data_ptr(), lse=None if lse is None else lse.data_ptr(),
             cu_seqlens_q=cu_q.data_ptr(), cu_seqlens_k=cu_k.data_ptr(), batch=len(cu_q) - 1,
             total_q=q.shape[0], total_k=k.shape[0], max_seqlen_q=max_q, max_seqlen_k=max_k,
             num_heads_q=hq, num_heads_kv=hkv, head_dim=d, softmax_scale=scale,
             causal=int(causal), window_left=window[0], window_right=window[1], num_threads=0,
             stream=torch.cuda.current_stream(q.device).cuda_stream if cuda else None,
             msg=ctypes.cast(msg, ctypes.c_char_p), msg_len=len(msg))
    ap_ = ctypes.byref(a)

    def fn():
        rc = lib.scree_attention_fwd(ap_)
        if rc != 0:
            raise ScreeError(rc, err_name(lib, rc), msg.value.decode(errors="replace"))
        return out

    # The closure keeps the message buffer and the block alive as long as it is.
    fn.keep = (msg, a)
    return fn
