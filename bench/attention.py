#!/usr/bin/env python3
"""Variable-length attention forward: scree's CUDA kernel beside its peers.

Runs on a machine with a CUDA GPU and PyTorch. For each case (bf16, packed
(tokens, heads, dim) layout, lengths drawn log-normal with seed 0 unless the
case says otherwise) it times, with triton.testing.do_bench (median):
  scree      libscreekernels.so through ctypes, on torch's current stream
  varlen     torch.nn.attention.varlen.varlen_attn (FlashAttention-2)
  flex       FlexAttention with a document block mask (mask built untimed)
  cudnn      torch.ops.aten._cudnn_attention_forward with cu_seqlens
and checks every output against a float32 reference (per-sequence SDPA on
upcast inputs): relative error ||out - ref|| / ||ref||.

TFLOP/s count sum over sequences of 4 * L^2 * Hq * D, halved for causal.
Prints a markdown table and writes JSON (--json).

  python3 bench/attention.py --lib build-gpu/kernels/libscreekernels.so --json out.json
  python3 bench/attention.py --lib ... --scree-only --variant 2   # one tile variant
  python3 bench/attention.py --lib ... --scree-only --sm90 0      # mma.sync kernels only
"""
import argparse
import ctypes
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

SCREE_DEVICE_CUDA = 1
SCREE_FLOAT16 = 7
SCREE_BFLOAT16 = 8


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


def lognormal_lengths(batch, max_len, seed=0):
    """Log-normal lengths around max_len / 8, clipped to [16, max_len], the
    longest set to max_len so that every case reaches its maximum."""
    rng = np.random.default_rng(seed)
    x = rng.lognormal(math.log(max_len / 8), 1.0, batch)
    lens = np.clip(x.astype(np.int64), 16, max_len)
    lens[int(np.argmax(lens))] = max_len
    return lens.tolist()


def cases():
    rng = np.random.default_rng(1)
    return [
        dict(name="d128 causal, Hq=Hkv=16", lens=lognormal_lengths(64, 8192), hq=16, hkv=16, d=128, causal=True),
        dict(name="d128 causal, GQA 32:8", lens=lognormal_lengths(64, 8192), hq=32, hkv=8, d=128, causal=True),
        dict(name="d128 non-causal, 16 heads", lens=lognormal_lengths(64, 8192), hq=16, hkv=16, d=128, causal=False),
        dict(name="d64 causal short, 16 heads", lens=lognormal_lengths(256, 2048), hq=16, hkv=16, d=64, causal=True),
        dict(name="d128 causal, uniform 16 x 4096", lens=[4096] * 16, hq=16, hkv=16, d=128, causal=True),
        dict(name="d128 causal, 2048 short (16-256)", lens=rng.integers(16, 257, 2048).tolist(), hq=16, hkv=16, d=128, causal=True),
        # head_dim 256: the Hopper kernel only (compute capability 9.0).
        dict(name="d256 causal, 16 heads", lens=lognormal_lengths(64, 8192), hq=16, hkv=16, d=256, causal=True),
    ]


def flops(lens, hq, d, causal):
    f = sum(4.0 * L * L * hq * d for L in lens)
    return f / 2 if causal else f


def reference(q, k, v, cu, lens, hq, hkv, causal):
    out = torch.empty(q.shape, dtype=torch.float32, device=q.device)
    g = hq // hkv
    for i, L in enumerate(lens):
        s, e = cu[i], cu[i + 1]
        qs = q[s:e].float().transpose(0, 1)
        ks = k[s:e].float().transpose(0, 1).repeat_interleave(g, 0)
        vs = v[s:e].float().transpose(0, 1).repeat_interleave(g, 0)
        out[s:e] = F.scaled_dot_product_attention(qs, ks, vs, is_causal=causal).transpose(0, 1)
    return out


