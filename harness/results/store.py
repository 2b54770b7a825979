"""One JSON record per job: validated against `record.schema.json`, written atomically,
read back as a typed `Record` (`load_record`).

A record is written to a temporary file in the destination directory, flushed and fsynced,
then `os.replace`d onto its final name: a job killed at any point leaves either no record
or a complete one, never a partial file (Snakemake then reruns the job).

Records are strict JSON: a NaN or an infinity anywhere in a record (written or read) is a
RecordError naming the file and the key path holding it; nothing is written.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

import jsonschema
from harness.atomic import also_at, non_finite_paths, write_json_atomic
from harness.results.record import Record

SCHEMA_FILE = Path(__file__).with_name("record.schema.json")


class RecordError(ValueError):
    """A record that does not match the results schema (names the file and the field)."""


@lru_cache(maxsize=1)
def record_schema() -> dict[str, Any]:
    return json.loads(SCHEMA_FILE.read_text())


@lru_cache(maxsize=1)
def _validator() -> jsonschema.protocols.Validator:
    schema = record_schema()
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema)


# The columns every record carries (the schema's required keys), in schema order.
RECORD_COLUMNS: tuple[str, ...] = tuple(record_schema()["required"])


def validate_record(record: Mapping[str, Any], source: str | os.PathLike = "<record>") -> None:
    """Raise RecordError naming `source` and the offending field if `record` is invalid:
    not matching the schema, or holding a NaN / infinity (strict JSON has neither)."""
    errors = sorted(_validator().iter_errors(dict(record)), key=lambda e: list(e.path))
    if errors:
        err = errors[0]
        where = "/".join(str(p) for p in err.path) or "(top level)"
        raise RecordError(f"{source}: invalid result record at '{where}': {err.message}")
    _check_finite(record, source)


def _check_finite(record: Mapping[str, Any], source: str | os.PathLike) -> None:
    """RecordError naming `source` and the key path of the first NaN / infinity, if any
    (the schema's "number" admits them; strict JSON does not)."""
    paths = non_finite_paths(dict(record))
    if paths:
        where, value = paths[0]
        raise RecordError(f"{source}: invalid result record at '{where}': non-finite number "
                          f"{value!r} (JSON has no NaN or Infinity){also_at(paths)}")


def write_record(path: str | os.PathLike, record: Mapping[str, Any]) -> Path:
    """Validate (schema, then finite numbers only) then atomically write one job record as
    strict JSON."""
    validate_record(record, path)
    return write_json_atomic(path, dict(record))


def read_record(path: str | os.PathLike) -> dict[str, Any]:
    """Read and validate one record (a NaN / Infinity literal is a RecordError naming the
    key path)."""
    p = Path(path)
    try:
        record = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise RecordError(f"{p}: not valid JSON ({exc})") from None
    validate_record(record, p)
    return record


def load_record(path: str | os.PathLike) -> Record:
    """The record at `path`, read and validated (read_record), as a typed `Record`: the one
    way the reports and the regression check read results."""
    return Record.from_dict(read_record(path))
