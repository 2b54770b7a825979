"""The masked-diffusion SFT loss: masking draw, finiteness, determinism, learnability."""

from __future__ import annotations

import copy

import pytest
import torch

from harness.diffusion.batching import collate, encode_facts
from harness.diffusion.loss import answer_nll_estimate, sample_masking, sft_loss


@pytest.fixture
def batch(random_backbone, tiny_corpus):
    return collate(random_backbone, encode_facts(random_backbone, tiny_corpus["full"][:8]))


def test_masking_stays_on_targets_and_masks_at_least_one(batch):
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        # eps tiny and t near 0 for some rows: the >= 1 rule must kick in.
        draw = sample_masking(batch.input_ids, batch.target_mask, 0, gen, eps=1e-6)
        assert bool((draw.masked.sum(1) >= 1).all())
        assert not bool((draw.masked & ~batch.target_mask).any())
        assert bool((draw.input_ids[draw.masked] == 0).all())
        assert torch.equal(draw.input_ids[~draw.masked], batch.input_ids[~draw.masked])
        assert bool(((draw.t > 0) & (draw.t <= 1)).all())


def test_masking_rejects_rows_without_targets(batch):
    empty = batch.target_mask.clone()
    empty[2] = False
    with pytest.raises(ValueError, match=r"rows \[2\] have no target token"):
        sample_masking(batch.input_ids, empty, 0, torch.Generator(), eps=1e-3)


def test_loss_is_finite_per_row_and_deterministic(random_backbone, batch):
    a = sft_loss(random_backbone, batch, torch.Generator().manual_seed(5))
    b = sft_loss(random_backbone, batch, torch.Generator().manual_seed(5))
    assert a.shape == (len(batch),) and a.requires_grad
    assert bool(torch.isfinite(a).all()) and bool((a > 0).all())
    assert torch.equal(a, b)
    # A random model's per-token cross-entropy is near log(V); the 1/t-weighted, target-
    # normalised loss has expectation exactly the mean per-token CE.
    log_v = torch.log(torch.tensor(float(len(random_backbone.tokenizer))))
    draws = torch.stack([sft_loss(random_backbone, batch, torch.Generator().manual_seed(s))
                         for s in range(8)]).detach()
    assert abs(float(draws.mean()) - float(log_v)) < 0.35 * float(log_v)


def test_answer_nll_estimate_sums_answer_tokens(random_backbone, batch):
    est = answer_nll_estimate(random_backbone, batch, torch.Generator().manual_seed(1))
    assert est.shape == (len(batch),) and bool(torch.isfinite(est).all())
    # Unnormalised: scales with answer length (about log V per answer token).
    per_token = est.detach() / batch.answer_lengths
    log_v = float(torch.log(torch.tensor(float(len(random_backbone.tokenizer)))))
    assert 0.3 * log_v < float(per_token.mean()) < 3 * log_v


def test_loss_decreases_when_training_on_a_fixed_batch(random_backbone, batch):
    backbone = copy.deepcopy(random_backbone)
    backbone.model.train()
    opt = torch.optim.AdamW(backbone.model.parameters(), lr=3e-3)

    def fixed_loss() -> float:
        with torch.no_grad():
            return float(sft_loss(backbone, batch, torch.Generator().manual_seed(0)).mean())

    before = fixed_loss()
    gen = torch.Generator().manual_seed(1)
    for _ in range(15):
        opt.zero_grad()
        sft_loss(backbone, batch, gen).mean().backward()
        opt.step()
    after = fixed_loss()
    assert after < before - 0.5, (before, after)
