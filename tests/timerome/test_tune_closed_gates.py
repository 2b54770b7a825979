"""The tune job scores the retain facts again at another alpha or q only where a gate
opened on them: where none opened, the grid points are the ones a full rescoring gives."""

from __future__ import annotations

import pytest

from harness.timerome import tuning
from harness.timerome.config import TimeROMEConfig
from harness.timerome.tuning import TuningGrid, tune


def test_reusing_closed_gates_gives_the_full_grid_with_fewer_retain_scorings(
        tiny_backbone, forget_retain, monkeypatch):
    forget, retain = forget_retain
    scored, calibration = retain[:2], retain[2:]
    config = TimeROMEConfig(precondition="none", gate=True, gate_quantile=0.8,
                            edit_flagged=True, times=(1.0, 0.5), noise_samples=2,
                            positions="subject", tie_facts=None)
    # margin 0 at quantile 0.8 opens gates on held-out retain text; 0.95 closes them
    grid = TuningGrid(alphas=(4.0, 64.0), lams=(1.0,), qs=(0.5, 1.0), gate_margins=(0.0, 0.95))
    calls = []
    real = tuning.score_facts

    def counting(backbone, facts, *args, **kwargs):
        calls.append([f.key for f in facts])
        return real(backbone, facts, *args, **kwargs)

    monkeypatch.setattr(tuning, "score_facts", counting)
    results = {}
    for reuse in (False, True):
        monkeypatch.setattr(tuning, "REUSE_CLOSED_RETAIN", reuse)
        calls.clear()
        results[reuse] = tune(tiny_backbone, forget, scored, config, grid,
                              calibration=calibration)
        results[reuse, "retain scorings"] = calls.count([f.key for f in scored])
    full, reused = results[False].grid, results[True].grid
    opened = {p.gate_margin: p.retain_gate_opens for p in full}
    assert opened[0.0] > 0 and opened[0.95] == 0  # one setting open, one closed
    assert len(full) == len(reused) == 8
    for a, b in zip(full, reused):
        assert (a.alpha, a.q, a.gate_margin, a.safe) == (b.alpha, b.q, b.gate_margin, b.safe)
        assert b.forget_drop == a.forget_drop
        assert b.retain_drop == pytest.approx(a.retain_drop, abs=1e-6)
        assert b.retain_drop_se == pytest.approx(a.retain_drop_se, abs=1e-6)
        assert b.retain_gate_opens == a.retain_gate_opens
    # 1 unedited + 4 at margin 0 + 1 at margin 0.95 (the other 3 reused), against 1 + 8
    assert results[False, "retain scorings"] == 9
    assert results[True, "retain scorings"] == 6
