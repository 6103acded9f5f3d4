"""Run the tests from a source tree: import scree from client/python."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "client" / "python"))

# Never reach the network from a test (transformers, huggingface_hub).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402

# Without a GPU the Triton kernels can only run in Triton's interpreter, which
# must be chosen before scree.kernels.triton is first imported.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


import pytest  # noqa: E402


def _tiny_configs():
    from transformers import BertConfig, LlamaConfig

    common = dict(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                  intermediate_size=64, max_position_embeddings=64)
    return BertConfig(**common), LlamaConfig(num_key_value_heads=2, **common)


@pytest.fixture(scope="session")
def tiny_models():
    """A tiny BERT (bidirectional) and a tiny Llama (causal, GQA) with random
    weights, built from configs: nothing is downloaded."""
    from transformers import BertModel, LlamaModel

    bert_config, llama_config = _tiny_configs()
    torch.manual_seed(0)
    return BertModel(bert_config).eval(), LlamaModel(llama_config).eval()
