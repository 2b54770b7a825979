"""full_mask and elbo answer log-probabilities agree where they must and are reproducible."""

from __future__ import annotations

from dataclasses import replace

import torch

from harness.evaluation.answer_logprob import score_facts


def _one_token_answer(backbone) -> str:
    for token, _ in sorted(backbone.tokenizer.get_vocab().items(), key=lambda kv: kv[1]):
        if token.startswith("Ġ") and len(token) > 3 and token[1:].isalpha():
            word = token[1:]
            if len(backbone.tokenize_answer(word)) == 1:
                return word
    raise AssertionError("no single-token word in the vocabulary")


def test_elbo_of_a_one_token_answer_equals_full_mask(random_backbone, tiny_corpus):
    word = _one_token_answer(random_backbone)
    facts = [replace(f, answer=word) for f in tiny_corpus["full"][:4]]
    exact = score_facts(random_backbone, facts, estimator="full_mask")
    mc = score_facts(random_backbone, facts, estimator="elbo", mc_samples=8, seed=3)
    assert exact.n_tokens.tolist() == [1, 1, 1, 1]
    # One token: every draw masks it with weight 1, so the estimate has no spread at all.
    tolerance = 3 * mc.stderr + 1e-4
    assert bool(((mc.logp - exact.logp).abs() <= tolerance).all()), (mc.logp, exact.logp)


def test_elbo_is_deterministic_per_seed_with_finite_stderr(random_backbone, tiny_corpus):
    facts = tiny_corpus["full"][:5]
    first = score_facts(random_backbone, facts, estimator="elbo", mc_samples=6, seed=11)
    again = score_facts(random_backbone, facts, estimator="elbo", mc_samples=6, seed=11)
    other = score_facts(random_backbone, facts, estimator="elbo", mc_samples=6, seed=12)
    assert torch.equal(first.logp, again.logp)
    assert not torch.equal(first.logp, other.logp)
    assert bool(torch.isfinite(first.stderr).all()) and bool((first.stderr > 0).all())
    assert bool((first.logp < 0).all())
    # Multi-token answers: the estimate is of the same order as the full-mask log-prob.
    full = score_facts(random_backbone, facts, estimator="full_mask")
    assert bool((first.n_tokens > 1).all())
    assert bool(((first.logp - full.logp).abs() < 0.5 * full.logp.abs()).all())


def test_a_facts_score_does_not_depend_on_its_batch(random_backbone, tiny_corpus):
    """Padding is attended, so each row is padded to its own width (batching.row_width):
    batch size and the order of the list must not change any fact's log-probability."""
    facts = tiny_corpus["full"][:24]
    lengths = {len(f.question) + len(f.answer) for f in facts}
    assert len(lengths) > 4  # rows of many widths share batches below
    together = score_facts(random_backbone, facts, batch_size=32).logp
    alone = score_facts(random_backbone, facts, batch_size=1).logp
    reversed_ = score_facts(random_backbone, facts[::-1], batch_size=5).logp.flip(0)
    assert torch.allclose(together, alone, atol=1e-4, rtol=0), (together - alone).abs().max()
    assert torch.allclose(together, reversed_, atol=1e-4, rtol=0)


def test_an_elbo_estimate_does_not_depend_on_the_list(random_backbone, tiny_corpus):
    """Each fact draws from its own stream: alone, or after other facts, same estimate."""
    facts = tiny_corpus["full"][:6]
    together = score_facts(random_backbone, facts, estimator="elbo", mc_samples=4, seed=5)
    alone = score_facts(random_backbone, facts[-1:], estimator="elbo", mc_samples=4, seed=5)
    assert torch.allclose(together.logp[-1:], alone.logp, atol=1e-4, rtol=0)
    assert torch.allclose(together.stderr[-1:], alone.stderr, atol=1e-4, rtol=0)
