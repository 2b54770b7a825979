"""Regression check: passes on its own baseline, fails on planted speed / memory regressions."""

from __future__ import annotations

import json

import pytest
from harness_records import make_record, set_field, write_records

from harness import regress


def write_runs(path, records):
    """The records as JSON files in the directory `path` (what the check reads)."""
    return write_records(path, records)


@pytest.fixture
def baseline(tmp_path, planted_records):
    runs = write_runs(tmp_path / "base", planted_records)
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
    runs = write_runs(tmp_path / "now", planted_records)
    assert regress.main([str(runs), "--baseline", str(baseline), "--tolerance", "0.15"]) == 0
    out = capsys.readouterr().out
    assert "0 regressed" in out and "REGRESSED" not in out


def test_fails_on_planted_speed_regression(tmp_path, baseline, planted_records, capsys):
    slow = [dict(r) for r in planted_records]
    slow[0] = make_record(method="timerome", wall=2.5, forget=(-10.0, -60.0), peak=101 * 2**20)
    runs = write_runs(tmp_path / "now", slow)  # speedup 8.0 -> 6.4: -20 % > 15 %
    assert regress.main([str(runs), "--baseline", str(baseline), "--tolerance", "0.15"]) == 1
    out = capsys.readouterr().out
    line = next(l for l in out.splitlines() if "timerome" in l and "speedup" in l)
    assert "REGRESSED" in line and "8.000" in line and "6.400" in line and "-20.0%" in line


def test_within_tolerance_passes(tmp_path, baseline, planted_records):
    slower = [dict(r) for r in planted_records]
    slower[0] = make_record(method="timerome", wall=2.2, forget=(-10.0, -60.0), peak=101 * 2**20)
    runs = write_runs(tmp_path / "now", slower)  # 8.0 -> 7.27: -9 %
    assert regress.main([str(runs), "--baseline", str(baseline), "--tolerance", "0.15"]) == 0


def test_fails_on_planted_memory_regression(tmp_path, baseline, planted_records, capsys):
    heavy = [dict(r) for r in planted_records]
    heavy[0] = make_record(method="timerome", wall=2.0, forget=(-10.0, -60.0), peak=130 * 2**20)
    runs = write_runs(tmp_path / "now", heavy)  # ratio 1.01 -> 1.30
    assert regress.main([str(runs), "--baseline", str(baseline)]) == 1
    out = capsys.readouterr().out
    line = next(l for l in out.splitlines() if "timerome" in l and "peak_mem_ratio" in l)
    assert "REGRESSED" in line


def test_new_device_class_becomes_its_baseline(tmp_path, baseline, planted_records, capsys):
    gpu = [dict(r, device_class="NVIDIA H100 80GB HBM3") for r in planted_records]
    runs = write_runs(tmp_path / "now", gpu)
    out = tmp_path / "regression.txt"
    assert regress.main([str(runs), "--baseline", str(baseline), "--out", str(out)]) == 4
    said = capsys.readouterr().out
    assert (f"no baseline for NVIDIA H100 80GB HBM3 (driver none, torch 2.x, cuda none, dtype "
            f"none) in {baseline} (no entry for device class NVIDIA H100 80GB HBM3): recorded "
            "the current values (5 entries) as its new baseline") in said
    assert out.read_text() == said and said.endswith("outcome: no baseline (exit 4)\n")
    recorded = json.loads(baseline.read_text())["entries"]
    by_device = {d: {e["method"]: e for e in recorded if e["device_class"] == d}
                 for d in ("cpu", "NVIDIA H100 80GB HBM3")}
    assert len(by_device["cpu"]) == 5 and len(by_device["NVIDIA H100 80GB HBM3"]) == 5
    assert by_device["NVIDIA H100 80GB HBM3"]["timerome"]["speedup"] == pytest.approx(8.0)
    # The next night is compared against it: a planted slowdown on that device now fails.
    slow = [dict(r) for r in gpu]
    slow[0] = dict(make_record(method="timerome", wall=2.5, forget=(-10.0, -60.0),
                               peak=101 * 2**20), device_class="NVIDIA H100 80GB HBM3")
    assert regress.main([str(write_runs(tmp_path / "slow", slow)), "--baseline",
                         str(baseline), "--out", str(out)]) == 1
    assert "REGRESSED" in out.read_text() and "no baseline" not in out.read_text()


