"""The per-phase edit-time report (harness.reports.edit_phases) on planted records."""

from __future__ import annotations

import pytest
from harness_records import make_record, set_field, write_records

from harness.reports.edit_phases import main, phase_columns, phase_rows
from harness.results.record import Record


def gradient_record(seed: int, guard: float, wall: float = 3.0) -> dict:
    record = make_record(backbone="tw", method="gradient_ascent", wall=wall, seed=seed)
    record["phase_seconds"]["edit"] = wall + guard
    record["method_phase_seconds"] = {"setup": 0.5, "train": 2.0, "convergence_eval": 0.25,
                                      "collapse_guard": guard}
    record["details"] = {"excluded_phases": ["collapse_guard"]}
    return record


def timerome_record() -> dict:
    record = make_record(backbone="tw", method="timerome", wall=1.0)
    record["method_phase_seconds"] = {"tracing": 0.75, "solve": 0.125}
    return record


def test_rows_average_seeds_and_split_counted_from_excluded():
    records = [Record.from_dict(r) for r in
               (gradient_record(0, guard=1.0), gradient_record(1, guard=2.0), timerome_record())]
    rows = {row.method: row for row in phase_rows(records)}
    ga, tr = rows["gradient_ascent"], rows["timerome"]
    assert ga.runs == 2 and ga.counted_s == pytest.approx(3.0)
    assert ga.phases["collapse_guard"] == pytest.approx(1.5) and ga.excluded_s == pytest.approx(1.5)
    assert ga.phases["other"] == pytest.approx(0.25)  # 3.0 counted - 2.75 in named phases
    assert tr.excluded == frozenset() and tr.excluded_s == 0
    assert tr.phases["other"] == pytest.approx(0.125)
    assert phase_columns(list(rows.values())) == [
        "setup", "tracing", "solve", "train", "convergence_eval", "collapse_guard", "other"]


def test_cli_writes_the_markdown_table(tmp_path, capsys):
    directory = write_records(tmp_path / "runs", [gradient_record(0, guard=1.0),
                                                   timerome_record()])
    out = tmp_path / "reports" / "edit_phases.md"
    assert main(["--records", str(directory), "--out", str(out)]) == 0
    lines = out.read_text().splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header[:4] == ["Backbone", "Method", "Facts", "Runs"]
    assert header[-2:] == ["Counted (s)", "Excluded (s)"]
    ga = dict(zip(header, (c.strip() for c in lines[2].strip("|").split("|"))))
    assert ga["Method"] == "gradient_ascent" and ga["collapse_guard"] == "(1.000)"
    assert ga["train"] == "2.000" and ga["Counted (s)"] == "3.000"
    assert ga["Excluded (s)"] == "1.000" and ga["tracing"] == "--"
    assert out.read_text() in capsys.readouterr().out


def test_cli_names_a_bad_record_and_writes_nothing(tmp_path, capsys):
    directory = write_records(tmp_path / "runs", [gradient_record(0, guard=1.0)])
    bad = set_field(directory, "gradient_ascent", "wall_clock_s", None)
    out = tmp_path / "edit_phases.md"
    assert main(["--records", str(directory), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {bad}") and "wall_clock_s" in err
    assert not out.exists()
