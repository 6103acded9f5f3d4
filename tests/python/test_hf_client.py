"""HF hidden states through a live screed, across processes.

One process runs a tiny BERT (random weights from a config: nothing is
downloaded), packs its padded hidden states with bridges.from_hf_padded and
puts them into screed. ANOTHER process gets the batch (zero-copy numpy views
of the daemon's memory), unpacks it with bridges.to_hf_padded and feeds it as
inputs_embeds into a tiny Llama whose weights it loads from this process.
Its outputs must equal the unpacked path (the original padded hidden states
fed straight into the same Llama) on every real token."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import torch

import scree
from scree import bridges

HERE = Path(__file__).resolve().parent
LENGTHS = [9, 5, 2, 7]

CONSUMER = r"""
import sys
import conftest  # the same scree as the test process
import numpy as np, torch, scree
from scree import bridges
from transformers import LlamaModel

_, llama_config = conftest._tiny_configs()
llama = LlamaModel(llama_config).eval()
llama.load_state_dict(torch.load(sys.argv[1]))
with scree.Client() as client, client.get("hf/hidden", framework="torch") as arr:
    info = client.stat("hf/hidden")
    assert info.leases == 1 and info.owner_pid != 0
    assert arr.values.data_ptr() == arr.address  # the daemon's memory, no copy
    hidden, mask = bridges.to_hf_padded(arr)
    offsets = arr.host_offsets.tolist()
    with torch.no_grad():
        out = llama(inputs_embeds=hidden, attention_mask=mask).last_hidden_state
torch.save({"out": out, "mask": mask, "offsets": offsets}, sys.argv[2])
"""


@torch.no_grad()
def test_hf_hidden_states_through_screed_to_another_process(tiny_models, client, screed,
                                                            tmp_path):
    bert, llama = tiny_models
    g = torch.Generator().manual_seed(3)
    width = max(LENGTHS) + 2
    ids = torch.randint(1, 100, (len(LENGTHS), width), generator=g)
    mask = torch.zeros(len(LENGTHS), width, dtype=torch.int64)
    for i, n in enumerate(LENGTHS):
        mask[i, :n] = 1
    hidden = bert(input_ids=ids, attention_mask=mask).last_hidden_state

    arr = bridges.from_hf_padded(hidden, mask)
    client.put("hf/hidden", arr)
    assert client.stat("hf/hidden").total_length == sum(LENGTHS)

    torch.save(llama.state_dict(), tmp_path / "llama.pt")
    done = subprocess.run(
        [sys.executable, "-c", CONSUMER, str(tmp_path / "llama.pt"), str(tmp_path / "out.pt")],
        cwd=HERE, env=dict(os.environ, SCREE_SOCKET=screed.socket), capture_output=True,
        text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    got = torch.load(tmp_path / "out.pt")

    # The consumer saw the packed layout and rebuilt the mask of real tokens.
    assert got["offsets"] == [0, 9, 14, 16, 23]
    assert torch.equal(got["mask"], mask[:, :max(LENGTHS)])
    # The unpacked path: the padded hidden states straight into the same model.
    want = llama(inputs_embeds=hidden, attention_mask=mask).last_hidden_state
    for i, n in enumerate(LENGTHS):
        torch.testing.assert_close(got["out"][i, :n], want[i, :n], atol=1e-5, rtol=1e-5)
    # The consumer's lease went with its process (the daemon sees the hangup
    # asynchronously).
    deadline = time.monotonic() + 10
    while client.stat("hf/hidden").leases and time.monotonic() < deadline:
        time.sleep(0.005)
    assert client.stat("hf/hidden").leases == 0
