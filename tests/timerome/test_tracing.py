"""TIE tracing: batched restorations, determinism, flagging of corruption-invariant facts."""

from __future__ import annotations

import torch

from harness.diffusion.batching import collate, encode_facts, row_width
from harness.timerome.config import TimeROMEConfig
from harness.timerome.editor import TimeROMEEditor
from harness.timerome.levels import mask_at_level, reveal_orders
from harness.timerome.tracing import (masked_mean_logp, noise_scale, subject_noise,
                                      trace_facts)

# Tracing needs no retain facts: the retain-based extras are off, and tests that do not name
# the candidate positions trace the last subject token (the position the checks below assume).
FAST = dict(times=(1.0, 0.5), noise_samples=2, precondition="none", gate=False)
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
    config = TimeROMEConfig(times=(0.5,), noise_samples=1, trace_batch_rows=3, **LAST)
    trace = trace_facts(tiny_backbone, forget[:2], config)
    bb = tiny_backbone
    # The fact with the strongest effect, alone, at its own width (batching.row_width)
    fact = int(torch.nan_to_num(trace.max_tie, nan=-1.0).argmax())
    encoded = encode_facts(bb, forget[:2])[fact]
    batch = collate(bb, [encoded], pad_to=row_width(encoded))
    ids, still = mask_at_level(batch, reveal_orders(batch, config.seed), 0.5, bb.mask_token_id)
    noise = subject_noise(batch, 1, bb.input_embeddings().weight.shape[1],
                          noise_scale(bb, config.noise_multiplier), config.seed, torch.float32)
    layer, row = int(trace.layer[fact]), 0  # the layer the trace chose: a real effect
    pos = int(batch.last_subject_pos[row])
    with torch.inference_mode():
        clean = {}
        h = bb.mlp_out_proj(layer).register_forward_hook(
            lambda m, i, o: clean.setdefault("out", o[0, pos].clone()))
        bb.logits(ids[row:row + 1])
        h.remove()

        def run(patch: bool) -> float:
            hs = [bb.input_embeddings().register_forward_hook(
                lambda m, i, o: o + noise[row:row + 1, 0])]
            if patch:
                def put(m, i, o):
                    o = o.clone()
                    o[0, pos] = clean["out"]
                    return o
                hs.append(bb.mlp_out_proj(layer).register_forward_hook(put))
            try:
                logits = bb.logits(ids[row:row + 1])
            finally:
                for x in hs:
                    x.remove()
            return float(masked_mean_logp(logits[still[row:row + 1]],
                                          batch.input_ids[row:row + 1], still[row:row + 1])[0])

        expected = run(True) - run(False)
    # A 2-layer twin's effects are small (issue 13): compare relative to the effect itself.
    assert abs(float(trace.ie[fact, 0, layer, 0]) - expected) < 1e-6 + 0.01 * abs(expected)
    assert abs(expected) > 1e-5  # a real effect, not 0 == 0


def test_every_restored_effect_matches_an_unbatched_full_forward(tiny_backbone, forget_retain):
    """Restored runs start at the restored layer (the blocks before it return the plain
    corrupted run's output); every IE, at every layer and subject position, must equal the
    one of a full, unbatched forward that patches that coordinate."""
    forget, _ = forget_retain
    config = TimeROMEConfig(times=(0.5,), noise_samples=2, positions="subject",
                            trace_batch_rows=5)
    bb = tiny_backbone
    trace = trace_facts(bb, forget[:1], config)
    encoded = encode_facts(bb, forget[:1])[0]
    batch = collate(bb, [encoded], pad_to=row_width(encoded))
    ids, still = mask_at_level(batch, reveal_orders(batch, config.seed), 0.5, bb.mask_token_id)
    noise = subject_noise(batch, 2, bb.input_embeddings().weight.shape[1],
                          noise_scale(bb, config.noise_multiplier), config.seed, torch.float32)
    last = int(batch.last_subject_pos[0])

    def logp(sample: int | None, patch: tuple[int, int, torch.Tensor] | None) -> float:
        hooks = []
        if sample is not None:
            hooks.append(bb.input_embeddings().register_forward_hook(
                lambda m, i, o: o + noise[0:1, sample]))
        if patch is not None:
            layer, pos, value = patch

            def put(m, i, o):
                o = o.clone()
                o[0, pos] = value
                return o
            hooks.append(bb.mlp_out_proj(layer).register_forward_hook(put))
        try:
            logits = bb.logits(ids)
        finally:
            for h in hooks:
                h.remove()
        return float(masked_mean_logp(logits[still], batch.input_ids, still)[0])

    with torch.inference_mode():
        clean: dict[int, torch.Tensor] = {}
        hooks = [bb.mlp_out_proj(l).register_forward_hook(
            lambda m, i, o, l=l: clean.__setitem__(l, o[0].clone()))
            for l in range(bb.num_layers)]
        bb.logits(ids)
        for h in hooks:
            h.remove()
        checked = 0
        for k, offset in enumerate(trace.offsets):
            if not bool(trace.valid[0, k]):
                continue
            pos = last + offset
            for layer in range(bb.num_layers):
                expected = sum(logp(s, (layer, pos, clean[layer][pos])) - logp(s, None)
                               for s in range(2)) / 2
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
