"""Random remasking in the sampler (`sample_answers(..., remasking="random")`): the order in
which positions are unmasked is random (seeded), not by confidence."""

from __future__ import annotations

import pytest
import torch

from harness.diffusion.sampling import sample_answers
from harness.hooks import forward_hook

GEN = 8


def step_stamping_hook(backbone, base: int):
    """Logits that predict, at every position, token `base + (masks left in the row)`, more
    confidently the further right the position: each kept position records the step it was
    unmasked at, and low-confidence remasking fills the canvas right to left."""
    mask = backbone.mask_token_id

    def hook(_module, args, output):
        ids = args[0]
        out = torch.full_like(output, -10.0)
        positions = torch.arange(ids.shape[1], dtype=output.dtype)
        for r in range(ids.shape[0]):
            left = int((ids[r] == mask).sum())
            out[r, :, base + left] = 5.0 + 0.01 * positions
        return out

    return hook


def stamps(backbone, facts, base, **kw):
    with forward_hook(backbone.model, step_stamping_hook(backbone, base)):
        out = sample_answers(backbone, facts, gen_length=GEN, steps=GEN, **kw)
    return [[t - base for t in ids] for ids in out.token_ids]


def test_random_remasking_unmasks_in_a_seeded_random_order(random_backbone, tiny_corpus):
    base = 100
    special = {random_backbone.mask_token_id, random_backbone.eos_token_id}
    assert not special & set(range(base, base + GEN + 1))
    facts = tiny_corpus["full"][:3]
    confident = stamps(random_backbone, facts, base)
    # low confidence: the rightmost (most confident) position first, so step k fills
    # position GEN - k and the stamps read 1..GEN left to right
    assert confident == [list(range(1, GEN + 1))] * 3
    shuffled = stamps(random_backbone, facts, base, remasking="random", seed=1)
    assert all(sorted(row) == list(range(1, GEN + 1)) for row in shuffled)  # each step one
    assert all(row != list(range(1, GEN + 1)) for row in shuffled)  # not by confidence
    assert shuffled == stamps(random_backbone, facts, base, remasking="random", seed=1)
    assert shuffled != stamps(random_backbone, facts, base, remasking="random", seed=2)


def test_unknown_remasking_is_refused(random_backbone, tiny_corpus):
    with pytest.raises(ValueError, match="unknown remasking 'confident'; known: "
                                         "low_confidence, random"):
        sample_answers(random_backbone, tiny_corpus["full"][:1], remasking="confident")
