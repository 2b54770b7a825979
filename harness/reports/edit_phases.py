"""Per-phase breakdown of the edit time: backbone x method, each phase's seconds.

`python -m harness.reports.edit_phases --records DIR_OR_FILE... --out reports/edit_phases.md`

Every input is a job record (read and typed once: `harness.reports.inputs.record_paths`,
`harness.results.store.load_record`). A row is one backbone x method x number of facts,
the mean over its status-ok records (seeds). Columns: each phase the method reported
(`Record.method_phase_seconds`); an excluded phase (the harness's bookkeeping, named in
`details["excluded_phases"]`, which the job copies from `MethodOutcome.excluded_phases`)
is shown in parentheses; `other` is the edit time spent outside every named phase;
`counted` is the record's edit time (`wall_clock_s`, what Table 1 reports: the edit
minus the excluded phases); `excluded` is the sum of the excluded phases. The rules:
docs/measurements/edit_timing_rules.md.

Exit status: 0 ok; 2 bad input (a malformed record, or no status-ok record with an edit
time), printed as `error: <file>: <what is wrong>` before anything is written.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.atomic import write_text_atomic
from harness.reports.inputs import (
    InputError,
    Inputs,
    check_ok_record,
    describe,
    record_paths,
)
from harness.reports.render import Table
from harness.results.record import Record
from harness.results.store import RecordError, load_record

EXCLUDED_KEY = "excluded_phases"  # in Record.details: MethodOutcome.excluded_phases
NEEDS = ("wall_clock_s",)  # what a status-ok record must have to be a row
OTHER = "other"  # edit time outside every named phase
PHASE_ORDER = (  # the order phases are shown in (the order they run); others follow, sorted
    "setup", "prefixes", "tracing", "covariance", "keys", "key_delta_extraction",
    "value_optimisation", "update", "solve", "train", "convergence_eval",
    "collapse_guard", "report_eval", "undo_copy")


@dataclass(frozen=True)
class PhaseRow:
    """One backbone x method x n_facts: mean seconds per phase over `runs` records."""

    backbone: str
    method: str
    n_facts: int
    runs: int
    phases: dict[str, float]  # mean seconds per phase, `other` included
    excluded: frozenset[str]  # phases of `phases` excluded from the edit time
    counted_s: float  # mean edit time (wall_clock_s)

    @property
    def excluded_s(self) -> float:
        return sum(self.phases[p] for p in self.excluded)


def load_ok_records(inputs: Inputs) -> list[Record]:
    """The status-ok records named by `inputs` (each read, validated and checked once)."""
    records = []
    for path in record_paths(inputs):
        record = load_record(path)
        check_ok_record(record, NEEDS, path)
        if record.status == "ok":
            records.append(record)
    if not records:
        raise InputError(f"{describe(inputs)}: no run with status ok: nothing to tabulate")
    return records


def excluded_phases(record: Record) -> frozenset[str]:
    return frozenset((record.details or {}).get(EXCLUDED_KEY) or ())


def _phases_of(record: Record) -> dict[str, float]:
    """The record's method phases plus `other` = edit time - every named phase's time."""
    phases = dict(record.method_phase_seconds or {})
    excluded = excluded_phases(record)
    named_counted = sum(s for p, s in phases.items() if p not in excluded)
    phases[OTHER] = max(0.0, float(record.wall_clock_s) - named_counted)
    return phases


def phase_rows(records: Sequence[Record]) -> list[PhaseRow]:
    """One row per backbone x method x n_facts (in first-seen order), means over records."""
    groups: dict[tuple[str, str, int], list[Record]] = {}
    for record in records:
        groups.setdefault((record.backbone, record.method, record.n_facts), []).append(record)
    rows = []
    for (backbone, method, n_facts), group in groups.items():
        per_run = [_phases_of(r) for r in group]
        names = {p for phases in per_run for p in phases}
        mean = {p: sum(ph.get(p, 0.0) for ph in per_run) / len(per_run) for p in names}
        excluded = frozenset().union(*(excluded_phases(r) for r in group)) & names
        counted = sum(float(r.wall_clock_s) for r in group) / len(group)
        rows.append(PhaseRow(backbone, method, n_facts, len(group), mean, excluded, counted))
    return sorted(rows, key=lambda r: (r.backbone, r.method, r.n_facts))


def phase_columns(rows: Sequence[PhaseRow]) -> list[str]:
    """Every phase of `rows`: PHASE_ORDER first, the rest sorted, `other` last."""
    names = {p for row in rows for p in row.phases} - {OTHER}
    known = [p for p in PHASE_ORDER if p in names]
    return known + sorted(names - set(known)) + [OTHER]


def _seconds(value: float | None) -> str:
    return "--" if value is None or math.isnan(value) else f"{value:.3f}"


def phase_table(rows: Sequence[PhaseRow]) -> Table:
    columns = phase_columns(rows)
    headers = ["Backbone", "Method", "Facts", "Runs", *columns, "Counted (s)", "Excluded (s)"]
    cells = []
    for row in rows:
        phase_cells = []
        for phase in columns:
            text = _seconds(row.phases.get(phase))
            phase_cells.append(f"({text})" if phase in row.excluded else text)
        cells.append([row.backbone, row.method, str(row.n_facts), str(row.runs), *phase_cells,
                      _seconds(row.counted_s), _seconds(row.excluded_s)])
    note = ("Seconds per phase, mean over the runs (seeds). (x): the harness's bookkeeping, "
            "excluded from the edit time; `other`: edit time outside every named phase; "
            "Counted: the edit time Table 1 reports (docs/measurements/edit_timing_rules.md).")
    return Table(headers, headers, cells, [note], n_text_columns=2)


def edit_phases_markdown(inputs: Inputs) -> str:
    return phase_table(phase_rows(load_ok_records(inputs))).markdown()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m harness.reports.edit_phases",
                                description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--records", nargs="+", required=True,
                   help="record JSON files, or directories searched for them")
    p.add_argument("--out", required=True, help="the Markdown file to write")
    args = p.parse_args(argv)
    try:
        text = edit_phases_markdown(args.records)
    except (InputError, RecordError) as exc:  # bad input; anything else is a bug: traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2
    write_text_atomic(Path(args.out), text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
