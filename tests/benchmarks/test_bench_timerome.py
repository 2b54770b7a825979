"""TimeROME benchmarks (pytest-benchmark; the normal suite runs them once, --benchmark-disable).

- tracing throughput (sequences forwarded per second during TIE tracing) next to plain
  batched inference at the same batch shape (rows x width);
- scoring with a 400-fact edit memory hooked in, next to scoring without it.
Run: pytest tests/benchmarks/test_bench_timerome.py --benchmark-only
The ratios are written to each benchmark's extra_info (no timing assertions here).
"""

from __future__ import annotations

import pytest
import torch

from harness.backbones.base import BackboneSpec
from harness.backbones.registry import adapter_class
from harness.data import load_corpus, write_synthetic
from harness.diffusion.batching import collate, encode_facts
from harness.diffusion.scoring import score_facts
from harness.timerome.config import TimeROMEConfig
from harness.timerome.memory import EditMemory
from harness.timerome.tracing import trace_encoded

TRACE_CONFIG = TimeROMEConfig(times=(1.0, 0.5), noise_samples=4, trace_batch_rows=64,
                              fact_batch=8)


@pytest.fixture(scope="module")
def bench_setup(tmp_path_factory):
    """The embedded default backbone size ("small") with a corpus tokenizer, random weights
    (throughput does not depend on what the weights know)."""
    directory = write_synthetic(tmp_path_factory.mktemp("bench_timerome"), authors=20,
                                facts_per_author=5, seed=2)
    facts = load_corpus(directory, ["full"])["full"]
    spec = BackboneSpec(name="bench-small", adapter="embedded-llada",
                        options={"size": "small", "vocab_size": 1024})
    backbone = adapter_class("embedded-llada").initial(
        spec, [f"{f.question} {f.answer}" for f in facts], seed=0)
    return backbone, facts


def test_bench_tracing_throughput(benchmark, bench_setup):
    backbone, facts = bench_setup
    encoded = encode_facts(backbone, facts[:8])
    result = benchmark.pedantic(trace_encoded, args=(backbone, encoded, TRACE_CONFIG),
                                rounds=2, iterations=1)
    benchmark.extra_info["forwards"] = result.forwards
    benchmark.extra_info["rows_per_forward"] = TRACE_CONFIG.trace_batch_rows
    benchmark.extra_info["width"] = int(collate(backbone, encoded).input_ids.shape[1])
    assert result.forwards > 0


def test_bench_plain_inference_same_shape(benchmark, bench_setup):
    backbone, facts = bench_setup
    batch = collate(backbone, encode_facts(backbone, facts[:8]))
    rows = TRACE_CONFIG.trace_batch_rows
    ids = batch.input_ids.repeat(rows // len(batch) + 1, 1)[:rows]

    def plain():
        with torch.inference_mode():
            return backbone.logits(ids)

    out = benchmark.pedantic(plain, rounds=5, iterations=1, warmup_rounds=1)
    benchmark.extra_info["rows_per_forward"] = rows
    benchmark.extra_info["width"] = int(ids.shape[1])
    assert out.shape[0] == rows


def _memory(backbone, n_facts: int) -> EditMemory:
    gen = torch.Generator().manual_seed(0)
    memory = EditMemory(TimeROMEConfig(alpha=1.0), backbone.identity())
    per_layer = n_facts // backbone.num_layers
    for layer in range(backbone.num_layers):
        proj = backbone.mlp_out_proj(layer)
        memory.insert(layer, torch.randn((per_layer, proj.in_features), generator=gen),
                      0.01 * torch.randn((per_layer, proj.out_features), generator=gen),
                      [f"l{layer}f{i}" for i in range(per_layer)])
    return memory


@pytest.mark.parametrize("n_facts", [0, 400])
def test_bench_scoring_with_memory(benchmark, bench_setup, n_facts):
    backbone, facts = bench_setup
    memory = _memory(backbone, n_facts) if n_facts else None
    if memory is not None:
        memory.attach(backbone)
    try:
        scores = benchmark.pedantic(score_facts, args=(backbone, facts), rounds=5, iterations=1,
                                    warmup_rounds=1)
    finally:
        if memory is not None:
            memory.detach()
    benchmark.extra_info["memory_facts"] = n_facts
    assert len(scores.logp) == len(facts)
