"""Edit sites (config `sites`), the gate margin and multi-count tuning."""

from __future__ import annotations

import json

import pytest
import torch

from harness.timerome.config import SITE_RULES, TimeROMEConfig
from harness.timerome.editor import TimeROMEEditor
from harness.timerome.memory import EditMemory
from harness.timerome.retain_stats import gate_threshold
from harness.timerome.sites import SITES, edit_sites, fact_of
from harness.timerome import tuning
from harness.timerome.tuning import (GridPoint, TuningGrid, TuningResult, apply_tuning, frontier,
                                     regime_point, tune_counts, write_tuning)

FAST = dict(times=(1.0, 0.5), noise_samples=2, positions="subject", precondition="none",
            gate=False, tie_facts=None)


def test_every_site_rule_is_registered():
    assert set(SITE_RULES) == set(SITES)


@pytest.fixture
def traced(tiny_backbone, forget_retain):
    editor = TimeROMEEditor(tiny_backbone, TimeROMEConfig(**FAST))
    encoded, trace = editor.trace(forget_retain[0])
    return editor, encoded, trace


def test_sites_cover_the_subject_tokens_at_the_chosen_layer(traced):
    _, _, trace = traced
    index = list(range(len(trace.fact_keys)))
    chosen = edit_sites("chosen", trace, index)
    subject = edit_sites("subject", trace, index)
    every = edit_sites("subject_layers", trace, index)
    through = edit_sites("subject_through", trace, index)
    n_subject = (trace.valid & trace.is_subject).sum(1)  # [F] traced subject tokens
    assert len(chosen) == len(index)
    assert len(subject) == int(n_subject.sum())
    assert len(every) == int(n_subject.sum()) * trace.keys.shape[1]
    assert len(through) == int((n_subject * (trace.layer + 1)).sum())
    assert torch.equal(subject.layer, trace.layer[subject.fact])  # all at l*
    # every fact's chosen coordinate is among its subject sites, named by the fact key alone
    names = subject.names(trace)
    assert sorted(n for n in names if "@" not in n) == sorted(trace.fact_keys)
    assert {fact_of(n) for n in names} == set(trace.fact_keys)


def test_columns_are_the_trace_tensors_at_the_sites(traced):
    editor, encoded, trace = traced
    index = list(range(len(trace.fact_keys)))
    editor.config = editor.config.with_overrides(sites="subject")
    columns = editor.extract(encoded, trace, index)
    sites = edit_sites("subject", trace, index)
    for s in range(len(sites)):
        f, l, o = int(sites.fact[s]), int(sites.layer[s]), int(sites.offset_index[s])
        assert torch.equal(columns.keys[s], trace.keys[f, l, o])
        assert torch.equal(columns.deltas[s], trace.corrupt_out[f, l, o] - trace.clean_out[f, l, o])


def test_subject_sites_memory_counts_facts_not_columns(tiny_backbone, forget_retain):
    forget = forget_retain[0]
    editor = TimeROMEEditor(tiny_backbone, TimeROMEConfig(sites="subject", **FAST))
    _, report = editor.edit(forget)
    try:
        assert editor.memory.n_columns > editor.memory.n_facts == report.n_edited
    finally:
        editor.undo()


def test_gate_margin_raises_each_threshold_toward_one():
    gen = torch.Generator().manual_seed(0)
    reference, keys = torch.randn(500, 16, generator=gen), torch.randn(16, 3, generator=gen)
    plain = torch.tensor(gate_threshold(reference, keys, 1.0))
    raised = torch.tensor(gate_threshold(reference, keys, 1.0, margin=0.5))
    assert torch.allclose(raised, plain + 0.5 * (1 - plain))
    cos = torch.nn.functional.normalize(reference, dim=1) @ torch.nn.functional.normalize(keys, dim=0)
    assert torch.allclose(plain, cos.max(0).values)


def _point(alpha, forget, retain, safe):
    return GridPoint(alpha, 1.0, 1.0, forget, retain, safe)


class _NoTraceEditor:
    """Stands in for the editor in tune_counts' tests: its trace and statistics are not used
    by the fake grid search."""

    def __init__(self, backbone, config, **kwargs):
        self.config = config

    def trace(self, facts, site_rules=()):
        return None, _Trace()

    def backbone_statistics(self):
        return {}


