"""The one retain-key covariance estimator (`harness.key_covariance`) and its two callers:
TimeROME's preconditioner and ROME/MEMIT's key second moments, each against a direct
computation."""

from __future__ import annotations

import pytest
import torch

from baselines.covariance import key_second_moments
from harness.diffusion.batching import batches, encode_facts
from harness.diffusion.loss import sample_masking
from harness.evaluation.retain_sample import seeded_subset
from harness.key_covariance import KeySecondMoment
from harness.timerome.retain_stats import inverse_covariance, retain_keys


def test_second_moment_of_one_add_is_exactly_h_t_h_over_n():
    keys = torch.randn(37, 5, generator=torch.Generator().manual_seed(0))
    moment = KeySecondMoment()
    moment.add(keys)
    h = keys.double()
    assert torch.equal(moment.value(), h.T @ h / 37)
    assert moment.value().dtype == torch.float64


def test_second_moment_over_batches_matches_all_rows():
    keys = torch.randn(40, 6, generator=torch.Generator().manual_seed(1))
    moment = KeySecondMoment()
    for part in keys.split(7):
        moment.add(part)
    h = keys.double()
    assert moment.count == 40
    assert torch.allclose(moment.value(), h.T @ h / 40, rtol=1e-12, atol=1e-12)


def test_second_moment_without_keys_is_an_error():
    with pytest.raises(ValueError, match="no keys"):
        KeySecondMoment().value()


def test_inverse_covariance_is_the_normalised_shrunk_inverse():
    keys = torch.randn(50, 4, generator=torch.Generator().manual_seed(2))
    h = keys.double()
    cov = h.T @ h / 50
    cov = cov / cov.diagonal().mean() + 0.1 * torch.eye(4, dtype=torch.float64)
    assert torch.allclose(inverse_covariance(keys, 0.1), torch.linalg.inv(cov), rtol=1e-10)


def test_timerome_keys_feed_the_estimator_with_every_prompt_and_answer_position(
        random_backbone, tiny_corpus):
    facts = tiny_corpus["full"][:6]
    keys = retain_keys(random_backbone, facts, [0], max_rows=10 ** 9)[0]
    encoded = encode_facts(random_backbone, facts)
    expected_rows = sum(len(e.prompt_ids) + len(e.answer_ids) for e in encoded)
    assert keys.shape[0] == expected_rows


def test_memit_second_moments_match_a_direct_computation(random_backbone, tiny_corpus):
    backbone, facts, layer, seed = random_backbone, tiny_corpus["full"][:10], 1, 3
    covs, n = key_second_moments(backbone, [layer], facts, max_facts=7, batch_size=4, seed=seed)

    # Direct: the same masked inputs, every key of every non-padding position up to the
    # first EOS, one float64 sum over all of them.
    encoded = encode_facts(backbone, seeded_subset(facts, 7, seed))
    gen = torch.Generator().manual_seed(seed)
    rows = []
    module = backbone.mlp_out_proj(layer)
    for _, batch in batches(backbone, encoded, 4):
        lengths = batch.prompt_lengths + batch.answer_lengths + 1
        positions = torch.arange(batch.input_ids.shape[1])[None] < lengths[:, None]
        first_eos = positions & batch.target_mask & ~batch.answer_mask
        draw = sample_masking(batch.input_ids, batch.answer_mask | first_eos,
                              backbone.mask_token_id, gen)
        seen: list[torch.Tensor] = []
        handle = module.register_forward_hook(lambda m, a, o, seen=seen: seen.append(a[0]))
        try:
            with torch.inference_mode():
                backbone.logits(draw.input_ids.to(backbone.device))
        finally:
            handle.remove()
        rows.append(seen[0][positions.to(backbone.device)])
    h = torch.cat(rows).double()
    assert n == h.shape[0] == sum(len(e.prompt_ids) + len(e.answer_ids) + 1 for e in encoded)
    assert torch.allclose(covs[layer], h.T @ h / n, rtol=1e-10, atol=1e-12)
