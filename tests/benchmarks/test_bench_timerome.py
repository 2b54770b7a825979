"""TimeROME benchmarks (pytest-benchmark; the normal suite runs them once, --benchmark-disable).

- tracing throughput (sequences forwarded per second during TIE tracing) next to plain
  batched inference at the same batch shape (rows x width);
- scoring with a 400-fact edit memory hooked in, next to scoring without it, for each
  embedded size (tiny is the default backbone) and hook path (linear: the method's default,
  no gate, folded into the float32 layer's own matmul; gated: the project's default key
  gate). The linear hook adds no multiply-adds per token on a float32 backbone (elsewhere
  min(n (d_k + d_v), d_k d_v) per hooked layer); the gate costs n d_k, a share that falls
  with model size.
Run: pytest tests/benchmarks/test_bench_timerome.py --benchmark-only
The ratios are written to each benchmark's extra_info (no timing assertions here);
`--benchmark-json F` keeps them, `--benchmark-group-by=param:size` lays them side by side.
"""

from __future__ import annotations

import statistics
import time

import pytest
import torch

from harness.backbones.base import BackboneSpec
from harness.backbones.registry import adapter_class
from harness.data import load_corpus, write_synthetic
from harness.diffusion.batching import collate, encode_facts
from harness.evaluation.answer_logprob import score_facts
from harness.timerome.config import TimeROMEConfig
from harness.timerome.memory import EditMemory
from harness.timerome.retain_stats import retain_keys
from harness.timerome.tracing import trace_encoded

TRACE_CONFIG = TimeROMEConfig(times=(1.0, 0.5), noise_samples=4, trace_batch_rows=64,
                              fact_batch=8, tie_facts=None)


@pytest.fixture(scope="module")
def bench_setup(tmp_path_factory):
    """The embedded default backbone size ("small") with a corpus tokenizer, random weights
    (throughput does not depend on what the weights know)."""
    directory = write_synthetic(tmp_path_factory.mktemp("bench_timerome"), authors=20,
                                facts_per_author=5, seed=2, answer_style="restated")
    facts = load_corpus(directory, ["full"])["full"]
    spec = BackboneSpec(name="bench-small", adapter="llada-twin",
                        options={"size": "small", "vocab_size": 1024})
    backbone = adapter_class("llada-twin").initial(
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


HOOK_PATHS = {"none": None,
              # random keys, no retain covariance: identity metric on both paths
              "linear": TimeROMEConfig(alpha=1.0, precondition="none", gate=False),  # W = A B^T
              "gated": TimeROMEConfig(alpha=1.0, precondition="none", gate=True)}  # per-fact gate


@pytest.fixture(scope="module")
def hook_setups(tmp_path_factory):
    """{size: (backbone, scored facts, key facts, gate reference facts)}: random-weight
    embedded backbones of each named size sharing one corpus tokenizer."""
    directory = write_synthetic(tmp_path_factory.mktemp("bench_hook"), authors=60,
                                facts_per_author=5, seed=3, answer_style="restated")
    facts = load_corpus(directory, ["full"])["full"]
    texts = [f"{f.question} {f.answer}" for f in facts]
    setups, adapter = {}, adapter_class("llada-twin")
    for size in ("tiny", "small", "base"):
        spec = BackboneSpec(name=f"bench-{size}", adapter="llada-twin",
                            options={"size": size, "vocab_size": 2048})
        setups[size] = (adapter.initial(spec, texts, seed=0), facts[:100], facts[100:200],
                        facts[200:])
    return setups


def _memory(backbone, config: TimeROMEConfig, key_facts, reference_facts,
            n_facts: int = 400) -> EditMemory:
    """n_facts facts spread round-robin over the layers, keys taken from the model's own
    hidden states on other text (so the gate opens about as often as on real keys)."""
    layers = list(range(backbone.num_layers))
    keys = retain_keys(backbone, key_facts, layers, max_rows=n_facts)
    reference = retain_keys(backbone, reference_facts, layers) if config.gate else {}
    memory = EditMemory(config, backbone.identity(), gate_reference=reference)
    gen = torch.Generator().manual_seed(0)
    for layer in layers:
        count = len(range(layer, n_facts, len(layers)))
        d_v = backbone.mlp_out_proj(layer).out_features
        memory.insert(layer, keys[layer][:count], 0.01 * torch.randn((count, d_v), generator=gen),
                      [f"l{layer}f{i}" for i in range(count)])
    return memory


@pytest.mark.parametrize("path", list(HOOK_PATHS))
@pytest.mark.parametrize("size", ["tiny", "small", "base"])
def test_bench_scoring_with_memory(benchmark, hook_setups, size, path):
    """Scoring 100 facts with a 400-fact memory hooked in ("none": no memory). extra_info
    holds the overhead: the median hooked/plain time ratio over interleaved pairs, minus 1."""
    backbone, scored, key_facts, reference_facts = hook_setups[size]
    config = HOOK_PATHS[path]
    memory = None if config is None else _memory(backbone, config, key_facts, reference_facts)

    def timed() -> float:
        start = time.perf_counter()
        score_facts(backbone, scored)
        return time.perf_counter() - start

    if memory is not None:
        memory.attach(backbone)
        benchmark.extra_info["hook_paths"] = {str(l): memory.hook_path(l) for l in memory.factors}
    try:
        scores = benchmark.pedantic(score_facts, args=(backbone, scored), rounds=7,
                                    iterations=1, warmup_rounds=1)
    finally:
        if memory is not None:
            memory.detach()
    benchmark.extra_info.update(size=size, hook_path=path, scored_facts=len(scored),
                                memory_facts=0 if memory is None else memory.n_facts)
    if memory is not None and benchmark.enabled:
        # Interleaved pairs (plain, hooked): the ratio is robust to drifting machine load.
        ratios = []
        for _ in range(9):
            plain = timed()
            memory.attach(backbone)
            try:
                ratios.append(timed() / plain)
            finally:
                memory.detach()
        benchmark.extra_info.update(overhead=statistics.median(ratios) - 1.0,
                                    overhead_pairs=len(ratios))
    assert len(scores.logp) == len(scored)
    if memory is not None:
        assert memory.n_facts == 400
