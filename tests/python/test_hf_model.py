"""The HF bridge between two real (tiny, random, offline) transformers models:
hidden states from one model, packed and unpacked by scree, fed to another as
inputs_embeds, must give the same outputs on every real token as feeding the
original padded hidden states."""

from __future__ import annotations

import os

import torch

from scree import bridges

os.environ["HF_HUB_OFFLINE"] = "1"

LENGTHS = [9, 5, 2, 7]


def batch(lengths, width, left=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 100, (len(lengths), width), generator=g)
    mask = torch.zeros(len(lengths), width, dtype=torch.int64)
    for i, n in enumerate(lengths):
        if left:
            mask[i, width - n:] = 1
        else:
            mask[i, :n] = 1
    return ids, mask


@torch.no_grad()
def test_right_padded_hidden_states_through_scree(tiny_models):
    bert, llama = tiny_models
    # Two columns more than the longest row: the packed round trip drops them.
    ids, mask = batch(LENGTHS, max(LENGTHS) + 2)
    hidden = bert(input_ids=ids, attention_mask=mask).last_hidden_state
    arr = bridges.from_hf_padded(hidden, mask)
    assert arr.values.shape == (sum(LENGTHS), 32)
    assert arr.offsets.tolist() == [0, 9, 14, 16, 23]
    for i, n in enumerate(LENGTHS):
        assert torch.equal(arr[i], hidden[i, :n])

    hs2, mask2 = bridges.to_hf_padded(arr)
    assert hs2.shape == (4, max(LENGTHS), 32) and mask2.dtype == torch.int64
    for model in (bert, llama):
        want = model(inputs_embeds=hidden, attention_mask=mask).last_hidden_state
        got = model(inputs_embeds=hs2, attention_mask=mask2).last_hidden_state
        for i, n in enumerate(LENGTHS):
            torch.testing.assert_close(got[i, :n], want[i, :n], atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_left_padded_generation_batch_through_scree(tiny_models):
    _, llama = tiny_models
    ids, mask = batch(LENGTHS, max(LENGTHS), left=True)
    hidden = llama(input_ids=ids, attention_mask=mask).last_hidden_state
    arr = bridges.from_hf_padded(hidden, mask)  # left padding is detected per row
    for i, n in enumerate(LENGTHS):
        assert torch.equal(arr[i], hidden[i, max(LENGTHS) - n:])
    hs2, mask2 = bridges.to_hf_padded(arr, padding_side="left")
    assert torch.equal(mask2, mask)
    want = llama(inputs_embeds=hidden, attention_mask=mask).last_hidden_state
    got = llama(inputs_embeds=hs2, attention_mask=mask2).last_hidden_state
    real = mask.bool()
    torch.testing.assert_close(got[real], want[real], atol=1e-5, rtol=1e-5)
