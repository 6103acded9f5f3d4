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
upcast inputs): relative error ||out - ref|| / ||ref||. torch 2.11 spends
60-90 ms of host time in each ragged cuDNN call, so do_bench's figure for it
is host-bound; the cuDNN device column is its kernel time instead, from the
PyTorch profiler (device_ms below), and scree/cuDNN compares that with scree's
kernel time measured the same way.

TFLOP/s count sum over sequences of 4 * L^2 * Hq * D, halved for causal.
Prints a markdown table and writes JSON (--json).

--decode runs the decode-shaped cases instead (few queries per sequence
against many keys; bench_decode below): time, GB/s and % of a device-to-device
copy's bandwidth measured in the same run, beside varlen_attn and
FlexAttention, with FlashAttention's accuracy criterion (max error at most 2x
that of the same attention computed by PyTorch in the input dtype, both
against a float32 reference).

--cudnn runs issue 18's uniform batches instead (bench_cudnn below): dense
(B, L, H, D) tensors through torch.nn.functional.scaled_dot_product_attention
restricted to the cuDNN backend and to the flash backend (FlashAttention-2),
and scree on the same memory packed, each timed with do_bench; a backend that
refuses a shape is reported n/a.

  python3 bench/attention.py --lib build-gpu/kernels/libscreekernels.so --json out.json
  python3 bench/attention.py --lib ... --scree-only --variant 2   # one tile variant
  python3 bench/attention.py --lib ... --scree-only --sm90 0      # mma.sync kernels only
  python3 bench/attention.py --lib ... --decode --json decode.json  # decode cases
  python3 bench/attention.py --lib ... --cudnn --json cudnn.json    # uniform, beside cuDNN