class _Trace:
    def select(self, index):
        return self


def test_tune_counts_needs_safety_at_every_count(monkeypatch):
    """alpha 8 is safe at 50 facts but not at 10: a point must be safe at every count."""
    grids = {10: [_point(2.0, 3.0, 0.1, True), _point(8.0, 9.0, 1.2, False)],
             50: [_point(2.0, 4.0, 0.3, True), _point(8.0, 12.0, 0.9, True)]}

    def fake(backbone, validation, retain, base, grid, max_retain_drop, batch_size, calibration,
             **_):
        points = grids[len(validation)]
        return TuningResult(chosen=max((p for p in points if p.safe), key=lambda p: p.forget_drop),
                            grid=list(points), max_retain_drop=max_retain_drop,
                            estimator="full_mask", validation_facts=[], retain_facts=[],
                            base_config={}, backbone={}, seconds=0.0)

    monkeypatch.setattr(tuning, "tune", fake)
    monkeypatch.setattr(tuning, "TimeROMEEditor", _NoTraceEditor)
    result = tune_counts(None, list(range(60)), [], [50, 10], grid=TuningGrid())
    assert result.chosen.alpha == 2.0 and result.chosen.forget_drop == 4.0  # the 50-fact grid's
    assert [r.facts for r in result.regimes] == [10, 50]
    assert [p.safe for p in result.grid] == [True, False]
    # the 50-fact regime's record keeps its own flags (alpha 8 is safe at 50)
    assert [p.safe for p in result.regimes[-1].grid] == [True, True]
    # extrapolated to 400 facts, alpha 2's 0.3 nats at 50 facts become 2.4: nothing is safe
    assert tune_counts(None, list(range(60)), [], [10, 50], extrapolate_to=400).chosen is None
    # to 150 facts: 0.9 nats, safe
    result = tune_counts(None, list(range(60)), [], [10, 50], extrapolate_to=150)
    assert result.chosen.alpha == 2.0
    # per regime: up to 10 facts alpha 2 (8 is unsafe there), up to 50 alpha 8, beyond: 2
    by = {k: None if p is None else p.alpha for k, p in result.chosen_by_facts.items()}
    assert by == {"10": 2.0, "50": 8.0, "150": 2.0}
    assert [regime_point(result.chosen_by_facts, n).alpha for n in (1, 10, 11, 50, 51, 400)] \
        == [2.0, 2.0, 8.0, 8.0, 2.0, 2.0]
    with pytest.raises(ValueError, match="must lie in 1..60"):
        tune_counts(None, list(range(60)), [], [10, 100])


def test_frontier_keeps_only_undominated_points():
    points = [_point(1, 2.0, 0.1, True), _point(2, 1.0, 0.2, True), _point(4, 5.0, 0.9, True),
              _point(8, 4.0, 1.5, False)]
    assert [p.alpha for p in frontier(points)] == [1, 4]


def test_jobs_apply_their_regime(tmp_path, monkeypatch):
    grids = {10: [_point(2.0, 3.0, 0.1, True), _point(8.0, 9.0, 0.4, True)],
             50: [_point(2.0, 4.0, 0.1, True), _point(8.0, 12.0, 0.9, True)]}

    def fake(backbone, validation, retain, base, grid, max_retain_drop, batch_size, calibration,
             **_):
        points = grids[len(validation)]
        return TuningResult(chosen=max(points, key=lambda p: p.forget_drop), grid=list(points),
                            max_retain_drop=max_retain_drop, estimator="full_mask",
                            validation_facts=[], retain_facts=[], base_config={}, backbone={},
                            seconds=0.0)

    monkeypatch.setattr(tuning, "tune", fake)
    monkeypatch.setattr(tuning, "TimeROMEEditor", _NoTraceEditor)
    path = write_tuning(tune_counts(None, list(range(60)), [], [10, 50], extrapolate_to=400),
                        tmp_path / "t.json")
    regimes = json.loads(path.read_text())["regimes"]
    assert [[p["alpha"] for p in r["frontier"]] for r in regimes] == [[2.0, 8.0], [2.0, 8.0]]
    keys = ("alpha", "lam", "q", "gate_margin")
    assert apply_tuning({}, str(path), keys, n_facts=10)[0]["alpha"] == 8.0   # Table 1
    assert apply_tuning({}, str(path), keys, n_facts=400)[0]["alpha"] == 2.0  # 0.1 x 8 <= 1
    assert apply_tuning({}, str(path), keys)[0]["alpha"] == 2.0  # no count: the most facts


