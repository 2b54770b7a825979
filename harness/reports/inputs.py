"""The inputs of the reports and of the regression check: job records, read and typed once.

Each record file is read by `harness.results.store.load_record` (schema-valid, strict JSON:
otherwise a RecordError naming the file and the field) into a `Record`, and the records
become one frame by `harness.results.aggregate.runs_frame`; every table is built from that
frame, so values keep their JSON types (booleans stay booleans) and nothing is parsed back
from CSV text. Each consumer states the measurements a status-ok record must have
(`ok_needs`); a record without one is an InputError naming the file and the field:

    <file>: invalid result record at '<field>': null on a status-ok record

The CLIs print either error as `error: <message>` and exit 2; nothing is rendered or written.

`load_runs` adds to the frame how many facts the quality scores of each record rest on
(`FACT_COUNT_COLUMNS`, from `details.notes.fact_counts`, written by
harness.jobs.run_method; empty for a record without them), for the tables' notes.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from harness.results.aggregate import ORDER, find_records, runs_frame
from harness.results.record import Record
from harness.results.store import load_record

Inputs = Sequence[str | os.PathLike]


class InputError(ValueError):
    """A malformed input file; the message names the file (and the field or entry)."""


def record_paths(inputs: Inputs) -> list[Path]:
    """The record files named by `inputs`: a file as given, a directory as the records
    under it (sorted); InputError for a path that is neither, or a directory without one."""
    paths: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = find_records(path)
            if not found:
                raise InputError(f"{path}: no record (*.json) under this directory")
            paths += found
        elif path.is_file():
            paths.append(path)
        else:
            raise InputError(f"{path}: no such record file or directory")
    return paths


def check_ok_record(record: Record, ok_needs: Sequence[str], source: str | os.PathLike) -> None:
    """InputError naming `source` and the field when `record` is status ok and lacks one of
    `ok_needs` (the schema lets a measurement be null; a table cannot use such a run)."""
    if record.status != "ok":
        return
    for name in ok_needs:
        if getattr(record, name) is None:
            raise InputError(f"{source}: invalid result record at '{name}': null on a "
                             "status-ok record")


# Frame column -> the entry of a record's `details.notes.fact_counts` it holds.
FACT_COUNT_COLUMNS = {
    "n_forget_quality": "forget_quality",  # truth ratios per model in the KS test
    "n_model_utility": "model_utility",  # facts per utility set, "set: n, set: n, ..."
}


def fact_count_cells(record: Record) -> dict[str, object]:
    """The FACT_COUNT_COLUMNS cells of one record (None where it did not record them)."""
    notes = (record.details or {}).get("notes")
    counts = notes.get("fact_counts") if isinstance(notes, dict) else None
    counts = counts if isinstance(counts, dict) else {}
    cells: dict[str, object] = {}
    for column, key in FACT_COUNT_COLUMNS.items():
        value = counts.get(key)
        if isinstance(value, dict):
            value = ", ".join(f"{name}: {n}" for name, n in value.items())
        cells[column] = value
    return cells


def load_runs(inputs: Inputs, ok_needs: Sequence[str] = ()) -> pd.DataFrame:
    """The runs frame of the records named by `inputs` (see record_paths), each read and
    checked once (load_record, then check_ok_record) before the frame is built, with the
    FACT_COUNT_COLUMNS of each record."""
    records = []
    for path in record_paths(inputs):
        record = load_record(path)
        check_ok_record(record, ok_needs, path)
        records.append(record)
    # In the frame's own row order (a stable sort on the same keys), so row i is records[i].
    records.sort(key=lambda r: tuple(getattr(r, key) for key in ORDER))
    frame = runs_frame(records)
    counts = pd.DataFrame([fact_count_cells(r) for r in records],
                          columns=list(FACT_COUNT_COLUMNS), dtype=object)
    keys = [tuple(getattr(r, key) for key in ORDER) for r in records]
    if records and list(frame[ORDER].itertuples(index=False, name=None)) != keys:
        raise RuntimeError("runs_frame reordered the records: fact counts cannot be attached")
    return pd.concat([frame, counts], axis=1)


def describe(inputs: Inputs) -> str:
    """How an error names the inputs: the one path, or how many there were."""
    return str(inputs[0]) if len(inputs) == 1 else f"{len(inputs)} record inputs"


def ok_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows whose status is ok (none of an empty frame)."""
    if "status" not in frame.columns:
        return frame.iloc[0:0]
    return frame[frame["status"] == "ok"]


def require_ok_runs(frame: pd.DataFrame, source: str, what: str) -> None:
    if ok_rows(frame).empty:
        raise InputError(f"{source}: no run with status ok ({len(frame)} records): "
                         f"nothing to {what}")
