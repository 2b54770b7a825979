"""`python -m harness.reports` on malformed inputs: exit 2 with one `error:` line naming the
file (and the row and column of a bad cell) before anything is rendered or written; a real
bug still raises. Well-formed input renders as before."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from harness_records import make_record, set_cell
from test_regress import write_runs

from harness.reports import __main__ as reports
from harness.results.store import write_record

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def runs_csv(tmp_path, planted_records):
    # Rows (sorted by method): 1 graddiff, 2 gradient_ascent, 3 npo, 4 rome, 5 timerome.
    return write_runs(tmp_path / "runs.csv", planted_records)



def table1(runs: Path, out: Path) -> int:
    return reports.main(["table1", "--runs", str(runs), "--out", str(out / "table1")])


def one_error(capsys) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    assert "Traceback" not in captured.err and captured.out == ""  # nothing rendered
    return lines[0]


def test_well_formed_csv_renders(tmp_path, runs_csv, capsys):
    assert table1(runs_csv, tmp_path / "out") == 0
    out = capsys.readouterr().out
    assert "| bb | timerome |" in out and "8.0x" in out
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "table1.csv", "table1.md", "table1.tex"]


def test_lower_case_booleans_are_accepted(tmp_path, runs_csv, capsys):
    text = runs_csv.read_text().replace(",True,", ",true,").replace(",False,", ",false,")
    runs_csv.write_text(text)
    assert table1(runs_csv, tmp_path / "out") == 0
    line = next(l for l in capsys.readouterr().out.splitlines() if "| timerome |" in l)
    assert "8.0x" in line


def test_truncated_csv_is_an_error(tmp_path, runs_csv, capsys):
    text = runs_csv.read_text()
    last = text.rstrip("\n").rsplit("\n", 1)[1]
    runs_csv.write_text(text[:len(text) - 1 - len(last) // 2])  # cut inside the last row
    assert table1(runs_csv, tmp_path / "out") == 2
    err = one_error(capsys)
    assert err.startswith(f"error: {runs_csv}: line 6: malformed run row: ")
    assert "fields (truncated or stray line)" in err and "(row 5, column " in err
    assert not (tmp_path / "out").exists()


def test_cut_inside_the_last_cell_is_an_error(tmp_path, runs_csv, capsys):
    runs_csv.write_text(runs_csv.read_text()[:-2])  # "5.x\n" -> "5."
    assert table1(runs_csv, tmp_path / "out") == 2
    assert "does not end with a newline" in one_error(capsys)


@pytest.mark.parametrize("value, problem", [
    ("fast", "wall_clock_s 'fast' is not a finite number"),
    ("inf", "wall_clock_s 'inf' is not a finite number"),
    ("nan", "wall_clock_s 'nan' is not a finite number"),
])
def test_text_in_a_numeric_cell_is_an_error(tmp_path, runs_csv, capsys, value, problem):
    set_cell(runs_csv, "graddiff", "wall_clock_s", value)
    assert table1(runs_csv, tmp_path / "out") == 2
    err = one_error(capsys)
    assert err == (f"error: {runs_csv}: line 2: malformed run row: {problem} "
                   "(row 1, column wall_clock_s)")
    assert not (tmp_path / "out").exists()


def test_header_only_csv_is_an_error(tmp_path, runs_csv, capsys):
    runs_csv.write_text(runs_csv.read_text().splitlines()[0] + "\n")
    assert table1(runs_csv, tmp_path / "out") == 2
    assert one_error(capsys) == f"error: {runs_csv}: no data rows (only a header)"
    assert not (tmp_path / "out").exists()


def test_empty_file_is_an_error(tmp_path, capsys):
    runs = tmp_path / "runs.csv"
    runs.write_text("")
    assert table1(runs, tmp_path / "out") == 2
    assert one_error(capsys) == f"error: {runs}: empty file (no header)"


def test_unknown_boolean_is_an_error_not_false(tmp_path, runs_csv, capsys):
    # graddiff is the strongest converged baseline: read as False, it silently moved every
    # speedup to another reference (timerome 8.0x -> 4.0x).
    set_cell(runs_csv, "graddiff", "converged", "maybe")
    assert table1(runs_csv, tmp_path / "out") == 2
    assert one_error(capsys) == (
        f"error: {runs_csv}: line 2: malformed run row: converged 'maybe' is not true or "
        "false (row 1, column converged)")


def test_missing_required_column_is_an_error(tmp_path, runs_csv, capsys):
    lines = [line.split(",") for line in runs_csv.read_text().splitlines()]
    drop = lines[0].index("forget_logp_after")
    runs_csv.write_text("\n".join(",".join(c for j, c in enumerate(cells) if j != drop)
                                  for cells in lines) + "\n")
    assert table1(runs_csv, tmp_path / "out") == 2
    assert one_error(capsys) == (f"error: {runs_csv}: header lacks required column(s) "
                                 "forget_logp_after (line 1, column forget_logp_after)")


def test_ok_row_without_an_edit_time_is_an_error(tmp_path, runs_csv, capsys):
    set_cell(runs_csv, "timerome", "wall_clock_s", "")
    assert table1(runs_csv, tmp_path / "out") == 2
    assert one_error(capsys).endswith(
        "line 6: malformed run row: wall_clock_s is empty on a status-ok row "
        "(row 5, column wall_clock_s)")


def test_no_ok_run_is_an_error(tmp_path, planted_records, capsys):
    oom = [dict(r, status="oom", error="CUDA out of memory") for r in planted_records]
    runs = write_runs(tmp_path / "runs.csv", oom)
    assert table1(runs, tmp_path / "out") == 2
    assert one_error(capsys) == (f"error: {runs}: no run with status ok (5 rows): "
                                 "nothing to tabulate")


def test_scaling_validates_its_csv(tmp_path, runs_csv, capsys):
    set_cell(runs_csv, "npo", "peak_mem_bytes", "lots")
    assert reports.main(["scaling", "--runs", str(runs_csv), "--out", str(tmp_path / "f")]) == 2
    assert one_error(capsys).endswith(
        "peak_mem_bytes 'lots' is not a finite number (row 3, column peak_mem_bytes)")
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


def test_a_real_bug_still_raises(tmp_path, runs_csv, monkeypatch):
    import harness.reports.table1 as table1_module

    def broken(*args, **kwargs):
        raise RuntimeError("bug")

    monkeypatch.setattr(table1_module, "build_table1", broken)
    with pytest.raises(RuntimeError, match="bug"):
        table1(runs_csv, tmp_path / "out")


def test_help_documents_the_exit_codes():
    for argv in (["--help"], ["table1", "--help"]):
        done = subprocess.run([sys.executable, "-m", "harness.reports", *argv], cwd=REPO_ROOT,
                              capture_output=True, check=False, text=True, timeout=120)
        assert done.returncode == 0
        text = " ".join(done.stdout.split())
        assert "exit status: 0 ok; 2 bad input" in text, done.stdout


def test_cli_exit_code_on_bad_input(tmp_path, runs_csv):
    set_cell(runs_csv, "graddiff", "converged", "maybe")
    done = subprocess.run([sys.executable, "-m", "harness.reports", "table1", "--runs",
                           str(runs_csv), "--out", str(tmp_path / "out" / "table1")],
                          cwd=REPO_ROOT, capture_output=True, check=False, text=True, timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith(f"error: {runs_csv}: line 2: malformed run row: converged")
