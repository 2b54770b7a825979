"""Denoising levels and time weights."""

from __future__ import annotations

import pytest
import torch

from harness.diffusion.batching import collate, encode_facts
from harness.timerome.config import TimeROMEConfig
from harness.timerome.levels import mask_at_level, n_masked, reveal_orders, time_weights


def test_time_weights_normalised_and_increasing_toward_late_steps():
    w = time_weights((1.0, 0.75, 0.5, 0.25))
    assert float(w.sum()) == pytest.approx(1.0)
    assert torch.all(w[1:] > w[:-1])
    assert torch.allclose(w, torch.tensor([0.25, 0.5, 0.75, 1.0], dtype=torch.float64) / 2.5)


def test_masks_nested_and_sized(tiny_backbone, tiny_corpus):
    batch = collate(tiny_backbone, encode_facts(tiny_backbone, tiny_corpus))
    orders = reveal_orders(batch, seed=3)
    prev = None
    for t in (1.0, 0.75, 0.5, 0.25):
        ids, still = mask_at_level(batch, orders, t, tiny_backbone.mask_token_id)
        assert torch.equal(still.sum(1), torch.tensor([n_masked(t, int(n))
                                                       for n in batch.answer_lengths]))
        assert not torch.any(still & ~batch.answer_mask)
        assert torch.all(ids[still] == tiny_backbone.mask_token_id)
        if prev is not None:
            assert not torch.any(still & ~prev)  # later levels mask a subset
        prev = still
    again = reveal_orders(batch, seed=3)
    assert all(torch.equal(a, b) for a, b in zip(orders, again))


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="unknown target 'erase'"):
        TimeROMEConfig(target="erase")
    with pytest.raises(ValueError, match="q must lie in"):
        TimeROMEConfig(q=0.0)
    with pytest.raises(ValueError, match="unknown span_anchor 'window'; known: subject, span") \
            as info:
        TimeROMEConfig(span_anchor="window")
    assert info.value.key == "span_anchor"
    with pytest.raises(ValueError, match="unknown TimeROMEConfig key"):
        TimeROMEConfig.from_dict({"alpha": 1.0, "lamda": 2.0})