def rel_err(out, ref):
    out = out.float()
    if not torch.isfinite(out).all():
        return float("nan")
    return ((out - ref).norm() / ref.norm()).item()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lib", required=True)
    ap.add_argument("--json", default=None)
    ap.add_argument("--scree-only", action="store_true")
    ap.add_argument("--variant", type=int, default=None)
    ap.add_argument("--sm90", type=int, default=None,
                    help="SCREE_ATTN_SM90: 0 the mma.sync kernels only (d256 then unsupported), "
                         "1 Hopper at d128 and d256, 2 at d64 too")
    ap.add_argument("--no-flex", action="store_true")
    ap.add_argument("--cases", default=None, help="comma-separated case indices")
    opt = ap.parse_args()
    if opt.variant is not None:
        os.environ["SCREE_ATTN_VARIANT"] = str(opt.variant)
    if opt.sm90 is not None:
        os.environ["SCREE_ATTN_SM90"] = str(opt.sm90)
    lib = ctypes.CDLL(opt.lib)
    lib.scree_attention_fwd.argtypes = [ctypes.POINTER(Args)]
    lib.scree_attention_fwd.restype = ctypes.c_int

    from triton.testing import do_bench

    dev = torch.device("cuda")
    props = torch.cuda.get_device_properties(dev)
    print(f"device: {props.name}, torch {torch.__version__}, {time.strftime('%Y-%m-%d')}", flush=True)

    varlen_attn = None
    if not opt.scree_only:
        try:
            from torch.nn.attention.varlen import varlen_attn
        except Exception as e:  # noqa: BLE001
            print(f"varlen_attn not available: {e}")
        try:
            print("cudnn schema:", torch.ops.aten._cudnn_attention_forward.default._schema)
        except Exception as e:  # noqa: BLE001
            print(f"cudnn op not available: {e}")

    results = []
    sel = [int(x) for x in opt.cases.split(",")] if opt.cases else None
    for ci, c in enumerate(cases()):
        if sel is not None and ci not in sel:
            continue
        torch.manual_seed(0)
        lens, hq, hkv, d, causal = c["lens"], c["hq"], c["hkv"], c["d"], c["causal"]
        B, T, M = len(lens), sum(lens), max(lens)
        cu_list = [0]
        for L in lens:
            cu_list.append(cu_list[-1] + L)
        cu = torch.tensor(cu_list, dtype=torch.int32, device=dev)
        q = torch.randn(T, hq, d, device=dev, dtype=torch.bfloat16)
        k = torch.randn(T, hkv, d, device=dev, dtype=torch.bfloat16)
        v = torch.randn(T, hkv, d, device=dev, dtype=torch.bfloat16)
        ref = reference(q, k, v, cu_list, lens, hq, hkv, causal)
        fl = flops(lens, hq, d, causal)
        row = dict(case=c["name"], batch=B, tokens=T, max_len=M, hq=hq, hkv=hkv, d=d, causal=causal,
                   tflop=fl / 1e12, device=props.name, variant=opt.variant)

        # scree
        out = torch.full_like(q, float("nan"))
        msg = ctypes.create_string_buffer(256)
        a = Args(device=SCREE_DEVICE_CUDA, q_dtype=SCREE_BFLOAT16, k_dtype=SCREE_BFLOAT16,
                 v_dtype=SCREE_BFLOAT16, out_dtype=SCREE_BFLOAT16, q=q.data_ptr(), k=k.data_ptr(),
                 v=v.data_ptr(), out=out.data_ptr(), lse=None, cu_seqlens_q=cu.data_ptr(),
                 cu_seqlens_k=cu.data_ptr(), batch=B, total_q=T, total_k=T, max_seqlen_q=M,
                 max_seqlen_k=M, num_heads_q=hq, num_heads_kv=hkv, head_dim=d, softmax_scale=0.0,
                 causal=int(causal), window_left=-1, window_right=-1, num_threads=0,
                 stream=torch.cuda.current_stream().cuda_stream,
                 msg=ctypes.cast(msg, ctypes.c_char_p), msg_len=256)
        ap_ = ctypes.byref(a)

        def scree_fn():
            rc = lib.scree_attention_fwd(ap_)
            if rc != 0:
                raise RuntimeError(f"scree rc={rc}: {msg.value.decode()}")

        try:
            scree_fn()
            torch.cuda.synchronize()
            row["scree_err"] = rel_err(out, ref)
            ms = do_bench(scree_fn, warmup=100, rep=400, return_mode="median")
            row["scree_ms"] = ms
            row["scree_tflops"] = fl / ms / 1e9
        except RuntimeError as e:
            # A case this device or kernel choice does not run (head_dim 256
            # off compute capability 9.0 or with --sm90 0): say so, go on.
            row["scree_error"] = str(e)[:300]

        if not opt.scree_only:
            # torch varlen_attn (FlashAttention-2)
            if varlen_attn is not None:
                try:
                    kw = dict(window_size=(-1, 0) if causal else (-1, -1))
                    kk, vv = k, v
                    if hq != hkv:
                        try:
                            varlen_attn(q, k, v, cu, cu, M, M, enable_gqa=True, **kw)
                            kw["enable_gqa"] = True
                        except TypeError:
                            kk = k.repeat_interleave(hq // hkv, 1)
                            vv = v.repeat_interleave(hq // hkv, 1)
                            row["varlen_note"] = "k/v repeated to Hq heads outside the timed region"
                    fn = lambda: varlen_attn(q, kk, vv, cu, cu, M, M, **kw)  # noqa: E731
                    o = fn()
                    torch.cuda.synchronize()
                    row["varlen_err"] = rel_err(o, ref)
                    ms = do_bench(fn, warmup=100, rep=400, return_mode="median")
                    row["varlen_ms"] = ms
                    row["varlen_tflops"] = fl / ms / 1e9
                except Exception as e:  # noqa: BLE001
                    row["varlen_error"] = repr(e)[:300]
            # FlexAttention with a document mask
            if not opt.no_flex:
                try:
                    from torch.nn.attention.flex_attention import create_block_mask, flex_attention
                    doc = torch.repeat_interleave(torch.arange(B, device=dev), torch.tensor(lens, device=dev))

                    def mask_mod(b, h, qi, ki):
                        m = doc[qi] == doc[ki]
                        return m & (qi >= ki) if causal else m

                    bm = create_block_mask(mask_mod, None, None, T, T, device=dev, _compile=True)
                    flex = torch.compile(flex_attention, dynamic=False)
                    qf = q.transpose(0, 1).unsqueeze(0).contiguous()
                    kf = k.transpose(0, 1).unsqueeze(0).contiguous()
                    vf = v.transpose(0, 1).unsqueeze(0).contiguous()
                    fn = lambda: flex(qf, kf, vf, block_mask=bm, enable_gqa=hq != hkv)  # noqa: E731
                    o = fn()
                    torch.cuda.synchronize()
                    row["flex_err"] = rel_err(o[0].transpose(0, 1), ref)
                    ms = do_bench(fn, warmup=100, rep=400, return_mode="median")
                    row["flex_ms"] = ms
                    row["flex_tflops"] = fl / ms / 1e9
                except Exception as e:  # noqa: BLE001
                    row["flex_error"] = repr(e)[:300]
            # cuDNN ragged attention
            try:
                kk = k if hq == hkv else k.repeat_interleave(hq // hkv, 1)
                vv = v if hq == hkv else v.repeat_interleave(hq // hkv, 1)
                fn = lambda: torch.ops.aten._cudnn_attention_forward(  # noqa: E731
                    q, kk, vv, None, cu, cu, M, M, False, 0.0, causal, False)[0]
                o = fn()
                torch.cuda.synchronize()
                row["cudnn_err"] = rel_err(o.reshape(q.shape), ref)
                t0 = time.perf_counter()
                for _ in range(3):
                    fn()
                torch.cuda.synchronize()
                row["cudnn_host_ms"] = (time.perf_counter() - t0) / 3 * 1e3
                ms = do_bench(fn, warmup=25, rep=100, return_mode="median")
                row["cudnn_ms"] = ms
                row["cudnn_tflops"] = fl / ms / 1e9
            except Exception as e:  # noqa: BLE001
                row["cudnn_error"] = repr(e)[:300]

        results.append(row)
        print(json.dumps(row), flush=True)
        del q, k, v, out, ref
        torch.cuda.empty_cache()

    if opt.json:
        with open(opt.json, "w") as f:
            json.dump(results, f, indent=1)

    def cell(r, p):
        if f"{p}_tflops" in r:
            return f"{r[f'{p}_tflops']:.0f} ({r[f'{p}_err']:.1e})"
        return "n/a" if f"{p}_error" not in r else "error"

    print()
    print(f"| case | B | tokens | max | scree TFLOP/s (rel err) | varlen_attn | FlexAttention | cuDNN | scree/varlen | scree/flex | scree/cudnn |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in results:
        def ratio(p):
            ok = f"{p}_tflops" in r and "scree_tflops" in r
            return f"{r['scree_tflops'] / r[f'{p}_tflops']:.2f}" if ok else "-"
        print(f"| {r['case']} | {r['batch']} | {r['tokens']:,} | {r['max_len']} | {cell(r, 'scree')} | "
              f"{cell(r, 'varlen')} | {cell(r, 'flex')} | {cell(r, 'cudnn')} | {ratio('varlen')} | "
              f"{ratio('flex')} | {ratio('cudnn')} |")
    for r in results:
        for p in ("scree", "varlen", "flex", "cudnn"):
            if f"{p}_error" in r:
                print(f"{r['case']}: {p}: {r[f'{p}_error']}")


if __name__ == "__main__":
    sys.exit(main())
