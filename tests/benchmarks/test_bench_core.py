"""Throughput of the core diffusion operations on the tiny embedded backbone.

Run with `pytest tests/benchmarks/test_bench_core.py --benchmark-enable`; in the normal
suite (--benchmark-disable) each benchmarked function runs once as a smoke test.
"""

from __future__ import annotations

import torch

from harness.diffusion.batching import collate, encode_facts
from harness.diffusion.loss import sft_loss
from harness.diffusion.sampling import generate
from harness.evaluation.answer_logprob import score_facts


def test_bench_full_mask_scoring(benchmark, random_backbone, tiny_corpus):
    facts = tiny_corpus["full"]
    scores = benchmark(score_facts, random_backbone, facts, estimator="full_mask")
    assert scores.logp.shape == (len(facts),)
    benchmark.extra_info["facts"] = len(facts)


def test_bench_elbo_scoring(benchmark, random_backbone, tiny_corpus):
    facts = tiny_corpus["full"][:16]
    scores = benchmark(score_facts, random_backbone, facts, estimator="elbo", mc_samples=8)
    assert bool(torch.isfinite(scores.stderr).all())
    benchmark.extra_info.update(facts=len(facts), mc_samples=8)


def test_bench_greedy_generation(benchmark, random_backbone, tiny_corpus):
    facts = tiny_corpus["full"][:16]
    texts = benchmark(generate, random_backbone, facts)
    assert len(texts) == len(facts)


def test_bench_sft_loss_forward_backward(benchmark, random_backbone, tiny_corpus):
    batch = collate(random_backbone, encode_facts(random_backbone, tiny_corpus["full"][:16]))
    gen = torch.Generator().manual_seed(0)

    def step() -> float:
        loss = sft_loss(random_backbone, batch, gen).mean()
        loss.backward()
        random_backbone.model.zero_grad(set_to_none=True)
        return float(loss.detach())

    assert benchmark(step) > 0
