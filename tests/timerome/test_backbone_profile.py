"""`tie_facts: 0` (issue 16): no fact of an edit gets restored runs; every fact takes the
peak layer of the backbone's TIE profile, traced once on retain facts (a backbone
statistic), and the runs of every level stop after the deepest layer the edit reads (every
level but the first with `effect_flag`, which measures each fact's corruption effect there). Checked against the untruncated trace and the full trace of the profile's
facts, not against themselves."""

from __future__ import annotations

import pytest
import torch

from harness.compute import ComputeCounter
from harness.timerome.config import TimeROMEConfig
from harness.timerome.editor import TIE_PROFILE, TimeROMEEditor
from harness.timerome.sites import edit_sites
from harness.timerome.tracing import (backbone_tie_profile, layer_profile, peak_layer,
                                      trace_encoded, trace_facts, traced_sample)
from harness.diffusion.batching import encode_facts

FAST = dict(times=(1.0, 0.5, 0.25), noise_samples=2, precondition="none", gate=False,
            positions="subject")


def test_profile_is_the_mean_peak_tie_of_a_seeded_sample_of_the_retain_facts(
        tiny_backbone, forget_retain):
    _, retain = forget_retain
    config = TimeROMEConfig(profile_facts=4, **FAST)
    profile = backbone_tie_profile(tiny_backbone, retain, config)
    sample = traced_sample([f.key for f in retain], 4, config.seed)
    chosen = [f for f, keep in zip(retain, sample.tolist()) if keep]
    assert len(chosen) == 4
    full = trace_facts(tiny_backbone, chosen, config.with_overrides(tie_facts=None))
    use = ~full.flagged if bool((~full.flagged).any()) else torch.ones_like(full.flagged)
    expected = full.tie[use].nan_to_num(nan=float("-inf")).amax(2).mean(0)
    assert profile.shape == (tiny_backbone.num_layers,)
    assert torch.allclose(profile, expected)
    assert peak_layer(profile) == int(expected.argmax())
    assert torch.equal(layer_profile(full), profile)


def test_every_fact_takes_the_profile_layer_and_truncation_changes_no_key_or_delta(
        tiny_backbone, forget_retain):
    """The truncated runs give the same keys and outputs at every layer they compute as the
    full runs and hold nothing above the stop layer; P is known at the first level only."""
    forget, _ = forget_retain
    bb = tiny_backbone
    config = TimeROMEConfig(tie_facts=0, effect_flag=True, **FAST)
    encoded = encode_facts(bb, forget)
    for layer in range(bb.num_layers - 1):
        full = trace_encoded(bb, encoded, config, profile_layer=layer)
        short = trace_encoded(bb, encoded, config, profile_layer=layer, stop_layer=layer)
        assert bool((short.layer == layer).all()) and bool((full.layer == layer).all())
        assert not bool(short.traced.any())
        for name in ("keys", "clean_out", "corrupt_out"):
            a, b = getattr(full, name), getattr(short, name)
            assert torch.allclose(a[:, :layer + 1], b[:, :layer + 1], atol=1e-6), (name, layer)
            assert b.shape[1] == layer + 1 and a.shape[1] == bb.num_layers, (name, layer)
        assert torch.allclose(short.clean_logp[:, 0], full.clean_logp[:, 0])
        assert torch.allclose(short.corrupt_logp[:, 0], full.corrupt_logp[:, 0])
        assert bool(short.clean_logp[:, 1:].isnan().all())
        effect = full.clean_logp[:, 0] - full.corrupt_logp[:, 0]
        assert torch.equal(short.flagged, ~(effect > config.flag_threshold))
        assert short.forwards == full.forwards == len(forget) * 3 * (1 + 2)
        # the report's corruption effect is the first level's, not nan
        assert all(row["corruption_effect"] == row["corruption_effect"]
                   for row in short.summary())


def test_without_the_effect_flag_every_level_stops_and_no_fact_is_flagged(
        tiny_backbone, forget_retain):
    """effect_flag false (the default): the first level stops at the edit layer too; keys
    and outputs are still the full runs', P is never computed, no fact is flagged, and the
    report says the corruption effect is unknown (null), not nan."""
    forget, _ = forget_retain
    bb = tiny_backbone
    config = TimeROMEConfig(tie_facts=0, effect_flag=False, **FAST)
    encoded = encode_facts(bb, forget)
    full = trace_encoded(bb, encoded, config, profile_layer=0)
    short = trace_encoded(bb, encoded, config, profile_layer=0, stop_layer=0)
    for name in ("keys", "clean_out", "corrupt_out"):
        a, b = getattr(full, name), getattr(short, name)
        assert torch.allclose(a[:, :1], b[:, :1], atol=1e-6), name
        assert b.shape[1] == 1 and bool(b.isfinite().all()), name
    assert bool(short.clean_logp.isnan().all()) and bool(short.corrupt_logp.isnan().all())
    assert not bool(short.flagged.any())
    assert all(row["corruption_effect"] is None for row in short.summary())
    with ComputeCounter(bb) as flag_runs:
        trace_encoded(bb, encoded, config.with_overrides(effect_flag=True), profile_layer=0,
                      stop_layer=0)
    with ComputeCounter(bb) as no_flag:
        trace_encoded(bb, encoded, config, profile_layer=0, stop_layer=0)
    assert no_flag.counts.forward.head_rows == 0 < flag_runs.counts.forward.head_rows
    assert no_flag.counts.forward.skipped_tokens == pytest.approx(
        (bb.num_layers - 1) / bb.num_layers * no_flag.counts.forward.tokens)


