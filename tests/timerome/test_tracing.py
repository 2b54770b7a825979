"""TIE tracing: batched restorations, determinism, flagging of corruption-invariant facts."""

from __future__ import annotations

import torch

from harness.diffusion.batching import encode_facts
from harness.timerome.config import TimeROMEConfig
from harness.timerome.editor import TimeROMEEditor
from harness.timerome.tracing import trace_facts

from tests.timerome.unbatched_trace import UnbatchedTrace

# Tracing needs no retain facts: the retain-based extras are off, and tests that do not name
# the candidate positions trace the last subject token (the position the checks below assume).
FAST = dict(times=(1.0, 0.5), noise_samples=2, precondition="none", gate=False,
            tie_facts=None)  # the TIE of every fact
LAST = dict(positions="last_subject")


def test_trace_shapes_and_subject_matters(tiny_backbone, forget_retain):
    forget, _ = forget_retain
    trace = trace_facts(tiny_backbone, forget, TimeROMEConfig(positions="subject", **FAST))
    n_layers = tiny_backbone.num_layers
    assert trace.ie.shape == (len(forget), 2, n_layers, len(trace.offsets))
    assert trace.offsets[-1] == 0
    # the fitted model needs the subject: corrupting it costs log-probability
    assert float(trace.corruption_effect.mean()) > 0.05
    # A 2-layer twin localises some facts and not others (issue 13): at least one fact is
    # located, and flagging follows the threshold exactly.
    located = ~trace.flagged
    assert bool(located.any())
    assert torch.all(trace.max_tie[located] >= TimeROMEConfig().flag_threshold)
    assert torch.all(trace.max_tie[located] > 0)
    chosen = trace.position
    for i, enc in enumerate(encode_facts(tiny_backbone, forget)):
        if located[i]:
            assert int(chosen[i]) in enc.subject_positions


def test_batched_restoration_matches_single_forward(tiny_backbone, forget_retain):
    """IE of one (layer, position) recomputed with one unbatched forward per variant."""
    forget, _ = forget_retain
    config = TimeROMEConfig(times=(0.5,), noise_samples=1, trace_batch_rows=3, tie_facts=None,
                            **LAST)
    trace = trace_facts(tiny_backbone, forget[:2], config)
    # The fact with the strongest effect, alone, at its own width (batching.row_width)
    fact = int(torch.nan_to_num(trace.max_tie, nan=-1.0).argmax())
    reference = UnbatchedTrace(tiny_backbone, forget[fact], config, level=0.5)
    layer = int(trace.layer[fact])  # the layer the trace chose: a real effect
    expected = reference.effect(layer, [reference.last])
    # A 2-layer twin's effects are small (issue 13): compare relative to the effect itself.
    assert abs(float(trace.ie[fact, 0, layer, 0]) - expected) < 1e-6 + 0.01 * abs(expected)
    assert abs(expected) > 1e-5  # a real effect, not 0 == 0


def test_every_restored_effect_matches_an_unbatched_full_forward(tiny_backbone, forget_retain):
    """Restored runs start at the restored layer (the blocks before it return the plain
    corrupted run's output); every IE, at every layer and subject position, must equal the
    one of a full, unbatched forward that patches that coordinate."""
    forget, _ = forget_retain
    config = TimeROMEConfig(times=(0.5,), noise_samples=2, positions="subject",
                            trace_batch_rows=5, tie_facts=None)
    bb = tiny_backbone
    trace = trace_facts(bb, forget[:1], config)
    reference = UnbatchedTrace(bb, forget[0], config, level=0.5)
    checked = 0
    for k, offset in enumerate(trace.offsets):
        if not bool(trace.valid[0, k]):
            continue
        for layer in range(bb.num_layers):
            expected = reference.effect(layer, [reference.last + offset])
            got = float(trace.ie[0, 0, layer, k])
            assert abs(got - expected) < 1e-5 + 1e-3 * abs(expected), (layer, offset)
            checked += 1
    assert checked >= 2 * bb.num_layers  # two or more subject positions, every layer


def test_trace_is_deterministic_under_seed(tiny_backbone, forget_retain):
    forget, _ = forget_retain
    a = trace_facts(tiny_backbone, forget, TimeROMEConfig(seed=5, **FAST, **LAST))
    b = trace_facts(tiny_backbone, forget, TimeROMEConfig(seed=5, **FAST, **LAST))
    c = trace_facts(tiny_backbone, forget, TimeROMEConfig(seed=6, **FAST, **LAST))
    assert torch.equal(a.ie, b.ie) and torch.equal(a.keys, b.keys)
    assert torch.equal(a.corrupt_out, b.corrupt_out)
    assert not torch.equal(a.ie, c.ie)


