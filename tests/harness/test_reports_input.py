"""`python -m harness.reports` on malformed inputs: exit 2 with one `error:` line naming the
record file and the field before anything is rendered or written; a real bug still raises.
Well-formed records render as before."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from harness_records import DELETE, make_record, set_field, write_records

from harness.reports import __main__ as reports
from harness.results.store import write_record

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def runs_dir(tmp_path, planted_records):
    """The planted records, one JSON file each, in one directory."""
    return write_records(tmp_path / "runs", planted_records)


def table1(runs: Path, out: Path) -> int:
    return reports.main(["table1", "--records", str(runs), "--out", str(out / "table1")])


def one_error(capsys) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    assert "Traceback" not in captured.err and captured.out == ""  # nothing rendered
    return lines[0]


def test_well_formed_records_render(tmp_path, runs_dir, capsys):
    assert table1(runs_dir, tmp_path / "out") == 0
    out = capsys.readouterr().out
    assert "| bb | timerome |" in out and "8.0x" in out
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "table1.csv", "table1.md", "table1.tex"]


def test_record_files_render_like_their_directory(tmp_path, runs_dir, capsys):
    assert table1(runs_dir, tmp_path / "a") == 0
    files = [str(p) for p in sorted(runs_dir.iterdir())]
    out = tmp_path / "b" / "table1"
    assert reports.main(["table1", "--records", *files, "--out", str(out)]) == 0
    for suffix in (".md", ".tex", ".csv"):
        assert ((tmp_path / "a" / "table1").with_suffix(suffix).read_text()
                == (tmp_path / "b" / "table1").with_suffix(suffix).read_text())


def test_a_flag_written_as_text_is_an_error_not_a_flag(tmp_path, runs_dir, capsys):
    bad = set_field(runs_dir, "graddiff", "converged", "True")
    assert table1(runs_dir, tmp_path / "out") == 2
    assert one_error(capsys) == (f"error: {bad}: invalid result record at 'converged': 'True' "
                                 "is not of type 'boolean', 'null'")
    assert not (tmp_path / "out").exists()


def test_a_null_flag_is_read_as_no_value(tmp_path, runs_dir, capsys):
    # graddiff (the strongest) with convergence unknown is no speedup reference: npo is.
    set_field(runs_dir, "graddiff", "converged", None)
    assert table1(runs_dir, tmp_path / "out") == 0
    rows = {line.split(" | ")[1]: line for line in capsys.readouterr().out.splitlines()
            if line.startswith("| bb | ")}
    assert "| 4.0x |" in rows["timerome"]  # npo 8 s / timerome 2 s
    # converged only when known to have; no FLOP speedup: the records carry no FLOPs
    assert "| 0.5x | -- | no | no |" in rows["graddiff"]


def test_truncated_record_is_an_error(tmp_path, runs_dir, capsys):
    path = sorted(runs_dir.iterdir())[-1]
    text = path.read_text()
    path.write_text(text[:len(text) // 2])  # cut inside the record
    assert table1(runs_dir, tmp_path / "out") == 2
    assert one_error(capsys).startswith(f"error: {path}: not valid JSON (")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("value, problem", [
    ("fast", "'fast' is not of type 'number', 'null'"),
    (float("inf"), "non-finite number inf (JSON has no NaN or Infinity)"),
    (float("nan"), "non-finite number nan (JSON has no NaN or Infinity)"),
])
def test_a_bad_number_is_an_error(tmp_path, runs_dir, capsys, value, problem):
    bad = set_field(runs_dir, "graddiff", "wall_clock_s", value)
    assert table1(runs_dir, tmp_path / "out") == 2
    assert one_error(capsys) == f"error: {bad}: invalid result record at 'wall_clock_s': {problem}"
    assert not (tmp_path / "out").exists()


def test_directory_without_records_is_an_error(tmp_path, capsys):
    empty = tmp_path / "runs"
    empty.mkdir()
    assert table1(empty, tmp_path / "out") == 2
    assert one_error(capsys) == f"error: {empty}: no record (*.json) under this directory"


def test_missing_record_file_is_an_error(tmp_path, capsys):
    missing = tmp_path / "nope.json"
    assert table1(missing, tmp_path / "out") == 2
    assert one_error(capsys) == f"error: {missing}: no such record file or directory"


def test_empty_record_file_is_an_error(tmp_path, runs_dir, capsys):
    path = sorted(runs_dir.iterdir())[0]
    path.write_text("")
    assert table1(runs_dir, tmp_path / "out") == 2
    assert one_error(capsys).startswith(f"error: {path}: not valid JSON (")


def test_missing_required_field_is_an_error(tmp_path, runs_dir, capsys):
    bad = set_field(runs_dir, "npo", "forget_logp_after", DELETE)
    assert table1(runs_dir, tmp_path / "out") == 2
    assert one_error(capsys) == (f"error: {bad}: invalid result record at '(top level)': "
                                 "'forget_logp_after' is a required property")


def test_ok_record_without_an_edit_time_is_an_error(tmp_path, runs_dir, capsys):
    bad = set_field(runs_dir, "timerome", "wall_clock_s", None)
    assert table1(runs_dir, tmp_path / "out") == 2
    assert one_error(capsys) == (f"error: {bad}: invalid result record at 'wall_clock_s': "
                                 "null on a status-ok record")


def test_no_ok_run_is_an_error(tmp_path, planted_records, capsys):
    oom = [dict(r, status="oom", error="CUDA out of memory") for r in planted_records]
    runs = write_records(tmp_path / "runs", oom)
    assert table1(runs, tmp_path / "out") == 2
    assert one_error(capsys) == (f"error: {runs}: no run with status ok (5 records): "
                                 "nothing to tabulate")


def test_scaling_validates_its_records(tmp_path, runs_dir, capsys):
    bad = set_field(runs_dir, "npo", "peak_mem_bytes", "lots")
    assert reports.main(["scaling", "--records", str(runs_dir), "--out", str(tmp_path / "f")]) == 2
    assert one_error(capsys).startswith(
        f"error: {bad}: invalid result record at 'peak_mem_bytes': 'lots' is not of type")
    assert not (tmp_path / "f").exists()


def test_transfer_with_a_malformed_record_is_an_error(tmp_path, capsys):
    good = write_record(tmp_path / "good.json", make_record())
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**make_record(), "wall_clock_s": "fast"}))
    argv = ["transfer", "--records", str(good), str(bad), "--out", str(tmp_path / "t"),
            "--source", "bb"]
    assert reports.main(argv) == 2
    assert one_error(capsys).startswith(f"error: {bad}: invalid result record at 'wall_clock_s'")


def test_transfer_with_a_malformed_tuning_file_is_an_error(tmp_path, capsys):
    good = write_record(tmp_path / "good.json", make_record())
    tuned = tmp_path / "tuned.json"
    tuned.write_text('{"chosen": {"alpha": 4')
    argv = ["transfer", "--records", str(good), "--out", str(tmp_path / "t"), "--source", "bb",
            "--tuned", str(tuned)]
    assert reports.main(argv) == 2
    assert one_error(capsys).startswith(f"error: {tuned}: not valid JSON")


def test_sequential_record_without_a_curve_is_an_error(tmp_path, capsys):
    rec = write_record(tmp_path / "seq.json", make_record(experiment="sequential"))
    assert reports.main(["sequential", "--records", str(rec), "--out", str(tmp_path / "s")]) == 2
    assert one_error(capsys) == f"error: {rec}: no 'curve' (a sequential record has one)"


def test_a_real_bug_still_raises(tmp_path, runs_dir, monkeypatch):
    import harness.reports.table1 as table1_module

    def broken(*args, **kwargs):
        raise RuntimeError("bug")

    monkeypatch.setattr(table1_module, "build_table1", broken)
    with pytest.raises(RuntimeError, match="bug"):
        table1(runs_dir, tmp_path / "out")


def test_help_documents_the_exit_codes():
    for argv in (["--help"], ["table1", "--help"]):
        done = subprocess.run([sys.executable, "-m", "harness.reports", *argv], cwd=REPO_ROOT,
                              capture_output=True, check=False, text=True, timeout=120)
        assert done.returncode == 0
        text = " ".join(done.stdout.split())
        assert "exit status: 0 ok; 2 bad input" in text, done.stdout


def test_cli_exit_code_on_bad_input(tmp_path, runs_dir):
    bad = set_field(runs_dir, "graddiff", "converged", "maybe")
    done = subprocess.run([sys.executable, "-m", "harness.reports", "table1", "--records",
                           str(runs_dir), "--out", str(tmp_path / "out" / "table1")],
                          cwd=REPO_ROOT, capture_output=True, check=False, text=True, timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == (f"error: {bad}: invalid result record at 'converged': 'maybe' "
                           "is not of type 'boolean', 'null'\n")
