#!/usr/bin/env python3
"""FlashAttention's accuracy criterion for scree's CUDA attention kernels.

For every case, on fresh random inputs (torch.randn; the seed is printed and
--seed repeats a run), scree_attention_fwd runs through ctypes
(kernels/tools/attention_ctypes.py, shared with bench/attention.py) and its
output is compared with a float64 reference: scree.kernels.reference_attention
on float64, the project's per-sequence ground truth with scree's masks. The
same function with accum_dtype set to the input dtype is PyTorch computing the
attention in bf16 or fp16 (FlashAttention's attention_ref without upcast). A
case passes when

    max |out - ref| <= 2 * max |out_pt - ref| + max |ref - ref rounded to the dtype|

FlashAttention's criterion, plus the error that rounding the exact answer to
the output dtype costs, so that a case PyTorch happens to get exactly (one
visible key a row) asks no more of the kernel than that rounding. Also: every
output element written (out starts as NaN) and nothing past its end; lse
(float32) -inf exactly where no key is visible, elsewhere within the same 2x
of PyTorch's lse in the input dtype and within 2e-3 of the reference (the
bound of tests/gpu/test_attention_cuda.c).

The cases: the decode shapes of bench/attention.py (issue 13's, B up to 128,
keys to 32k), q lengths 1, 2, 3, 4, 7, 16 and 64 at GQA ratios 1, 2, 4, 8 and
16, windows, key lengths on and one past the decode kernels' split boundaries,
zero-length and one-key sequences, keys from 16 to 128k in one batch, and
prefill shapes (log-normal batches, tile edges, more keys than queries, the
benchmark's first case); d64, d128 and d256; bf16 and fp16.

Kernel choice: the library reads its SCREE_ATTN_* switches once per process,
so --choice sets one set of them before the first call and CTest runs one
process per choice (tests/CMakeLists.txt): the default choice, the decode
kernels forced onto every call, never taken, without splits, with 64-key
splits, the mma.sync kernels alone and the Hopper kernel on every case it can
run. head_dim 256 must be refused with ENOTSUP where the Hopper kernel is off
or missing, as the C tests expect.

Exit status: 0 every case passes, 1 one fails, 77 with a "SKIP:" line where
torch, a CUDA device or a CUDA build of the library is missing.

  python3 tests/gpu/test_attention_accuracy.py --lib build-gpu/kernels/libscreekernels.so --choice default
  ... --choice decode_chunk64 --seed 123 -k split   # one choice, one seed, cases named *split*
  ... --device cpu --quick                          # the script itself, on the C reference path
"""
import argparse
import importlib.util
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SKIP = 77

# Each choice's variables (kernels/NOTES.md lists the switches).
CHOICES = {
    "default": {},
    "decode_forced": {"SCREE_ATTN_DECODE": "2"},
    "decode_off": {"SCREE_ATTN_DECODE": "0"},
    "decode_nosplit": {"SCREE_ATTN_DECODE_SPLIT": "0"},
    "decode_chunk64": {"SCREE_ATTN_DECODE": "2", "SCREE_ATTN_DECODE_CHUNK": "64"},
    "mma": {"SCREE_ATTN_SM90": "0"},
    "sm90_all": {"SCREE_ATTN_SM90": "2", "SCREE_ATTN_SM90_MIN_SEQLEN": "0"},
}


def skip(why):
    print(f"SKIP: {why}", flush=True)
    sys.exit(SKIP)


def atoi(s):
    """C's atoi, as scree__kernels_env_int reads the switches."""
    s = (s or "").strip()
    n = 0
    sign = -1 if s[:1] == "-" else 1
    for ch in s.lstrip("+-"):
        if not ch.isdigit():
            break
        n = n * 10 + int(ch)
    return sign * n


def case(name, lq, lk, hq, hkv, d, dtype, causal, window=(-1, -1), qscale=1.0, big=False):
    return dict(name=name, lq=list(lq), lk=list(lk), hq=hq, hkv=hkv, d=d, dtype=dtype,
                causal=causal, window=window, qscale=qscale, big=big)


