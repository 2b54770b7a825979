"""A regime tuned on several disjoint groups of validation facts (config tuning.groups):
the groups' grids are pooled point by point, a point is safe only if safe on every group,
and each group is traced as an edit of its own facts."""

from __future__ import annotations

import math

import pytest
import torch

from harness.timerome import tuning
from harness.timerome.config import TimeROMEConfig
from harness.timerome.editor import TimeROMEEditor
from harness.timerome.tracing import trace_facts
from harness.timerome.tuning import (GridPoint, TuningGrid, TuningResult, count_traces,
                                     pool_groups, regime_groups, tune_counts)
from tests.timerome.test_sites_and_margin import _NoTraceEditor


def _result(points, keys):
    safe = [p for p in points if p.safe]
    return TuningResult(chosen=max(safe, key=lambda p: p.forget_drop) if safe else None,
                        grid=points, max_retain_drop=1.0, estimator="full_mask",
                        validation_facts=keys, retain_facts=["r"], base_config={},
                        backbone={}, seconds=1.5, flagged=keys[:1])


def _p(alpha, forget, retain, se, safe, expected=0.0):
    return GridPoint(alpha, 1.0, 1.0, forget, retain, safe, retain_drop_se=se,
                     expected_gate_opens=expected)


def test_pooled_points_are_group_means_and_safe_only_where_every_group_is():
    groups = [
        _result([_p(4.0, 8.0, 0.1, 0.1, True, 0.01), _p(16.0, 20.0, 0.2, 0.1, True, 0.02)],
                ["v0"]),
        _result([_p(4.0, 10.0, 0.3, 0.2, True, 0.03), _p(16.0, 30.0, 2.0, 0.5, False, 0.01)],
                ["v1"]),
        _result([_p(4.0, 12.0, 0.2, 0.2, True, 0.02), _p(16.0, 25.0, 0.0, 0.0, True, 0.00)],
                ["v2"]),
    ]
    pooled = pool_groups(groups, TuningGrid(alphas=(4.0, 16.0), lams=(1.0,), qs=(1.0,)), 1.0)
    low, high = pooled.grid
    assert low.forget_drop == pytest.approx(10.0) and low.retain_drop == pytest.approx(0.2)
    assert low.retain_drop_se == pytest.approx(math.sqrt(0.01 + 0.04 + 0.04) / 3)
    assert low.expected_gate_opens == pytest.approx(0.03)  # the largest group's
    assert low.safe and not high.safe  # alpha 16 forgets more but fails group 1
    assert pooled.chosen is low
    assert pooled.validation_facts == ["v0", "v1", "v2"] and pooled.seconds == 4.5
    assert pool_groups(groups[:1], TuningGrid(), 1.0) is groups[0]
    other = _result([_p(8.0, 1.0, 0.0, 0.0, True), _p(16.0, 1.0, 0.0, 0.0, True)], ["v3"])
    with pytest.raises(ValueError, match="grids differ"):
        pool_groups([groups[0], other], TuningGrid(), 1.0)


def test_regime_groups_take_as_many_groups_as_the_split_holds():
    assert regime_groups(50, 10, 5) == 5
    assert regime_groups(50, 10, 9) == 5
    assert regime_groups(50, 20, 5) == 2
    assert regime_groups(50, 50, 5) == 1
    assert regime_groups(60, 10, 1) == 1


def test_tune_counts_pools_disjoint_groups_per_count(monkeypatch):
    seen = []

    def fake(backbone, validation, retain, base, grid, max_retain_drop, batch_size,
             calibration, **_):
        seen.append(list(validation))
        k = validation[0] // len(validation)
        # alpha 16 forgets most on group 0 alone, but is unsafe on group 2
        points = [_p(4.0, 5.0 + k, 0.1, 0.0, True), _p(16.0, 9.0 if k == 0 else 6.0,
                                                      0.1, 0.0, k != 2)]
        return _result(points, [f"v{i}" for i in validation])

    monkeypatch.setattr(tuning, "tune", fake)
    monkeypatch.setattr(tuning, "TimeROMEEditor", _NoTraceEditor)
    result = tune_counts(None, list(range(50)), [], [10, 50], groups=5)
    assert seen == [list(range(k * 10, k * 10 + 10)) for k in range(5)] + [list(range(50))]
    assert [(r.facts, r.groups) for r in result.regimes] == [(10, 5), (50, 1)]
    ten = result.chosen_by_facts["10"]
    assert ten.alpha == 4.0 and ten.forget_drop == pytest.approx(7.0)  # mean of 5..9
    assert "10 facts: mean over 5 disjoint groups" in result.rule
    single = tune_counts(None, list(range(50)), [], [10, 50])  # groups 1: the first 10 alone
    assert single.chosen_by_facts["10"].alpha == 16.0


def test_each_group_is_traced_as_an_edit_of_its_own_facts(tiny_backbone, forget_retain):
    forget, retain = forget_retain
    facts = forget + retain[:6]
    config = TimeROMEConfig(times=(1.0, 0.5), noise_samples=2, positions="subject",
                            tie_facts=2, precondition="none", gate=False)
    editor = TimeROMEEditor(tiny_backbone, config)
    traces = count_traces(editor, facts, [2, 4], groups={2: 3, 4: 2})
    assert sorted(traces) == [(2, 0), (2, 1), (2, 2), (4, 0), (4, 1)]
    for (n, k), trace in traces.items():
        alone = trace_facts(tiny_backbone, facts[k * n:(k + 1) * n], config)
        assert trace.fact_keys == alone.fact_keys
        assert torch.equal(trace.traced, alone.traced) and torch.equal(trace.layer, alone.layer)
        assert torch.equal(trace.keys, alone.keys)