def test_a_truncated_trace_is_priced_by_the_blocks_it_computed(tiny_backbone, forget_retain):
    forget, _ = forget_retain
    bb = tiny_backbone
    config = TimeROMEConfig(tie_facts=0, effect_flag=True, **FAST)
    encoded = encode_facts(bb, forget)
    with ComputeCounter(bb) as full:
        trace_encoded(bb, encoded, config, profile_layer=0)
    with ComputeCounter(bb) as short:
        trace_encoded(bb, encoded, config, profile_layer=0, stop_layer=0)
    with ComputeCounter(bb) as first:  # the first level alone, every block
        trace_encoded(bb, encoded, config.with_overrides(times=(1.0,)), profile_layer=0)
    assert short.counts.forward_tokens == full.counts.forward_tokens
    # the later levels stop after block 0 of L and compute no head row: priced, but less
    assert short.counts.forward.head_rows == first.counts.forward.head_rows
    assert first.flops() < short.flops() < full.flops()
    share = (bb.num_layers - 1) / bb.num_layers
    assert short.counts.forward.skipped_tokens == pytest.approx(
        share * (full.counts.forward.tokens - first.counts.forward.tokens))


def test_tie_facts_0_without_a_profile_is_named(tiny_backbone, forget_retain):
    forget, _ = forget_retain
    config = TimeROMEConfig(tie_facts=0, **FAST)
    with pytest.raises(ValueError, match="tie_facts 0 takes every fact's layer from the "
                                         "backbone's TIE profile, and none was given"):
        trace_encoded(tiny_backbone, encode_facts(tiny_backbone, forget), config)
    with pytest.raises(ValueError, match="traced on retain facts, and none were given"):
        TimeROMEEditor(tiny_backbone, config).edit(forget)
    with pytest.raises(ValueError, match="stop_layer needs tie_facts 0"):
        trace_encoded(tiny_backbone, encode_facts(tiny_backbone, forget),
                      config.with_overrides(tie_facts=None), profile_layer=0, stop_layer=0)


def test_the_profile_is_a_backbone_statistic_and_an_edit_loads_it(tiny_backbone,
                                                                  forget_retain):
    forget, retain = forget_retain
    config = TimeROMEConfig(tie_facts=0, profile_facts=4, **FAST)
    stats = TimeROMEEditor(tiny_backbone, config, retain=retain).backbone_statistics()
    assert TIE_PROFILE in stats
    assert TIE_PROFILE not in TimeROMEEditor(tiny_backbone, config.with_overrides(tie_facts=3),
                                             retain=retain).backbone_statistics()
    # a profile peaking at the top layer: the edit follows the statistic, with no retain
    top = tiny_backbone.num_layers - 1
    forced = {TIE_PROFILE: torch.arange(tiny_backbone.num_layers, dtype=torch.float)}
    editor = TimeROMEEditor(tiny_backbone, config, statistics=forced)
    _, report = editor.edit(forget)
    assert {c["layer"] for c in report.coordinates} == {top}
    editor.undo()


def test_a_site_rule_that_reads_above_the_stop_layer_gets_a_full_trace_or_an_error(
        tiny_backbone, forget_retain):
    forget, _ = forget_retain
    forced = {TIE_PROFILE: torch.tensor([1.0] + [0.0] * (tiny_backbone.num_layers - 1))}
    config = TimeROMEConfig(tie_facts=0, **FAST)
    editor = TimeROMEEditor(tiny_backbone, config, statistics=forced)
    _, short = editor.trace(forget)
    assert short.keys.shape[1] == 1 and short.key_floor.shape[1] == 1
    with pytest.raises(ValueError, match="sites 'subject_layers' reads layer"):
        edit_sites("subject_layers", short, range(len(forget)))
    _, deep = editor.trace(forget, site_rules=("subject_layers",))
    assert bool(deep.keys.isfinite().all())
    assert len(edit_sites("subject_layers", deep, range(len(forget))))


def test_long_answers_get_fewer_rows_per_traced_forward_and_the_same_trace(
        tiny_backbone, forget_retain, monkeypatch):
    """TRACE_LOGIT_ELEMENTS caps the logits one traced forward holds (the edit's extra
    memory on real-length answers); the trace itself does not change."""
    from harness.timerome import tracing
    from harness.timerome.unembedding import vocab_size

    forget, retain = forget_retain
    forget = forget + retain[:8]  # facts of equal width share a batch (and a clean run)
    bb = tiny_backbone
    config = TimeROMEConfig(**{**FAST, "tie_facts": None})
    held: list[int] = []  # logits elements of each traced forward
    plain = bb.logits_at

    def counted(input_ids, positions):
        out = plain(input_ids, positions)
        held.append(out.numel())
        return out

    monkeypatch.setattr(bb, "logits_at", counted)
    wide = trace_facts(bb, forget, config)
    wide_most = max(held)
    held.clear()
    longest = max(len(e.answer_ids) for e in encode_facts(bb, forget))
    cap = longest * vocab_size(bb)  # one row of the longest answer, fully masked
    monkeypatch.setattr(tracing, "TRACE_LOGIT_ELEMENTS", cap)
    narrow = trace_facts(bb, forget, config)
    assert wide_most > cap >= max(held)
    for name in ("tie", "keys", "clean_out", "corrupt_out", "clean_logp", "corrupt_logp"):
        a, b = getattr(wide, name), getattr(narrow, name)
        assert torch.allclose(a.nan_to_num(-9.0), b.nan_to_num(-9.0), atol=1e-5), name
    assert torch.equal(wide.layer, narrow.layer) and wide.forwards == narrow.forwards