def cases(torch, bench):
    """Every case, in order; big ones (many tokens, or keys of 128k) are left
    out by --quick."""
    bf, fp = torch.bfloat16, torch.float16
    out = []
    for c in bench.decode_cases():
        out.append(case(f"bench {c['name']}", c["lq"], c["lk"], c["hq"], c["hkv"], c["d"], bf,
                        c["causal"], big=True))

    # q lengths x GQA ratios x head_dim, a zero-length query run in each
    # batch, keys shorter than the queries (causal rows that see nothing),
    # equal, and longer, one past a 16-key slice or a split.
    i = 0
    for d in (64, 128, 256):
        for g in (1, 2, 4, 8, 16):
            for q in (1, 2, 3, 4, 7, 16, 64):
                hkv = 2 if g <= 4 else 1
                lq = [q, q, q, 0, q, q]
                lk = [1, max(q - 1, 1), 300, 5, 1025 + q, 64 * (i % 5 + 1) + i % 3 - 1]
                out.append(case(f"q{q} gqa{g} d{d}", lq, lk, g * hkv, hkv, d, (bf, fp)[i % 2],
                                causal=(i // 2) % 2 == 0, qscale=(1.0, 3.0)[(i // 3) % 2]))
                i += 1

    # Windows, with and without causal, on short query runs.
    lk = [1, 300, 4000, 70, 0, 1500]
    wins = (((100, -1), True, 8, 2), ((50, 3), False, 4, 1), ((0, 0), False, 2, 2),
            ((1000, 0), True, 4, 2), ((7, 7), False, 16, 1))
    for d in (64, 128, 256):
        for q in (1, 4, 16):
            for j, (w, causal, hq, hkv) in enumerate(wins):
                out.append(case(f"window {w} q{q} d{d}{' causal' if causal else ''}", [q] * 6, lk, hq,
                                hkv, d, (bf, fp)[(j + q) % 2], causal, window=w))

    # Keys ending on and one either side of the splits: multiples of the
    # 16-key slice, of SCREE_ATTN_DECODE_CHUNK=64 (the decode_chunk64
    # choice) and of the default split floor of a small call (128 KB of K
    # and V: 512 keys at d64, 256 at d128, 128 at d256).
    split_lk = [15, 16, 17, 63, 64, 65, 127, 128, 129, 191, 192, 193, 255, 256, 257, 511, 512, 513,
                767, 768, 769, 1023, 1024, 1025, 2047, 2048, 2049]
    for d in (64, 128, 256):
        n = len(split_lk)
        out.append(case(f"split boundaries q1 gqa4 d{d}", [1] * n, split_lk, 8, 2, d, bf, False))
        out.append(case(f"split boundaries q4 gqa4 d{d} causal", [4] * n, split_lk, 4, 1, d, fp, True))
        out.append(case(f"split boundaries q2 d{d} window", [2] * n, split_lk, 4, 4, d, bf, True,
                        window=(300, 0)))

    # Zero-length and one-key sequences, query runs without keys, keys
    # without queries.
    lq = [1, 1, 3, 2, 0, 1, 1, 0]
    lk = [0, 1, 1, 0, 5, 1, 2, 0]
    for d in (64, 128, 256):
        for causal in (False, True):
            out.append(case(f"zero and one key d{d}{' causal' if causal else ''}", lq, lk, 4, 2, d,
                            bf if causal else fp, causal))
        out.append(case(f"zero and one key d{d} window", lq, lk, 2, 1, d, bf, False, window=(0, 1)))

    # Very uneven keys in one batch, 16 to 128k.
    lk = [16, 131072, 1, 0, 4096, 33, 70000, 300]
    out.append(case("uneven keys q1 gqa8 d128", [1] * 8, lk, 8, 1, 128, bf, False, big=True))
    out.append(case("uneven keys q1-4 d64 causal", [2, 3, 1, 2, 4, 1, 2, 3], lk, 4, 4, 64, fp, True,
                    big=True))
    out.append(case("uneven keys q1-4 gqa2 d256 causal", [2, 3, 1, 2, 4, 1, 2, 3], lk, 4, 2, 256, bf,
                    True, big=True))
    out.append(case("uneven keys q7 gqa16 d128 window", [7] * 8, lk, 16, 1, 128, fp, True,
                    window=(4096, 0), big=True))

    # Prefill shapes.
    ln = bench.lognormal_lengths(16, 2048)
    for j, d in enumerate((64, 128, 256)):
        for causal in (True, False):
            out.append(case(f"prefill log-normal B16 max 2048 d{d}{' causal' if causal else ''}", ln,
                            ln, 8, 8, d, (bf, fp)[(j + causal) % 2], causal))
    ln = bench.lognormal_lengths(8, 4096)
    out.append(case("prefill GQA 32:8 B8 max 4096 d128 causal", ln, ln, 32, 8, 128, bf, True))
    out.append(case("prefill window (256, 0) d128", ln, ln, 4, 4, 128, fp, True, window=(256, 0)))
    out.append(case("prefill window (128, 128) d64", ln, ln, 4, 2, 64, bf, False, window=(128, 128)))
    out.append(case("prefill window (300, 0) d256", ln, ln, 4, 2, 256, bf, True, window=(300, 0)))
    edges = [63, 64, 65, 127, 128, 129, 255, 256, 257, 1, 640, 0, 383]
    for d in (64, 128, 256):
        for causal in (True, False):
            out.append(case(f"prefill tile edges d{d}{' causal' if causal else ''}", edges, edges, 6, 2, d,
                            bf if causal else fp, causal))
    out.append(case("prefill q<k (chunks) gqa4 d128 causal", [300, 512, 17, 0], [1000, 512, 4000, 9], 8,
                    2, 128, bf, True))
    out.append(case("prefill q>k d64 causal", [700, 129, 7], [2, 129, 383], 2, 1, 64, fp, True))
    c0 = bench.cases()[0]
    out.append(case(f"bench prefill {c0['name']}", c0["lens"], c0["lens"], c0["hq"], c0["hkv"],
                    c0["d"], bf, c0["causal"], big=True))
    return out


def maxabs(t):
    return t.abs().max().item() if t.numel() else 0.0


def run_case(torch, ac, lib, ref_attn, c, dev, d256_runs):
    """One case: returns (status, line, ratio): status "ok", "fail" or
    "refused" (head_dim 256 refused where that is expected), a line saying
    what was measured or what is wrong, and scree's error over PyTorch's
    (None where PyTorch's is 0 or nothing ran)."""
    lq, lk, hq, hkv, d, dt = c["lq"], c["lk"], c["hq"], c["hkv"], c["d"], c["dtype"]
    causal, window = c["causal"], c["window"]
    oq, ok = [0], [0]
    for a, b in zip(lq, lk):
        oq.append(oq[-1] + a)
        ok.append(ok[-1] + b)
    tq, tk = oq[-1], ok[-1]
    q = torch.randn(tq, hq, d, device=dev, dtype=dt)
    if c["qscale"] != 1.0:
        q.mul_(c["qscale"])  # sharper softmax rows: the running max moves more
    k = torch.randn(tk, hkv, d, device=dev, dtype=dt)
    v = torch.randn(tk, hkv, d, device=dev, dtype=dt)
    cu_q = torch.tensor(oq, dtype=torch.int32, device=dev)
    cu_k = torch.tensor(ok, dtype=torch.int32, device=dev)
    # Poisoned, with a guard past the end: an element left unwritten stays
    # NaN, a write past the end shows in the guard.
    n = tq * hq * d
    obuf = torch.full((n + 64,), float("nan"), dtype=dt, device=dev)
    out = obuf[:n].view(tq, hq, d)
    lbuf = torch.full((hq * tq + 16,), float("nan"), dtype=torch.float32, device=dev)
    lse = lbuf[: hq * tq].view(hq, tq)
    fn = ac.attention_call(lib, q, k, v, out, lse, cu_q, cu_k, max(lq), max(lk), causal, window=window)
    try:
        fn()
        if dev.type == "cuda":
            torch.cuda.synchronize()
    except ac.ScreeError as e:
        if d == 256 and not d256_runs and e.name == "ENOTSUP":
            if not torch.isnan(obuf).all():
                return "fail", f"refused, but out was written: {e.msg}", None
            return "refused", f"refused as expected: {e.msg}", None
        return "fail", str(e), None
    if d == 256 and not d256_runs:
        return "fail", "head_dim 256 ran where it should have been refused with ENOTSUP", None

    import numpy as np
    oq_h, ok_h = np.asarray(oq), np.asarray(ok)
    ref, ref_lse = ref_attn(q.double(), k, v, oq_h, ok_h, causal, accum_dtype=torch.float64,
                            window=window, return_lse=True)
    pt, pt_lse = ref_attn(q, k, v, oq_h, ok_h, causal, accum_dtype=dt, window=window, return_lse=True)
    problems = []
    if torch.isnan(out).any():
        bad = torch.isnan(out).nonzero()[0].tolist()
        problems.append(f"out not written at (token, head, dim) {bad}")
    if not torch.isnan(obuf[n:]).all() or not torch.isnan(lbuf[hq * tq:]).all():
        problems.append("written past the end of out or lse")
    err = maxabs(out.double() - ref)
    pt_err = maxabs(pt.double() - ref)
    floor = maxabs(ref.to(dt).double() - ref)
    if not err <= 2 * pt_err + floor:
        problems.append(f"max error {err:.3e} > 2 x PyTorch's {pt_err:.3e} + {floor:.1e}")
    # lse by the same rule, its floor the float32 rounding of the exact lse,
    # and never more than 2e-3 off.
    seen = torch.isfinite(ref_lse)
    lse_err = pt_lse_err = 0.0
    if not torch.equal(torch.isfinite(lse), seen) or bool((lse[~seen] != float("-inf")).any()):
        problems.append("lse is not -inf exactly where no key is visible")
    else:
        r = ref_lse[seen]
        lse_err = maxabs(lse.double()[seen] - r)
        pt_lse_err = maxabs(pt_lse.double()[seen] - r)
        lse_floor = maxabs(r.float().double() - r)
        if not (lse_err <= 2 * pt_lse_err + lse_floor and lse_err <= 2e-3):
            problems.append(f"lse error {lse_err:.3e} > 2 x PyTorch's {pt_lse_err:.3e} + {lse_floor:.1e}"
                            " or > 2e-3")
    ratio = err / pt_err if pt_err > 0 else None
    line = (f"scree {err:.2e} pt {pt_err:.2e} ({'-' if ratio is None else f'{ratio:.2f}x'}) "
            f"lse {lse_err:.1e} (pt {pt_lse_err:.1e})")
    if problems:
        return "fail", "; ".join(problems) + " | " + line, ratio
    return "ok", line, ratio


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lib", required=True, help="libscreekernels.so")
    ap.add_argument("--choice", default="default", choices=sorted(CHOICES))
    ap.add_argument("--seed", type=int, default=None, help="default: a fresh one, printed")
    ap.add_argument("-k", default=None, help="only cases whose name contains this")
    ap.add_argument("--quick", action="store_true", help="leave out the big cases")
    ap.add_argument("--device", default="cuda", choices=("cuda", "cpu"),
                    help="cpu runs the C reference path: a check of this script, not of the kernels")
    opt = ap.parse_args()

    try:
        import numpy  # noqa: F401
        import torch
    except ImportError as e:
        skip(f"torch or numpy missing ({e})")
    if opt.device == "cuda":
        if not torch.cuda.is_available():
            skip("no CUDA device (torch.cuda.is_available() is False)")
        if torch.cuda.get_device_capability() < (8, 0):
            skip(f"compute capability {torch.cuda.get_device_capability()}: the kernels need 8.0 or newer")
    if not os.path.exists(opt.lib):
        skip(f"no library at {opt.lib}")

    # Before the library's first call: it reads the switches then.
    env = CHOICES[opt.choice]
    os.environ.update(env)
    inherited = {k: v for k, v in os.environ.items() if k.startswith("SCREE_ATTN_") and k not in env}

    sys.path.insert(0, str(ROOT / "kernels" / "tools"))
    sys.path.insert(0, str(ROOT / "client" / "python"))
    import attention_ctypes as ac
    from scree.kernels import reference_attention

    spec = importlib.util.spec_from_file_location("scree_bench_attention", ROOT / "bench" / "attention.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)

    lib = ac.load(opt.lib)
    dev = torch.device(opt.device)
    if opt.device == "cuda" and not lib.scree_attention_have_cuda():
        skip(f"{opt.lib} is built without CUDA")
    if opt.device == "cuda":
        cap = torch.cuda.get_device_capability()
        d256_runs = (cap == (9, 0) and atoi(os.environ.get("SCREE_ATTN_SM90", "1")) > 0
                     and atoi(os.environ.get("SCREE_ATTN_VARIANT", "0")) == 0)
        where = f"{torch.cuda.get_device_name()} (compute capability {cap[0]}.{cap[1]})"
    else:
        d256_runs = True
        where = "CPU (the C reference path)"
    seed = opt.seed if opt.seed is not None else int.from_bytes(os.urandom(4), "little")
    torch.manual_seed(seed)
    print(f"choice {opt.choice} {env or '(no variables)'}"
          f"{f', inherited {inherited}' if inherited else ''}; seed={seed}; {where}; "
          f"torch {torch.__version__}", flush=True)

    t0 = time.perf_counter()
    todo = [c for c in cases(torch, bench)
            if (opt.k is None or opt.k in c["name"]) and not (opt.quick and c["big"])]
    failed = refused = 0
    worst = (0.0, "")
    for c in todo:
        status, line, ratio = run_case(torch, ac, lib, reference_attention, c, dev, d256_runs)
        dt = str(c["dtype"]).replace("torch.", "")
        print(f"{status:7} {c['name']} [{dt}, {c['hq']}:{c['hkv']}] {line}", flush=True)
        failed += status == "fail"
        refused += status == "refused"
        if ratio is not None and ratio > worst[0]:
            worst = (ratio, c["name"])
        if c["big"] and dev.type == "cuda":
            torch.cuda.empty_cache()
    took = time.perf_counter() - t0
    print(f"{len(todo)} cases, {failed} failed, {refused} refused as expected (head_dim 256); "
          f"largest error ratio to PyTorch's {worst[0]:.2f} ({worst[1]}); {took:.1f} s; "
          f"choice {opt.choice}, seed={seed}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