def test_gate_budget_rejects_points_whose_gates_open_on_retain(monkeypatch):
    """alpha 8 keeps the retain drop in budget at 50 facts but its gates open 0.02 times per
    retain fact: x 8 to 400 facts that is over a 0.05 budget, so the 400-fact regime takes
    alpha 2 (no openings); at 50 facts (0.02 <= 0.05) alpha 8 stays."""
    def opened(alpha, forget, retain, opens):
        return GridPoint(alpha, 1.0, 1.0, forget, retain, True, 0.0, opens, opens)

    grids = {10: [opened(2.0, 3.0, 0.0, 0.0), opened(8.0, 9.0, 0.01, 0.0)],
             50: [opened(2.0, 4.0, 0.0, 0.0), opened(8.0, 12.0, 0.02, 0.02)]}

    def fake(backbone, validation, retain, base, grid, max_retain_drop, batch_size, calibration,
             **_):
        points = [GridPoint(**vars(p)) for p in grids[len(validation)]]
        return TuningResult(chosen=max(points, key=lambda p: p.forget_drop), grid=points,
                            max_retain_drop=max_retain_drop, estimator="full_mask",
                            validation_facts=[], retain_facts=[], base_config={}, backbone={},
                            seconds=0.0)

    monkeypatch.setattr(tuning, "tune", fake)
    monkeypatch.setattr(tuning, "TimeROMEEditor", _NoTraceEditor)
    result = tune_counts(None, list(range(60)), [], [10, 50], extrapolate_to=400,
                         max_gate_opens=0.05)
    assert {k: p.alpha for k, p in result.chosen_by_facts.items()} == \
        {"10": 8.0, "50": 8.0, "400": 2.0}
    unbounded = tune_counts(None, list(range(60)), [], [10, 50], extrapolate_to=400)
    assert unbounded.chosen_by_facts["400"].alpha == 8.0


def test_memory_counts_gate_openings(tiny_backbone):
    gen = torch.Generator().manual_seed(0)
    proj = tiny_backbone.mlp_out_proj(1)
    keys = torch.randn((3, proj.in_features), generator=gen)
    memory = EditMemory(TimeROMEConfig(precondition="none", gate=True),
                        tiny_backbone.identity(), gate_reference={1: torch.randn(
                            (200, proj.in_features), generator=gen)})
    memory.insert(1, keys, torch.randn((3, proj.out_features), generator=gen), ["a", "b", "c"])
    h = torch.cat([keys, -keys])  # each key opens its own gate only; its negation none
    with memory.counting_gate_opens():
        memory.contribution(1, h)
    assert memory.last_gate_opens == 3 and memory.gate_opens is None


def test_transfer_note_names_each_regimes_point(tmp_path):
    from harness.reports.transfer import tuned_params, tuned_text

    path = tmp_path / "t.json"
    path.write_text(json.dumps({
        "chosen": {"alpha": 4.0, "lam": 1.0, "q": 1.0, "gate_margin": 0.5},
        "chosen_by_facts": {"400": {"alpha": 4.0, "lam": 1.0, "q": 1.0, "gate_margin": 0.5},
                            "10": {"alpha": 1024.0, "lam": 0.01, "q": 0.5, "gate_margin": 0.0},
                            "50": None}}))
    assert tuned_text(tuned_params(str(path))) == (
        "jobs of up to 10 facts: alpha=1024.0, gate_margin=0.0, lam=0.01, q=0.5; "
        "jobs of up to 50 facts: no utility-safe point (untuned); "
        "jobs of up to 400 facts: alpha=4.0, gate_margin=0.5, lam=1.0, q=1.0")


