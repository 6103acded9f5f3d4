#!/usr/bin/env python3
"""Padded <-> packed conversion throughput on CUDA: scree's bridges beside
what torch offers.

Cases (bf16, log-normal lengths, seed 0, the longest row at the cap):
  B=64,  max 8192, about 71,724 tokens, D=4096
  B=256, max 2048, about 64,347 tokens, D=2048

Useful bandwidth counts the least bytes each direction must move: packing
reads and writes the real tokens (2 x packed bytes); unpacking reads the
packed bytes and writes the whole padded tensor. The headline is each
method's ratio to a plain device copy of the packed tensor (target >= 0.85).
Times are CUDA-event medians over --reps calls, each call measured alone,
including any host sync the method makes; a second column times --reps calls
back to back (the copy too), where one call's host work overlaps the device
work before it. scree's rows without a tag run the default path (on CUDA:
the C packing kernels of scree/ragged.h, the Triton unpacking kernels);
"[triton]" and "[torch ops]" rows force the other paths
(SCREE_BRIDGES_KERNEL=triton or torch).

  python bench/bridges_gpu.py --out results/bridges_gpu.json

writes the JSON there and the markdown table beside it (.md); without CUDA it
prints a message and exits 0.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

try:  # the installed package (with its native extension) first
    import scree  # noqa: F401
except ImportError:  # else the source tree: the pure-Python paths only
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "client" / "python"))

CASES = [
    dict(name="B=64, max 8192, D=4096", batch=64, cap=8192, tokens=71_724, dim=4096),
    dict(name="B=256, max 2048, D=2048", batch=256, cap=2048, tokens=64_347, dim=2048),
]


def lengths_for(batch: int, cap: int, tokens: int, seed: int = 0, sigma: float = 1.0) -> np.ndarray:
    """Log-normal lengths clipped to [1, cap], the longest set to cap, with the
    log-space mean chosen (by bisection) so the total is close to ``tokens``."""
    z = np.random.default_rng(seed).standard_normal(batch)
    top = int(np.argmax(z))

    def draw(mu: float) -> np.ndarray:
        n = np.clip(np.rint(np.exp(mu + sigma * z)), 1, cap).astype(np.int64)
        n[top] = cap
        return n

    lo, hi = 0.0, np.log(cap) + 4 * sigma
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if draw(mid).sum() < tokens else (lo, mid)
    return draw(lo)


def time_ms(fn: Callable[[], Any], reps: int, torch: Any, kernel: str = "") -> tuple[float, float]:
    """Median CUDA-event time of ``fn`` called alone, and the mean time of a
    call among ``reps`` called back to back (one event pair around them all:
    the host work of one call overlaps the device work of the one before,
    as in a loop converting batch after batch). ``kernel`` picks scree's
    copy path (SCREE_BRIDGES_KERNEL; empty is the default) for both."""
    os.environ["SCREE_BRIDGES_KERNEL"] = kernel
    cuda = torch.cuda.is_available()
    for _ in range(3):
        fn()
    if cuda:
        torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        if not cuda:  # --dry-run on a CPU: wall time, only to exercise the code
            t0 = time.perf_counter()
            fn()
            times.append(1e3 * (time.perf_counter() - t0))
            continue
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    stream_ms = float("nan")
    if cuda:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(reps):
            fn()
        end.record()
        end.synchronize()
        stream_ms = start.elapsed_time(end) / reps
    os.environ.pop("SCREE_BRIDGES_KERNEL", None)
    return float(np.median(times)), stream_ms


def run_case(case: dict, reps: int, torch: Any) -> dict:
    from scree import bridges

    dev = "cuda" if torch.cuda.is_available() else "cpu"
    B, D = case["batch"], case["dim"]
    lengths = lengths_for(B, case["cap"], case["tokens"])
    S, T = int(lengths.max()), int(lengths.sum())
    dtype = torch.bfloat16 if dev == "cuda" else torch.float32
    item = torch.finfo(dtype).bits // 8
    packed_bytes, padded_bytes = T * D * item, B * S * D * item

    hs = torch.randn(B, S, D, device=dev, dtype=dtype)
    lengths_t = torch.from_numpy(lengths).to(dev)
    mask = (torch.arange(S, device=dev)[None, :] < lengths_t[:, None]).to(torch.int64)
    hs.masked_fill_(mask[..., None] == 0, 0)
    arr = bridges.from_hf_padded(hs, mask)
    assert arr.total_length == T
    packed = arr.values
    dst = torch.empty_like(packed)
    mask_bool = mask.bool()
    flat_idx = torch.nonzero(mask.view(-1)).squeeze(1)  # indices known ahead of time
    hs_flat = hs.view(B * S, D)

    host_lengths = lengths.tolist()
    pack_ways: dict[str, Callable[[], Any]] = {
        "copy of the packed tensor": lambda: dst.copy_(packed),
        "scree from_hf_padded": lambda: bridges.from_hf_padded(hs, mask),
        "scree from_hf_padded [triton]": lambda: bridges.from_hf_padded(hs, mask),
        "scree from_hf_padded [torch ops]": lambda: bridges.from_hf_padded(hs, mask),
        "scree from_padded, host lengths (no sync)": lambda: bridges.from_padded(
            hs, lengths=host_lengths),
        "scree from_padded, host lengths [triton]": lambda: bridges.from_padded(
            hs, lengths=host_lengths),
        "scree from_padded, host lengths [torch ops]": lambda: bridges.from_padded(
            hs, lengths=host_lengths),
        "hs[mask.bool()] (syncs)": lambda: hs[mask_bool],
        "index_select, indices known": lambda: hs_flat.index_select(0, flat_idx),
        "torch.nested narrow + contiguous": lambda: torch.nested.narrow(
            hs, 1, torch.zeros_like(lengths_t), lengths_t, layout=torch.jagged).contiguous(),
    }
    nt = bridges.to_torch_nested(arr)
    unpack_ways: dict[str, Callable[[], Any]] = {
        "scree to_hf_padded": lambda: bridges.to_hf_padded(arr),
        "scree to_hf_padded [torch ops]": lambda: bridges.to_hf_padded(arr),
        "zeros + index_copy_, indices known": lambda: torch.zeros_like(hs_flat).index_copy_(
            0, flat_idx, packed),
        "zeros + out[mask] = values (syncs)": lambda: torch.zeros_like(hs).index_put_(
            (mask_bool,), packed),
        "torch.nested to_padded_tensor": lambda: nt.to_padded_tensor(0.0),
    }

    rows = []
    for direction, ways, useful in (("pack", pack_ways, 2 * packed_bytes),
                                    ("unpack", unpack_ways, packed_bytes + padded_bytes)):
        for name, fn in ways.items():
            try:
                kernel = ("triton" if "[triton]" in name else
                          "torch" if "[torch ops]" in name else "")
                ms, stream_ms = time_ms(fn, reps, torch, kernel)
            except Exception as e:  # report, e.g., int32 numel limits, and go on
                rows.append(dict(direction=direction, method=name, error=f"{type(e).__name__}: {e}"[:120]))
                torch.cuda.synchronize()
                continue
            gbps = useful / ms / 1e6
            rows.append(dict(direction=direction, method=name, ms=ms, gb_s=gbps,
                             stream_ms=stream_ms, stream_gb_s=useful / stream_ms / 1e6))
    copy, copy_stream = rows[0]["gb_s"], rows[0]["stream_gb_s"]
    for r in rows:
        if "gb_s" in r:
            r["ratio_to_copy"] = r["gb_s"] / copy
            r["stream_ratio_to_copy"] = r["stream_gb_s"] / copy_stream
    return dict(case=case["name"], batch=B, max_length=S, tokens=T, dim=D, dtype=str(dtype),
                padding=1 - T / (B * S), packed_mib=packed_bytes / 2**20,
                padded_mib=padded_bytes / 2**20, rows=rows)


def markdown(results: list[dict], device: str) -> str:
    out = [f"Padded <-> packed on {device}, {results[0]['dtype']}, medians.\n",
           "| case | direction | method | ms | useful GB/s | ratio to copy "
           "| back to back: ms | ratio to copy |",
           "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for res in results:
        label = (f"B={res['batch']}, max {res['max_length']}, D={res['dim']}, "
                 f"{res['tokens']:,} tokens ({100 * res['padding']:.0f}% padding)")
        for r in res["rows"]:
            if "error" in r:
                out.append(f"| {label} | {r['direction']} | {r['method']} | fails: {r['error']} "
                           "| | | | |")
            else:
                out.append(f"| {label} | {r['direction']} | {r['method']} | {r['ms']:.3f} | "
                           f"{r['gb_s']:,.0f} | {r['ratio_to_copy']:.2f} | "
                           f"{r['stream_ms']:.3f} | {r['stream_ratio_to_copy']:.2f} |")
    return "\n".join(out) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="bridges_gpu.json", help="JSON path; the .md goes beside it")
    ap.add_argument("--reps", type=int, default=50)
    ap.add_argument("--dry-run", action="store_true",
                    help="run tiny cases on the CPU to check the script (numbers mean nothing)")
    args = ap.parse_args()
    try:
        import torch
    except ImportError:
        print("bridges_gpu: torch is not installed; nothing to measure")
        return 0
    cases = CASES
    if args.dry_run:
        os.environ.setdefault("TRITON_INTERPRET", "1")  # before scree imports Triton
        cases = [dict(c, name=c["name"] + " (dry run, scaled down)", batch=c["batch"] // 8,
                      cap=c["cap"] // 64, tokens=c["tokens"] // 512, dim=32) for c in CASES]
        device = "CPU (dry run)"
    elif not torch.cuda.is_available():
        print("bridges_gpu: no CUDA device; this benchmark needs a GPU (skipped)")
        return 0
    else:
        from scree import bridges

        device = torch.cuda.get_device_name()
        packing = ("the C kernels of scree/ragged.h" if bridges._native_packing(torch.device("cuda"))
                   else "torch ops (scree._native without CUDA)")
        device += f"; default packing path: {packing}"
    results = []
    for case in cases:
        results.append(run_case(case, args.reps, torch))
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    table = markdown(results, device)
    print(table)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(dict(device=device, torch=torch.__version__, results=results), indent=1))
    out.with_suffix(".md").write_text(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
