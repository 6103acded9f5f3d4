"""The consumer half of scree's trainer-to-inference example.

Watches ``steps/`` in screed. For each batch the trainer seals there it
attaches to it without copying, runs causal varlen attention on it inside
the daemon (``client.attention``, q = k = v = the hidden states), unpacks
the input and the output with ``scree.bridges.to_hf_padded``, checks the
output against plain torch (``scaled_dot_product_attention`` on the padded
tensors with HF's mask), and deletes both batches. Nothing polls: the watch
wakes the worker when a batch is sealed, and batches sealed before it
started come first (replay).

    python examples/hf_pipeline/worker.py --steps 20 [--socket PATH]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

import scree
from scree import bridges


def reference_attention(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Causal self-attention of padded (B, S, H, D) hidden states in plain
    torch, each query seeing the real keys at or before it."""
    S = hidden.shape[1]
    x = hidden.float().transpose(1, 2)                                 # (B, H, S, D)
    causal = torch.ones(S, S, dtype=torch.bool, device=x.device).tril()
    allowed = causal[None] & mask.bool()[:, None, :]                  # (B, S, S)
    out = F.scaled_dot_product_attention(x, x, x, attn_mask=allowed[:, None])
    return out.transpose(1, 2)                                        # (B, S, H, D)


def check_step(client: scree.Client, name: str, out: str) -> int:
    """Runs and checks attention on batch ``name``; returns its token count."""
    client.attention(name, name, name, out, causal=True)
    with client.get(name) as batch, client.get(out) as result:
        hidden, mask = bridges.to_hf_padded(batch)        # (B, S, H, D) and (B, S)
        got, _ = bridges.to_hf_padded(result)
        want = reference_attention(hidden, mask)
        real = mask.bool()
        tol = 1e-4 if batch.dtype == torch.float32 else 2e-2
        torch.testing.assert_close(got.float()[real], want[real], atol=tol, rtol=tol)
        tokens = batch.total_length
    # No view is left, so both go at once.
    client.delete(out)
    client.delete(name)
    return tokens


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--socket", default=None, help="screed's socket (default: $SCREE_SOCKET)")
    p.add_argument("--steps", type=int, default=20, help="stop after this many batches")
    p.add_argument("--prefix", default="steps/")
    p.add_argument("--out-prefix", default="attn/")
    p.add_argument("--timeout", type=float, default=60.0,
                   help="give up when no batch comes for this many seconds")
    args = p.parse_args(argv)

    done = tokens = 0
    t0 = time.perf_counter()
    with scree.Client(args.socket) as client, client.watch(args.prefix) as events:
        while done < args.steps:
            ev = events.next(timeout=args.timeout)       # scree.Timeout when none comes
            if ev.kind == "overflow":
                # Events were dropped; the watch starts again with a replay
                # of what is sealed now, which includes every batch missed.
                print(f"worker: overflow at event {ev.seq}, resyncing", flush=True)
                continue
            if ev.kind != "sealed":
                continue
            try:
                tokens += check_step(client, ev.name, args.out_prefix + ev.name)
            except scree.NotFound:
                continue  # already handled (seen again in a replay)
            done += 1
    dt = time.perf_counter() - t0
    print(f"worker: checked {done} batches ({tokens} tokens) against torch in {dt:.2f} s",
          flush=True)


if __name__ == "__main__":
    main()