def test_corruption_invariant_fact_is_reported_not_edited(tiny_backbone, forget_retain):
    forget, _ = forget_retain
    editor = TimeROMEEditor(tiny_backbone, TimeROMEConfig(noise_multiplier=0.0, **FAST, **LAST))
    _, report = editor.edit(forget)
    assert report.n_edited == 0
    assert editor.memory.n_facts == 0
    assert {row["fact"] for row in report.flagged} == {f.key for f in forget}
    assert all(not row["edited"] and row["kind"] == "invariant" and "invariant" in row["reason"]
               for row in report.flagged)
    assert all(row["tie"] is not None and abs(row["tie"]) < 1e-6
               for row in report.flagged)


def test_fact_that_needs_its_subject_but_has_no_single_restoring_coordinate_is_distributed(
        tiny_backbone, forget_retain):
    """Flagged with a threshold between a fact's max TIE and its corruption effect: the
    report must not call its answer invariant to the subject."""
    forget, _ = forget_retain
    trace = trace_facts(tiny_backbone, forget, TimeROMEConfig(**FAST, **LAST))
    effect = trace.corruption_effect.mean(1)
    between = (trace.max_tie < 0.5 * effect) & (effect > 0)
    assert bool(between.any())
    i = int(between.nonzero()[0])
    threshold = float(0.5 * (trace.max_tie[i] + effect[i]))
    config = TimeROMEConfig(flag_threshold=threshold, **FAST, **LAST)
    _, report = TimeROMEEditor(tiny_backbone, config).edit([forget[i]])
    (row,) = report.flagged
    assert row["kind"] == "distributed" and "invariant" not in row["reason"]
    assert f"{float(effect[i]):.3g} nats" in row["reason"]


def test_a_facts_trace_does_not_depend_on_the_facts_traced_with_it(tiny_backbone, forget_retain):
    forget, _ = forget_retain
    config = TimeROMEConfig(positions="subject", **FAST)
    together = trace_facts(tiny_backbone, forget, config)
    # The shortest fact: traced with the others, it used to be padded to the longest one.
    i = min(range(len(forget)), key=lambda k: len(forget[k].question) + len(forget[k].answer))
    alone = trace_facts(tiny_backbone, [forget[i]], config)
    assert together.fact_keys[i] == alone.fact_keys[0]
    n = alone.ie.shape[-1]  # the longest subject of the list sets how many offsets are traced
    assert torch.allclose(together.ie[i, ..., -n:], alone.ie[0], atol=1e-4, equal_nan=True)
    assert torch.allclose(together.corruption_effect[i], alone.corruption_effect[0], atol=1e-4)


def test_tie_summary_numbers_follow_the_trace(tiny_backbone, forget_retain):
    from harness.timerome.tie_summary import summarize_trace

    forget, _ = forget_retain
    trace = trace_facts(tiny_backbone, forget, TimeROMEConfig(positions="subject", **FAST))
    summary = summarize_trace(trace)
    assert summary.n_facts == len(forget) and summary.n_layers == tiny_backbone.num_layers
    assert abs(summary.corruption_effect - float(trace.corruption_effect.mean())) < 1e-6
    assert summary.flagged_fraction == float(trace.flagged.float().mean())
    below_last = trace.tie[:, :-1]
    assert summary.median_abs_tie == float(below_last[~torch.isnan(below_last)].abs().median())
    # The last layer's restorations at prompt positions cannot reach the answer: exactly 0.
    last = trace.tie[:, -1]
    assert float(last[~torch.isnan(last)].abs().max()) == 0.0
    if summary.median_abs_tie > 0:
        assert summary.located_ratio == summary.chosen_tie / summary.median_abs_tie
    else:  # nothing to stand out from: no ratio, and the bar is not met
        assert summary.located_ratio is None and not summary.meets_bars()["located_ratio"]
    record = summary.as_record()
    assert set(record["meets_bars"]) == {"corruption_effect", "located_ratio", "flagged_fraction"}


def test_subject_noise_is_each_facts_own_seeded_draw_at_its_subject_tokens_only(
        tiny_backbone, forget_retain):
    from harness.diffusion.batching import batches, encode_facts
    from harness.diffusion.seeding import fact_generator
    from harness.timerome.tracing import subject_noise
    forget, retain = forget_retain
    _, batch = next(iter(batches(tiny_backbone, encode_facts(tiny_backbone, forget + retain), 64)))
    noise = subject_noise(batch, 3, 8, 2.5, seed=7, dtype=torch.float32)
    assert noise.shape == (len(batch.encoded), 3, batch.input_ids.shape[1], 8)
    for r, enc in enumerate(batch.encoded):
        pos = list(enc.subject_positions)
        others = [p for p in range(batch.input_ids.shape[1]) if p not in pos]
        for s in range(3):
            want = torch.randn((len(pos), 8), generator=fact_generator(7, enc.fact.key,
                                                                       salt=1 + s)) * 2.5
            assert torch.equal(noise[r, s, pos], want), (r, s)
            assert not bool(noise[r, s, others].any())