def test_out_is_written_on_pass_and_on_regression(tmp_path, baseline, planted_records, capsys):
    out = tmp_path / "regression.txt"
    runs = write_runs(tmp_path / "now", planted_records)
    assert regress.main([str(runs), "--baseline", str(baseline), "--out", str(out)]) == 0
    assert out.read_text() == capsys.readouterr().out and "0 regressed" in out.read_text()
    heavy = [dict(r) for r in planted_records]
    heavy[0] = make_record(method="timerome", wall=2.0, forget=(-10.0, -60.0), peak=130 * 2**20)
    runs = write_runs(tmp_path / "heavy", heavy)
    assert regress.main([str(runs), "--baseline", str(baseline), "--out", str(out)]) == 1
    text = out.read_text()
    assert text == capsys.readouterr().out and "1 regressed" in text and "REGRESSED" in text
    assert sorted(p.name for p in tmp_path.iterdir()
                  if p.name.startswith(".")) == []  # no temporary left behind


def test_out_is_written_atomically(tmp_path, baseline, planted_records, monkeypatch):
    out = tmp_path / "regression.txt"
    out.write_text("previous report\n")
    calls = []
    real = regress.write_text_atomic
    monkeypatch.setattr(regress, "write_text_atomic",
                        lambda path, text: calls.append(str(path)) or real(path, text))
    runs = write_runs(tmp_path / "now", planted_records)
    assert regress.main([str(runs), "--baseline", str(baseline), "--out", str(out)]) == 0
    assert calls == [str(out)] and "0 regressed" in out.read_text()


@pytest.mark.parametrize("field, value, problem", [
    ("wall_clock_s", "fast", "invalid result record at 'wall_clock_s': 'fast' is not of type "
                             "'number', 'null'"),
    ("status", "done", "invalid result record at 'status': 'done' is not one of "
                       "['ok', 'oom', 'not_applicable']"),
    ("converged", "True", "invalid result record at 'converged': 'True' is not of type "
                          "'boolean', 'null'"),  # text is never read as a flag
    ("forget_logp_after", None, "invalid result record at 'forget_logp_after': null on a "
                                "status-ok record"),
])
def test_malformed_record_is_a_named_error(tmp_path, baseline, planted_records, capsys, field,
                                           value, problem):
    runs = write_runs(tmp_path / "now", planted_records)
    bad = set_field(runs, "npo", field, value)
    out = tmp_path / "regression.txt"
    assert regress.main([str(runs), "--baseline", str(baseline), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {bad}: {problem}\n"
    assert out.read_text() == err + "outcome: bad input (exit 2)\n"


def test_record_files_and_directories_are_both_inputs(tmp_path, baseline, planted_records):
    runs = write_runs(tmp_path / "now", planted_records)
    files = sorted(str(p) for p in runs.iterdir())
    assert regress.main([*files, "--baseline", str(baseline)]) == 0
    assert regress.main([files[0], "--baseline", str(baseline), "--allow-missing"]) == 0
    assert regress.main([files[0], "--baseline", str(baseline)]) == 1  # the others missing


def test_missing_run_fails_unless_allowed(tmp_path, baseline, planted_records):
    runs = write_runs(tmp_path / "now", planted_records[1:])  # timerome absent
    assert regress.main([str(runs), "--baseline", str(baseline)]) == 1
    assert regress.main([str(runs), "--baseline", str(baseline), "--allow-missing"]) == 0