"""
import argparse
import json
import math
import os
import sys
import time
import warnings

import numpy as np
import torch
import torch.nn.functional as F

# The ctypes binding of scree_attention_fwd, shared with
# tests/gpu/test_attention_accuracy.py.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "kernels", "tools"))
import attention_ctypes  # noqa: E402


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


# ---- decode-shaped calls


def decode_cases():
    """The shapes of issue 13 (bf16, d128 unless named), plus one d64 and one
    d256 decode case. Keys log-normal around max/8 as in lognormal_lengths."""
    ln128 = lognormal_lengths(128, 32768)
    ln64 = lognormal_lengths(64, 32768)
    return [
        dict(name="decode GQA 32:8, B=128, q=1, keys ~4k (max 32k)", lq=[1] * 128, lk=ln128, hq=32, hkv=8, d=128, causal=False, kind="gqa"),
        dict(name="decode MHA 32 heads, B=32, q=1, keys 8192", lq=[1] * 32, lk=[8192] * 32, hq=32, hkv=32, d=128, causal=False, kind="mha"),
        dict(name="decode GQA 64:8, B=8, q=1, keys 32768", lq=[1] * 8, lk=[32768] * 8, hq=64, hkv=8, d=128, causal=False, kind="gqa"),
        dict(name="spec decode GQA 32:8, B=64, q=4 causal, keys ~4k", lq=[4] * 64, lk=ln64, hq=32, hkv=8, d=128, causal=True, kind="spec"),
        dict(name="chunked prefill GQA 32:8, B=8, q=512 causal, keys 8192", lq=[512] * 8, lk=[8192] * 8, hq=32, hkv=8, d=128, causal=True, kind="chunk"),
        dict(name="decode GQA 32:8 d64, B=128, q=1, keys ~4k", lq=[1] * 128, lk=ln128, hq=32, hkv=8, d=64, causal=False, kind="gqa"),
        dict(name="decode GQA 16:4 d256, B=32, q=1, keys 8192", lq=[1] * 32, lk=[8192] * 32, hq=16, hkv=4, d=256, causal=False, kind="gqa"),
    ]


def attention_ref(q, k, v, cq, ck, hq, hkv, causal, dtype):
    """Per-sequence attention with the bottom-right causal mask, computed in
    dtype (float32 for the reference; the input dtype for PyTorch's own
    error, FlashAttention's attention_ref without upcast). Returns the output
    (in dtype) and, for float32, the lse (heads, tokens)."""
    g = hq // hkv
    d = q.shape[-1]
    out = torch.empty(q.shape, dtype=dtype, device=q.device)
    lse = torch.empty(hq, q.shape[0], dtype=torch.float32, device=q.device)
    for i in range(len(cq) - 1):
        qs, qe, ks, ke = cq[i], cq[i + 1], ck[i], ck[i + 1]
        Lq, Lk = qe - qs, ke - ks
        if Lq == 0:
            continue
        qq = q[qs:qe].to(dtype).transpose(0, 1)  # (hq, Lq, d)
        kk = k[ks:ke].to(dtype).transpose(0, 1).repeat_interleave(g, 0)
        vv = v[ks:ke].to(dtype).transpose(0, 1).repeat_interleave(g, 0)
        s = torch.matmul(qq, kk.transpose(1, 2)) * (1.0 / math.sqrt(d))
        if causal:
            i_ = torch.arange(Lq, device=q.device)[:, None]
            j_ = torch.arange(Lk, device=q.device)[None, :]
            s = s.masked_fill(j_ > i_ + Lk - Lq, float("-inf"))
        if dtype == torch.float32:
            lse[:, qs:qe] = torch.logsumexp(s, dim=-1)
        p = torch.softmax(s, dim=-1).nan_to_num(0.0)
        out[qs:qe] = torch.matmul(p, vv).transpose(0, 1)
    return out, lse


def copy_bandwidth(dev):
    """Bytes read plus written per second of a 2 GiB device-to-device copy."""
    from triton.testing import do_bench
    n = 1 << 30
    a = torch.empty(n, dtype=torch.int16, device=dev).random_()
    b = torch.empty_like(a)
    ms = do_bench(lambda: b.copy_(a), warmup=50, rep=300, return_mode="median")
    del a, b
    torch.cuda.empty_cache()
    return 2 * 2 * n / (ms * 1e-3) / 1e9


def device_ms(fn, iters=5):
    """Milliseconds of GPU work per call of fn: the kernels, copies and
    memsets that the PyTorch profiler (CUPTI) records over iters calls,
    summed and divided by iters; None where it records none. do_bench's
    events also count the time the GPU waits for the host between launches;
    this does not, so a call slow on the host is told apart from a slow
    kernel. Kernels launched outside torch (scree's, through ctypes) are
    recorded too: CUPTI sees every launch of the process."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile
    fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(iters):
            fn()
        torch.cuda.synchronize()
    us = sum(e.time_range.elapsed_us() for e in prof.events() if e.device_type == DeviceType.CUDA)
    return us / iters / 1e3 if us > 0 else None


def save_json(results, opt):
    """The rows, as measured, into the --json file when one is named."""
    if opt.json:
        with open(opt.json, "w") as f:
            json.dump(results, f, indent=1)


def ratio(r, num, den):
    """r[num] / r[den] for a table cell, or "-" where the row lacks either."""
    return f"{r[num] / r[den]:.2f}" if num in r and den in r else "-"


def print_errors(results, peers):
    """One line per case and implementation that failed, after the table."""
    for r in results:
        for p in peers:
            if f"{p}_error" in r:
                print(f"{r['case']}: {p}: {r[f'{p}_error']}")


def load_varlen_attn(opt):
    """torch's varlen_attn, or None with --scree-only or where this torch
    lacks it (said on stdout)."""
    if opt.scree_only:
        return None
    try:
        from torch.nn.attention.varlen import varlen_attn
        return varlen_attn
    except Exception as e:  # noqa: BLE001
        print(f"varlen_attn not available: {e}")
        return None


def selected(case_list, opt):
    """The cases that --cases names by index (all without it)."""
    sel = [int(x) for x in opt.cases.split(",")] if opt.cases else None
    return [c for ci, c in enumerate(case_list) if sel is None or ci in sel]


def varlen_call(varlen_attn, q, k, v, cu_q, cu_k, max_q, max_k, causal, row):
    """A function that runs torch's varlen_attn (FlashAttention-2) on the same
    call. With grouped heads it asks for enable_gqa; a torch without it gets
    K and V repeated to num_heads_q heads here, outside the timed region, and
    row says so."""
    hq, hkv = q.shape[1], k.shape[1]
    kw = dict(window_size=(-1, 0) if causal else (-1, -1))
    kk, vv = k, v
    if hq != hkv:
        try:
            varlen_attn(q, k, v, cu_q, cu_k, max_q, max_k, enable_gqa=True, **kw)
            kw["enable_gqa"] = True
        except TypeError:
            kk = k.repeat_interleave(hq // hkv, 1)
            vv = v.repeat_interleave(hq // hkv, 1)
            row["varlen_note"] = "k/v repeated to Hq heads outside the timed region"
    return lambda: varlen_attn(q, kk, vv, cu_q, cu_k, max_q, max_k, **kw)


def bench_decode(lib, opt, dev, props):
    from triton.testing import do_bench
    bw = copy_bandwidth(dev)
    print(f"copy bandwidth: {bw:.0f} GB/s (read + write, 2 GiB device-to-device copy)", flush=True)
    varlen_attn = load_varlen_attn(opt)
    results = []
    for c in selected(decode_cases(), opt):
        torch.manual_seed(0)
        lq, lk, hq, hkv, d, causal = c["lq"], c["lk"], c["hq"], c["hkv"], c["d"], c["causal"]
        B, Tq, Tk, Mq, Mk = len(lq), sum(lq), sum(lk), max(lq), max(lk)
        cq, ck = [0], [0]
        for a_, b_ in zip(lq, lk):
            cq.append(cq[-1] + a_)
            ck.append(ck[-1] + b_)
        cu_q = torch.tensor(cq, dtype=torch.int32, device=dev)
        cu_k = torch.tensor(ck, dtype=torch.int32, device=dev)
        q = torch.randn(Tq, hq, d, device=dev, dtype=torch.bfloat16)
        k = torch.randn(Tk, hkv, d, device=dev, dtype=torch.bfloat16)
        v = torch.randn(Tk, hkv, d, device=dev, dtype=torch.bfloat16)
        ref, ref_lse = attention_ref(q, k, v, cq, ck, hq, hkv, causal, torch.float32)
        pt, _ = attention_ref(q, k, v, cq, ck, hq, hkv, causal, torch.bfloat16)
        pt_err = (pt.float() - ref).abs().max().item()
        nbytes = 2 * (2 * Tk * hkv * d + 2 * Tq * hq * d)
        row = dict(case=c["name"], kind=c["kind"], batch=B, q_tokens=Tq, k_tokens=Tk, max_q=Mq, max_k=Mk,
                   hq=hq, hkv=hkv, d=d, causal=causal, bytes=nbytes, copy_gbs=bw, pt_maxerr=pt_err,
                   device=props.name)

        def record(p, fn, o_of):
            o = o_of(fn())
            torch.cuda.synchronize()
            row[f"{p}_maxerr"] = (o.float() - ref).abs().max().item() if torch.isfinite(o.float()).all() else float("nan")
            row[f"{p}_fa_ok"] = bool(row[f"{p}_maxerr"] <= 2 * pt_err + 1e-6)
            row[f"{p}_err"] = rel_err(o, ref)
            ms = do_bench(fn, warmup=100, rep=400, return_mode="median")
            row[f"{p}_ms"] = ms
            row[f"{p}_gbs"] = nbytes / (ms * 1e-3) / 1e9
            row[f"{p}_pct"] = 100.0 * row[f"{p}_gbs"] / bw

        out = torch.full_like(q, float("nan"))
        lse = torch.full((hq, Tq), float("nan"), device=dev, dtype=torch.float32)
        scree_fn = attention_ctypes.attention_call(lib, q, k, v, out, lse, cu_q, cu_k, Mq, Mk, causal)

        try:
            record("scree", scree_fn, lambda o: o)
            fin = torch.isfinite(ref_lse)
            lse_ok = bool(torch.equal(fin, torch.isfinite(lse)))
            row["scree_lse_maxerr"] = (lse[fin] - ref_lse[fin]).abs().max().item() if lse_ok else float("nan")
        except RuntimeError as e:
            row["scree_error"] = str(e)[:300]

        if varlen_attn is not None:
            try:
                record("varlen", varlen_call(varlen_attn, q, k, v, cu_q, cu_k, Mq, Mk, causal, row),
                       lambda o: o)
            except Exception as e:  # noqa: BLE001
                row["varlen_error"] = repr(e)[:300]
        if not opt.no_flex and not opt.scree_only:
            try:
                from torch.nn.attention.flex_attention import create_block_mask, flex_attention
                doc_q = torch.repeat_interleave(torch.arange(B, device=dev), torch.tensor(lq, device=dev))
                doc_k = torch.repeat_interleave(torch.arange(B, device=dev), torch.tensor(lk, device=dev))
                # The last key each query may see (bottom-right causal), in
                # the packed key index.
                qpos = torch.arange(Tq, device=dev) - cu_q[doc_q]
                kmax = cu_k[doc_q + 1] - 1 - (cu_q[doc_q + 1] - cu_q[doc_q] - 1 - qpos)

                def mask_mod(b, h, qi, ki):
                    m = doc_q[qi] == doc_k[ki]
                    return m & (ki <= kmax[qi]) if causal else m

                bm = create_block_mask(mask_mod, None, None, Tq, Tk, device=dev, _compile=True)
                flex = torch.compile(flex_attention, dynamic=False)
                qf = q.transpose(0, 1).unsqueeze(0).contiguous()
                kf = k.transpose(0, 1).unsqueeze(0).contiguous()
                vf = v.transpose(0, 1).unsqueeze(0).contiguous()
                record("flex", lambda: flex(qf, kf, vf, block_mask=bm, enable_gqa=hq != hkv),
                       lambda o: o[0].transpose(0, 1))
                del qf, kf, vf, bm
            except Exception as e:  # noqa: BLE001
                row["flex_error"] = repr(e)[:300]
        results.append(row)
        print(json.dumps(row), flush=True)
        del q, k, v, out, ref, pt
        torch.cuda.empty_cache()

    save_json(results, opt)

    def cell(r, p):
        if f"{p}_ms" not in r:
            return "error" if f"{p}_error" in r else "n/a"
        ok = "" if r[f"{p}_fa_ok"] else " FAILS 2x"
        return f"{r[f'{p}_ms']:.3f} ms, {r[f'{p}_gbs']:.0f} GB/s, {r[f'{p}_pct']:.0f}% ({r[f'{p}_maxerr']:.1e}{ok})"

    print()
    print(f"copy bandwidth {bw:.0f} GB/s; max error of PyTorch in bf16 in the pt column; each cell: time, GB/s, % of copy (max error)")
    print("| case | scree | varlen_attn | FlexAttention | pt err | scree lse err | scree/varlen | scree/flex |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in results:
        print(f"| {r['case']} | {cell(r, 'scree')} | {cell(r, 'varlen')} | {cell(r, 'flex')} | "
              f"{r['pt_maxerr']:.1e} | {r.get('scree_lse_maxerr', float('nan')):.1e} | "
              f"{ratio(r, 'varlen_ms', 'scree_ms')} | {ratio(r, 'flex_ms', 'scree_ms')} |")
    print_errors(results, ("scree", "varlen", "flex"))
    return 0


# ---- uniform batches beside cuDNN (issue 18)


def uniform_cases():
    """Issue 18's uniform batches (bf16, Hq = Hkv = 16). Padding costs nothing
    on them, so SDPA gets dense tensors and no peer is charged for ragged
    input. head_dim 256 needs cuDNN's support for it on Hopper; where a
    backend refuses a shape its cell says n/a."""
    c = []
    for b, L, d, causal in ((16, 4096, 128, True), (16, 4096, 128, False), (4, 16384, 128, True),
                            (4, 16384, 128, False), (16, 4096, 64, True), (16, 4096, 256, True),
                            (16, 4096, 256, False)):
        c.append(dict(name=f"B{b} L{L} H16 d{d} {'causal' if causal else 'non-causal'}",
                      b=b, l=L, h=16, d=d, causal=causal))
    return c


def bench_cudnn(lib, opt, dev, props):
    """The --cudnn table: for each uniform case, q, k and v are (B, L, H, D)
    bf16; SDPA reads them as (B, H, L, D) views (the layout FlashAttention
    keeps natively; cuDNN takes the strides as they are) under
    sdpa_kernel(FLASH_ATTENTION) and sdpa_kernel(CUDNN_ATTENTION), and scree
    reads the same memory as packed (B*L, H, D) with cu_seqlens 0, L, 2L, ...
    Each is timed with do_bench (median) and with the profiler's device time
    (device_ms), and checked against the float32 reference."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from triton.testing import do_bench
    print(f"cuDNN {torch.backends.cudnn.version()}", flush=True)
    results = []
    for c in selected(uniform_cases(), opt):
        torch.manual_seed(0)
        B, L, H, D, causal = c["b"], c["l"], c["h"], c["d"], c["causal"]
        q, k, v = (torch.randn(B, L, H, D, device=dev, dtype=torch.bfloat16) for _ in range(3))
        qp, kp, vp = (t.view(B * L, H, D) for t in (q, k, v))
        cu_list = [i * L for i in range(B + 1)]
        cu = torch.tensor(cu_list, dtype=torch.int32, device=dev)
        ref = reference(qp, kp, vp, cu_list, [L] * B, H, H, causal)
        fl = flops([L] * B, H, D, causal)
        row = dict(case=c["name"], batch=B, seqlen=L, hq=H, hkv=H, d=D, causal=causal,
                   tflop=fl / 1e12, device=props.name, torch=torch.__version__,
                   cudnn_version=torch.backends.cudnn.version())

        def record(p, fn, packed):
            # The warnings say why SDPA found no kernel for a backend.
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    o = fn()
                    torch.cuda.synchronize()
                    row[f"{p}_err"] = rel_err(packed(o), ref)
                    ms = do_bench(fn, warmup=100, rep=400, return_mode="median")
                    row[f"{p}_ms"] = ms
                    row[f"{p}_tflops"] = fl / ms / 1e9
                    dms = device_ms(fn)
                    if dms is not None:
                        row[f"{p}_device_ms"] = dms
                        row[f"{p}_device_tflops"] = fl / dms / 1e9
                except Exception as e:  # noqa: BLE001
                    why = "; ".join(str(w.message) for w in caught)
                    row[f"{p}_error"] = (repr(e) + (f" [{why}]" if why else ""))[:600]

        out = torch.full_like(qp, float("nan"))
        record("scree", attention_ctypes.attention_call(lib, qp, kp, vp, out, None, cu, cu, L, L, causal),
               lambda o: o)
        if not opt.scree_only:
            qt, kt, vt = (t.transpose(1, 2) for t in (q, k, v))
            sdpa = lambda: F.scaled_dot_product_attention(qt, kt, vt, is_causal=causal)  # noqa: E731
            unpad = lambda o: o.transpose(1, 2).reshape(B * L, H, D)  # noqa: E731
            for p, backend in (("flash", SDPBackend.FLASH_ATTENTION), ("cudnn", SDPBackend.CUDNN_ATTENTION)):
                if p == "cudnn" and opt.no_cudnn:
                    row["cudnn_error"] = "left out (--no-cudnn)"
                    continue
                with sdpa_kernel(backend):
                    record(p, sdpa, unpad)
        results.append(row)
        print(json.dumps(row), flush=True)
        del q, k, v, qp, kp, vp, out, ref
        torch.cuda.empty_cache()

    save_json(results, opt)

    def cell(r, p):
        if f"{p}_tflops" in r:
            return f"{r[f'{p}_tflops']:.0f} ({r[f'{p}_err']:.1e})"
        return "n/a"

    print()
    print(f"{props.name}, torch {torch.__version__}, cuDNN {torch.backends.cudnn.version()}; "
          "TFLOP/s of the do_bench median (relative error); cuDNN device: the profiler's kernel time")
    print("| case | TFLOP | scree | FA2 (SDPA flash) | cuDNN (SDPA cudnn) | cuDNN device | scree / FA2 | scree / cuDNN |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in results:
        dev_cell = f"{r['cudnn_device_tflops']:.0f}" if "cudnn_device_tflops" in r else "n/a"
        print(f"| {r['case']} | {r['tflop']:.2f} | {cell(r, 'scree')} | {cell(r, 'flash')} | "
              f"{cell(r, 'cudnn')} | {dev_cell} | {ratio(r, 'scree_tflops', 'flash_tflops')} | {ratio(r, 'scree_tflops', 'cudnn_tflops')} |")
    print_errors(results, ("scree", "flash", "cudnn"))
    return 0


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
    ap.add_argument("--no-cudnn", action="store_true")
    ap.add_argument("--decode", action="store_true", help="the decode-shaped cases (bench_decode)")
    ap.add_argument("--cudnn", action="store_true",
                    help="issue 18's uniform batches beside SDPA's cuDNN and flash backends (bench_cudnn)")
    ap.add_argument("--cases", default=None, help="comma-separated case indices")
    opt = ap.parse_args()
    if opt.variant is not None:
        os.environ["SCREE_ATTN_VARIANT"] = str(opt.variant)
    if opt.sm90 is not None:
        os.environ["SCREE_ATTN_SM90"] = str(opt.sm90)
    lib = attention_ctypes.load(opt.lib)

    from triton.testing import do_bench

    dev = torch.device("cuda")
    props = torch.cuda.get_device_properties(dev)
    print(f"device: {props.name}, torch {torch.__version__}, {time.strftime('%Y-%m-%d')}", flush=True)
    if opt.decode:
        return bench_decode(lib, opt, dev, props)
    if opt.cudnn:
        return bench_cudnn(lib, opt, dev, props)

    varlen_attn = load_varlen_attn(opt)
    if not opt.scree_only:
        try:
            print("cudnn schema:", torch.ops.aten._cudnn_attention_forward.default._schema)
        except Exception as e:  # noqa: BLE001
            print(f"cudnn op not available: {e}")

    results = []
    for c in selected(cases(), opt):
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
        scree_fn = attention_ctypes.attention_call(lib, q, k, v, out, None, cu, cu, M, M, causal)

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
                    fn = varlen_call(varlen_attn, q, k, v, cu, cu, M, M, causal, row)
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
                if opt.no_cudnn:
                    raise RuntimeError("left out (--no-cudnn)")
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
                # The host time above hides the kernel from do_bench: its
                # kernel time, and scree's measured the same way beside it.
                dms = device_ms(fn, iters=3)
                if dms is not None:
                    row["cudnn_device_ms"] = dms
                    row["cudnn_device_tflops"] = fl / dms / 1e9
                    sms = device_ms(scree_fn) if "scree_ms" in row else None
                    if sms is not None:
                        row["scree_device_ms"] = sms
                        row["scree_device_tflops"] = fl / sms / 1e9
            except Exception as e:  # noqa: BLE001
                row["cudnn_error"] = repr(e)[:300]

        results.append(row)
        print(json.dumps(row), flush=True)
        del q, k, v, out, ref
        torch.cuda.empty_cache()

    save_json(results, opt)

    def cell(r, p):
        if f"{p}_tflops" in r:
            return f"{r[f'{p}_tflops']:.0f} ({r[f'{p}_err']:.1e})"
        return "n/a" if f"{p}_error" not in r else "error"

    print()
    print("TFLOP/s of the do_bench median (relative error); cuDNN per call is host-bound (torch 2.11), "
          "cuDNN device is its kernel time from the profiler, and scree/cuDNN compares it with "
          "scree's kernel time measured the same way")
    print("| case | B | tokens | max | scree TFLOP/s (rel err) | varlen_attn | FlexAttention | cuDNN per call | "
          "cuDNN device | scree/varlen | scree/flex | scree/cuDNN device |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in results:
        dev_cell = f"{r['cudnn_device_tflops']:.0f}" if "cudnn_device_tflops" in r else "n/a"
        print(f"| {r['case']} | {r['batch']} | {r['tokens']:,} | {r['max_len']} | {cell(r, 'scree')} | "
              f"{cell(r, 'varlen')} | {cell(r, 'flex')} | {cell(r, 'cudnn')} | {dev_cell} | "
              f"{ratio(r, 'scree_tflops', 'varlen_tflops')} | {ratio(r, 'scree_tflops', 'flex_tflops')} | "
              f"{ratio(r, 'scree_device_tflops', 'cudnn_device_tflops')} |")
    print_errors(results, ("scree", "varlen", "flex", "cudnn"))


if __name__ == "__main__":
    sys.exit(main())
