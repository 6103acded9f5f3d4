"""The same GPU handoff done with torch.multiprocessing, for comparison.

A producer process sends a CUDA tensor through a torch.multiprocessing queue
to a consumer process; the time counted runs from just before queue.put in
the producer to the moment the consumer holds a usable tensor (rebuilt,
which opens the CUDA IPC handle), on one CLOCK_MONOTONIC shared by both.
Each round uses a fresh tensor, kept alive by the producer until the
consumer acknowledges, as torch requires.

    python3 bench/handoff_torch.py [--quick] [--cached-attach-us US]

Prints a Markdown table, and with --cached-attach-us the ratio of the torch
median for 1 MiB to scree's cached attach.
"""
import argparse
import statistics
import time

import torch
import torch.multiprocessing as mp

SIZES = [(1 << 20, "1 MiB"), (1 << 30, "1 GiB"), (8 << 30, "8 GiB")]


def consumer(q, acks):
    torch.cuda.init()
    torch.empty(1, device="cuda")  # context creation stays out of the numbers
    while True:
        item = q.get()
        if item is None:
            return
        t, t0 = item
        dt = time.perf_counter_ns() - t0
        assert t.is_cuda
        del t
        acks.put(dt / 1e3)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--cached-attach-us", type=float, default=0.0)
    args = ap.parse_args()

    ctx = mp.get_context("spawn")
    q, acks = ctx.Queue(), ctx.Queue()
    p = ctx.Process(target=consumer, args=(q, acks))
    p.start()
    torch.empty(1, device="cuda")
    rows = []
    for size, label in SIZES:
        n = 5 if args.quick else (10 if size >= (8 << 30) else 30)
        times = []
        for i in range(n + 1):
            t = torch.empty(size, dtype=torch.uint8, device="cuda").fill_(i % 251)
            torch.cuda.synchronize()
            q.put((t, time.perf_counter_ns()))
            dt = acks.get()
            del t
            if i > 0:  # the first round warms the consumer's IPC path
                times.append(dt)
        times.sort()
        p99 = times[min(len(times) - 1, int(0.99 * (len(times) - 1) + 0.5))]
        rows.append((label, statistics.median(times), p99))
    q.put(None)
    p.join()

    print(f"\ntorch.multiprocessing handoff on {torch.cuda.get_device_name(0)}, "
          f"torch {torch.__version__}\n")
    print("| batch | put to usable p50 (us) | p99 (us) |")
    print("| --- | --- | --- |")
    for label, med, p99 in rows:
        print(f"| {label} | {med:.1f} | {p99:.1f} |")
    if args.cached_attach_us > 0:
        print(f"ratio torch.mp (1 MiB) / scree cached attach: "
              f"{rows[0][1] / args.cached_attach_us:.1f} (target >= 20)")


if __name__ == "__main__":
    main()
