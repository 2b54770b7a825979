"""The inputs of the reports and of the regression check: job records, read and typed once.

Each record file is read by `harness.results.store.load_record` (schema-valid, strict JSON:
otherwise a RecordError naming the file and the field) into a `Record`, and the records
become one frame by `harness.results.aggregate.runs_frame`; every table is built from that
frame, so values keep their JSON types (booleans stay booleans) and nothing is parsed back
from CSV text. Each consumer states the measurements a status-ok record must have
(`ok_needs`); a record without one is an InputError naming the file and the field:

    <file>: invalid result record at '<field>': null on a status-ok record

The CLIs print either error as `error: <message>` and exit 2; nothing is rendered or written.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from harness.results.aggregate import find_records, runs_frame
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


def load_runs(inputs: Inputs, ok_needs: Sequence[str] = ()) -> pd.DataFrame:
    """The runs frame of the records named by `inputs` (see record_paths), each read and
    checked once (load_record, then check_ok_record) before the frame is built."""
    records = []
    for path in record_paths(inputs):
        record = load_record(path)
        check_ok_record(record, ok_needs, path)
        records.append(record)
    return runs_frame(records)


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
