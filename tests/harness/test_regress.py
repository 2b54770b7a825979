"""Regression check: passes on its own baseline, fails on planted speed / memory regressions."""

from __future__ import annotations

import json

import pytest
from harness_records import make_record

from harness import regress
from harness.results.aggregate import runs_frame


def write_runs(path, records):
    runs_frame(records).to_csv(path, index=False)
    return path


@pytest.fixture
def baseline(tmp_path, planted_records):
    runs = write_runs(tmp_path / "base.csv", planted_records)
    path = tmp_path / "baseline.json"
    assert regress.main([str(runs), "--baseline", str(path), "--write-baseline"]) == 0
    return path


def entries(path):
    return {(e["method"]): e for e in json.loads(path.read_text())["entries"]}


def test_baseline_records_speedup_and_memory_ratio(baseline):
    recorded = entries(baseline)
    assert recorded["timerome"]["speedup"] == pytest.approx(8.0)  # graddiff 16 s / 2 s
    assert recorded["timerome"]["peak_mem_ratio"] == pytest.approx(1.01)
    assert recorded["graddiff"]["peak_mem_ratio"] == pytest.approx(2.5)


def test_passes_on_the_baseline(tmp_path, baseline, planted_records, capsys):
    runs = write_runs(tmp_path / "now.csv", planted_records)
    assert regress.main([str(runs), "--baseline", str(baseline), "--tolerance", "0.15"]) == 0
    out = capsys.readouterr().out
    assert "0 regressed" in out and "REGRESSED" not in out


def test_fails_on_planted_speed_regression(tmp_path, baseline, planted_records, capsys):
    slow = [dict(r) for r in planted_records]
    slow[0] = make_record(method="timerome", wall=2.5, forget=(-10.0, -60.0), peak=101 * 2**20)
    runs = write_runs(tmp_path / "now.csv", slow)  # speedup 8.0 -> 6.4: -20 % > 15 %
    assert regress.main([str(runs), "--baseline", str(baseline), "--tolerance", "0.15"]) == 1
    out = capsys.readouterr().out
    line = next(l for l in out.splitlines() if "timerome" in l and "speedup" in l)
    assert "REGRESSED" in line and "8.000" in line and "6.400" in line and "-20.0%" in line


def test_within_tolerance_passes(tmp_path, baseline, planted_records):
    slower = [dict(r) for r in planted_records]
    slower[0] = make_record(method="timerome", wall=2.2, forget=(-10.0, -60.0), peak=101 * 2**20)
    runs = write_runs(tmp_path / "now.csv", slower)  # 8.0 -> 7.27: -9 %
    assert regress.main([str(runs), "--baseline", str(baseline), "--tolerance", "0.15"]) == 0


def test_fails_on_planted_memory_regression(tmp_path, baseline, planted_records, capsys):
    heavy = [dict(r) for r in planted_records]
    heavy[0] = make_record(method="timerome", wall=2.0, forget=(-10.0, -60.0), peak=130 * 2**20)
    runs = write_runs(tmp_path / "now.csv", heavy)  # ratio 1.01 -> 1.30
    assert regress.main([str(runs), "--baseline", str(baseline)]) == 1
    out = capsys.readouterr().out
    line = next(l for l in out.splitlines() if "timerome" in l and "peak_mem_ratio" in l)
    assert "REGRESSED" in line


def test_other_device_class_is_not_compared(tmp_path, baseline, planted_records, capsys):
    gpu = [dict(r, device_class="NVIDIA H100 80GB HBM3") for r in planted_records]
    runs = write_runs(tmp_path / "now.csv", gpu)
    assert regress.main([str(runs), "--baseline", str(baseline)]) == 3
    assert "no baseline entry for device class NVIDIA H100 80GB HBM3" in capsys.readouterr().out


def test_missing_run_fails_unless_allowed(tmp_path, baseline, planted_records):
    runs = write_runs(tmp_path / "now.csv", planted_records[1:])  # timerome absent
    assert regress.main([str(runs), "--baseline", str(baseline)]) == 1
    assert regress.main([str(runs), "--baseline", str(baseline), "--allow-missing"]) == 0
