"""The producer half of scree's trainer-to-inference example.

A tiny Llama with random weights (built from a config: nothing is
downloaded) runs on random token batches of uneven lengths. Each step packs
its last hidden states with ``scree.bridges.from_hf_padded`` (the padding is
dropped) and puts them into screed as batch ``steps/N``, shaped (tokens,
heads, head_dim) so that the worker can run attention on them. The trainer
may exit at once: the daemon owns what it put.

    python examples/hf_pipeline/trainer.py --steps 20 [--device cuda] [--socket PATH]
"""

from __future__ import annotations

import argparse
import os
import time

import torch
from transformers import AutoModel, LlamaConfig

import scree
from scree import bridges

# Small enough for a CPU in CI; heads * head_dim is the hidden size.
HEADS, HEAD_DIM = 4, 16


def tiny_model(device: str) -> torch.nn.Module:
    config = LlamaConfig(vocab_size=256, hidden_size=HEADS * HEAD_DIM, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=HEADS,
                         num_key_value_heads=2, max_position_embeddings=256)
    torch.manual_seed(0)
    return AutoModel.from_config(config).to(device).eval()


def random_batch(gen: torch.Generator, batch: int, max_len: int, device: str):
    """Token ids and HF's attention mask (right padding) of uneven lengths."""
    lengths = torch.randint(1, max_len + 1, (batch,), generator=gen)
    ids = torch.randint(0, 256, (batch, max_len), generator=gen)
    mask = (torch.arange(max_len)[None, :] < lengths[:, None]).long()
    return ids.to(device), mask.to(device)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--socket", default=None, help="screed's socket (default: $SCREE_SOCKET)")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--max-len", type=int, default=48)
    p.add_argument("--prefix", default="steps/")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args(argv)

    model = tiny_model(args.device)
    gen = torch.Generator().manual_seed(1)
    with scree.Client(args.socket) as client:
        # The daemon's attention takes float32 on host memory and bfloat16 or
        # float16 on the GPU: store what the worker's attention will read.
        dtype = torch.float32 if client.info.backend == "host" else torch.bfloat16
        t0 = time.perf_counter()
        tokens = 0
        for step in range(args.steps):
            ids, mask = random_batch(gen, args.batch, args.max_len, args.device)
            with torch.no_grad():
                hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state
            B, S, _ = hidden.shape
            heads = hidden.to(dtype).reshape(B, S, HEADS, HEAD_DIM)
            packed = bridges.from_hf_padded(heads, mask)     # (tokens, HEADS, HEAD_DIM)
            client.put(f"{args.prefix}{step}", packed)
            tokens += packed.total_length
        dt = time.perf_counter() - t0
    print(f"trainer: put {args.steps} steps ({tokens} tokens, {dtype}) under "
          f"{args.prefix!r} in {dt:.2f} s (pid {os.getpid()})", flush=True)


if __name__ == "__main__":
    main()