def test_gate_budget_follows_from_the_damage_per_opening(monkeypatch):
    """At 50 facts alpha 16's gates opened 0.1 times per scored retain fact for 0.5 nats: 5
    nats an opening. On 40 scored facts, x openings (Poisson) cost at most 1 nat at 95%
    when (x + 1.645 sqrt(x)) 5 / 40 <= 1: x <= 4.51, 0.113 per fact. Alpha 16's own
    expectation at 50 facts (0.3, cross-fitted) is over it although its count on the
    scored facts is not; scaled x 8 to 400 facts, alpha 8's 0.03 (0.24) is over it and
    alpha 4's 0.01 (0.08) within."""
    def point(alpha, forget, retain, counted, expected):
        return GridPoint(alpha, 1.0, 1.0, forget, retain, True, 0.0, counted, expected)

    grids = {10: [point(4.0, 3.0, 0.0, 0.0, 0.0), point(8.0, 4.0, 0.0, 0.0, 0.0),
                  point(16.0, 5.0, 0.1, 0.05, 0.01)],
             50: [point(4.0, 6.0, 0.0, 0.0, 0.01), point(8.0, 7.0, 0.0, 0.0, 0.03),
                  point(16.0, 9.0, 0.5, 0.1, 0.3)]}

    def fake(backbone, validation, retain, base, grid, max_retain_drop, batch_size, calibration,
             **_):
        points = [GridPoint(**vars(p)) for p in grids[len(validation)]]
        return TuningResult(chosen=None, grid=points, max_retain_drop=max_retain_drop,
                            estimator="full_mask", validation_facts=[], retain_facts=[],
                            base_config={}, backbone={}, seconds=0.0)

    monkeypatch.setattr(tuning, "tune", fake)
    monkeypatch.setattr(tuning, "TimeROMEEditor", _NoTraceEditor)
    retain = list(range(40))  # the scored retain facts (the fake tune only counts them)
    result = tune_counts(None, list(range(60)), retain, [10, 50], extrapolate_to=400)
    assert result.damage_per_opening == pytest.approx(5.0)
    assert result.gate_open_budget == pytest.approx(0.1127, abs=1e-4)
    assert {k: p.alpha for k, p in result.chosen_by_facts.items()} == \
        {"10": 16.0, "50": 8.0, "400": 4.0}
    assert "0.1127 expected gate openings" in result.rule and "5 nats per opening" in result.rule
    capped = tune_counts(None, list(range(60)), retain, [10, 50], extrapolate_to=400,
                         max_gate_opens=0.05)
    assert capped.gate_open_budget == pytest.approx(0.05)
    assert {k: p and p.alpha for k, p in capped.chosen_by_facts.items()} == \
        {"10": 16.0, "50": 8.0, "400": None}


def test_held_out_gate_openings_predict_openings_on_new_retain_states(tiny_backbone):
    """Thresholds at the largest of N calibration similarities never open on those N states
    (so counting there says nothing); the cross-fitted estimate predicts how often they open
    on new states of the same distribution (about one in N + 1 per fact column)."""
    gen = torch.Generator().manual_seed(3)
    proj = tiny_backbone.mlp_out_proj(1)
    d = proj.in_features
    n_keys, n_states = 60, 3000
    reference = torch.randn((n_states, d), generator=gen)
    keys = torch.randn((n_keys, d), generator=gen)
    memory = EditMemory(TimeROMEConfig(precondition="none", gate=True),
                        tiny_backbone.identity(), gate_reference={1: reference})
    memory.insert(1, keys, torch.randn((n_keys, proj.out_features), generator=gen),
                  [f"f{i}" for i in range(n_keys)])
    expected = memory.held_out_gate_opens() * 4 * n_states  # over 4 N new states
    with memory.counting_gate_opens():
        memory.contribution(1, reference)
    assert memory.last_gate_opens == 0
    with memory.counting_gate_opens():
        memory.contribution(1, torch.randn((4 * n_states, d), generator=gen))
    counted = memory.last_gate_opens
    assert counted > 100  # n_keys x 4 N / (N + 1) ~ 240 on average
    assert expected == pytest.approx(counted, rel=0.3)


