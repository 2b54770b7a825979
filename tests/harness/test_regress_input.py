"""`python -m harness.regress` on malformed inputs: exit 2 (bad input) with one `error:` line,
never 1 (which means "regression found") and never a traceback; a real bug is exit 3."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import test_regress
from harness_records import set_field
from test_regress import write_runs

from harness import regress

REPO_ROOT = Path(__file__).resolve().parents[2]
regress_baseline = test_regress.baseline  # the fixture (a baseline of the planted records)


@pytest.fixture
def runs_dir(tmp_path, planted_records):
    """The planted records, one JSON file each, in one directory."""
    return write_runs(tmp_path / "now", planted_records)


def check(runs: Path, baseline_path: Path, *extra: str) -> int:
    return regress.main([str(runs), "--baseline", str(baseline_path), *extra])


def one_error(capsys) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    assert "Traceback" not in captured.err and captured.out == ""
    return lines[0]


def test_truncated_record_is_an_error_not_skipped(tmp_path, runs_dir, regress_baseline, capsys):
    path = sorted(runs_dir.iterdir())[1]
    text = path.read_text()
    path.write_text(text[:len(text) // 2])  # a record cut short (a killed copy)
    assert check(runs_dir, regress_baseline) == 2
    assert one_error(capsys).startswith(f"error: {path}: not valid JSON (")


def test_text_in_a_logp_field_is_bad_input_not_a_regression(tmp_path, runs_dir,
                                                             regress_baseline, capsys):
    # graddiff (the speedup reference) lost its forget drop: every speedup changed -> exit 1.
    bad = set_field(runs_dir, "graddiff", "forget_logp_after", "oops")
    assert check(runs_dir, regress_baseline) == 2
    assert one_error(capsys) == (
        f"error: {bad}: invalid result record at 'forget_logp_after': 'oops' is not of type "
        "'number', 'null'")


def test_unknown_flag_is_bad_input_not_a_regression(tmp_path, runs_dir, regress_baseline,
                                                    capsys):
    bad = set_field(runs_dir, "graddiff", "converged", "maybe")
    assert check(runs_dir, regress_baseline) == 2
    assert one_error(capsys) == (f"error: {bad}: invalid result record at 'converged': 'maybe' "
                                 "is not of type 'boolean', 'null'")


def test_directory_without_records_is_bad_input(tmp_path, regress_baseline, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert check(empty, regress_baseline) == 2
    assert one_error(capsys) == f"error: {empty}: no record (*.json) under this directory"


@pytest.mark.parametrize("payload, problem", [
    ({"entries": [{"device_class": "cpu"}]},
     "invalid baseline at 'entries/0': 'experiment' is a required property"),
    ({"entries": [{"device_class": "cpu", "experiment": "table1", "backbone": "bb",
                   "method": "timerome", "n_facts": 10, "speedup": "fast"}]},
     "invalid baseline at 'entries/0/speedup': 'fast' is not of type 'number', 'null'"),
    ({"entries": [1]}, "invalid baseline at 'entries/0': 1 is not of type 'object'"),
    ([1, 2], "invalid baseline at '(top level)': [1, 2] is not of type 'object'"),
    ({"schema": 1}, "invalid baseline at '(top level)': 'entries' is a required property"),
])
def test_malformed_baseline_is_bad_input(tmp_path, runs_dir, capsys, payload, problem):
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps(payload))
    out = tmp_path / "regression.txt"
    assert check(runs_dir, path, "--out", str(out)) == 2
    assert one_error(capsys) == f"error: {path}: {problem}"
    assert out.read_text() == f"error: {path}: {problem}\noutcome: bad input (exit 2)\n"
    assert json.loads(path.read_text()) == payload  # not rewritten


def test_non_finite_baseline_value_is_bad_input(tmp_path, runs_dir, capsys):
    path = tmp_path / "baseline.json"
    path.write_text('{"entries": [{"device_class": "cpu", "experiment": "table1", '
                    '"backbone": "bb", "method": "timerome", "n_facts": 10, "speedup": NaN}]}')
    assert check(runs_dir, path) == 2
    assert one_error(capsys) == (f"error: {path}: invalid baseline at 'entries/0/speedup': "
                                 "non-finite number nan (JSON has no NaN or Infinity)")


def test_duplicate_baseline_entries_are_bad_input(tmp_path, runs_dir, capsys):
    entry = {"device_class": "cpu", "experiment": "table1", "backbone": "bb",
             "method": "timerome", "n_facts": 10, "speedup": 8.0}
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps({"entries": [entry, entry]}))
    assert check(runs_dir, path) == 2
    assert one_error(capsys) == (f"error: {path}: invalid baseline at 'entries/1': same key "
                                 "as entry 0 (cpu, table1, bb, timerome, 10)")


def test_write_baseline_over_a_malformed_file_is_bad_input(tmp_path, runs_dir, capsys):
    path = tmp_path / "baseline.json"
    path.write_text('{"entries": [1]}')
    assert check(runs_dir, path, "--write-baseline") == 2
    assert one_error(capsys) == (f"error: {path}: invalid baseline at 'entries/0': 1 is not "
                                 "of type 'object'")
    assert path.read_text() == '{"entries": [1]}'


def test_cli_malformed_baseline_exits_2_without_traceback(tmp_path, runs_dir):
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps({"entries": [{"device_class": "cpu"}]}))
    done = subprocess.run([sys.executable, "-m", "harness.regress", str(runs_dir),
                           "--baseline", str(path)], cwd=REPO_ROOT, capture_output=True,
                          check=False, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr == (f"error: {path}: invalid baseline at 'entries/0': 'experiment' is "
                           "a required property\n")


def test_a_real_bug_is_exit_3_with_a_traceback(tmp_path, runs_dir, regress_baseline,
                                               monkeypatch, capsys):
    def broken(*args, **kwargs):
        raise RuntimeError("bug")

    monkeypatch.setattr(regress, "compare", broken)
    with pytest.raises(RuntimeError, match="bug"):  # main itself does not hide it
        check(runs_dir, regress_baseline)
    argv = [str(runs_dir), "--baseline", str(regress_baseline)]
    assert regress.cli(argv) == regress.EXIT_BUG == 3
    err = capsys.readouterr().err
    assert "Traceback" in err and "RuntimeError: bug" in err


def test_help_documents_the_exit_codes():
    done = subprocess.run([sys.executable, "-m", "harness.regress", "--help"], cwd=REPO_ROOT,
                          capture_output=True, check=False, text=True, timeout=120)
    assert done.returncode == 0
    text = " ".join(done.stdout.split())
    assert ("exit status: 0 all within tolerance (or --write-baseline done); "
            "1 regression found") in text
    assert "2 bad input" in text and "3 internal error" in text and "4 no baseline" in text