def test_retain_safety_uses_the_upper_confidence_bound_of_the_mean(monkeypatch):
    """Mean 0.1 nats at 50 facts with SE 0.05: the 95% bound 0.18 x 8 = 1.46 nats at 400
    facts is over budget although the mean x 8 (0.8) is not; one fact losing 4 nats among
    four gives mean 1 and SE 1."""
    from harness.timerome.tuning import mean_and_se

    assert mean_and_se(torch.tensor([0.0, 0.0, 0.0, 4.0])) == pytest.approx((1.0, 1.0))
    noisy = GridPoint(2.0, 1.0, 1.0, 9.0, 0.1, True, 0.0, 0.0, 0.0, None, 0.05)
    steady = GridPoint(1.0, 1.0, 1.0, 5.0, 0.1, True, 0.0, 0.0, 0.0, None, 0.0)
    assert noisy.retain_drop_bound == pytest.approx(0.1 + 1.645 * 0.05)

    def fake(backbone, validation, retain, base, grid, max_retain_drop, batch_size, calibration,
             **_):
        points = [GridPoint(**vars(p)) for p in (noisy, steady)]
        return TuningResult(chosen=None, grid=points, max_retain_drop=max_retain_drop,
                            estimator="full_mask", validation_facts=[], retain_facts=[],
                            base_config={}, backbone={}, seconds=0.0)

    monkeypatch.setattr(tuning, "tune", fake)
    monkeypatch.setattr(tuning, "TimeROMEEditor", _NoTraceEditor)
    result = tune_counts(None, list(range(60)), [], [50], extrapolate_to=400)
    assert result.chosen_by_facts["50"].alpha == 2.0  # safe at 50: bound 0.18
    assert result.chosen_by_facts["400"].alpha == 1.0


def test_gate_thresholds_by_column_blocks_equal_the_whole_matrix_quantile(monkeypatch):
    """gate_threshold works through column blocks (bounded memory) and takes the maximum
    directly at quantile 1: both give the whole similarity matrix's quantile."""
    import harness.timerome.retain_stats as retain_stats

    gen = torch.Generator().manual_seed(3)
    reference, keys = torch.randn(300, 16, generator=gen), torch.randn(16, 70, generator=gen)
    cos = (torch.nn.functional.normalize(reference, dim=-1)
           @ torch.nn.functional.normalize(keys, dim=0))
    monkeypatch.setattr(retain_stats, "GATE_BLOCK_ELEMENTS", 300 * 8)  # 8 columns a block
    for quantile, margin in ((1.0, 0.0), (1.0, 0.5), (0.9, 0.25)):
        r = torch.quantile(cos, quantile, dim=0)
        expected = (r + margin * (1.0 - r)).tolist()
        assert gate_threshold(reference, keys, quantile, margin) == pytest.approx(
            expected, abs=1e-6)


def test_window_sites_are_every_traced_position_at_the_chosen_layer(tiny_backbone,
                                                                     forget_retain):
    forget, _ = forget_retain
    config = TimeROMEConfig(**{**FAST, "positions": "window", "window": (1, 2)})
    editor = TimeROMEEditor(tiny_backbone, config)
    encoded, trace = editor.trace(forget)
    index = list(range(len(trace.fact_keys)))
    window = edit_sites("window", trace, index)
    subject = edit_sites("subject", trace, index)
    assert len(window) == int(trace.valid.sum()) > len(subject)  # non-subject tokens too
    assert torch.equal(window.layer, trace.layer[window.fact])  # all at l*
    offsets = set(window.subject_offsets(trace))
    assert max(offsets) == 2 and 0 in offsets  # up to 2 tokens after the subject's end
    # the subject sites are among them; the columns' deltas are the trace's at each site
    pairs = set(zip(window.fact.tolist(), window.offset_index.tolist()))
    assert set(zip(subject.fact.tolist(), subject.offset_index.tolist())) <= pairs
    editor.config = editor.config.with_overrides(sites="window")
    columns = editor.extract(encoded, trace, index)
    f, l, o = int(window.fact[-1]), int(window.layer[-1]), int(window.offset_index[-1])
    assert torch.equal(columns.deltas[-1], trace.corrupt_out[f, l, o] - trace.clean_out[f, l, o])
    # with subject positions only, the window rule is the subject rule
    _, subject_trace = TimeROMEEditor(tiny_backbone, TimeROMEConfig(**FAST)).trace(forget)
    a, b = (edit_sites(r, subject_trace, index) for r in ("window", "subject"))
    assert torch.equal(a.offset_index, b.offset_index) and torch.equal(a.fact, b.fact)


def test_window_sites_read_the_chosen_layer_only():
    from harness.timerome.sites import deepest_layer
    assert deepest_layer(("window",), 2, 6) == 2  # a truncated trace may stop there
    assert deepest_layer(("window", "subject_layers"), 2, 6) == 5
