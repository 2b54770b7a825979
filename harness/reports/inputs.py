"""Validation of a runs CSV (`harness.results.aggregate`'s output) before anything is rendered.

Each consumer states what it needs as a `RunsSpec` (required columns; key, number, whole
number and true/false columns; what a status-ok row must have), turned into a JSON schema
that every row is validated against (`jsonschema`), after its cells are typed: blank -> no
value; a number column's cell -> float only when it parses as a finite number; a true/false
column's cell -> bool only for true/false in any case (the writer, pandas, writes True/False
and blank for no value). Anything else stays the text it was, so the schema names it.

A malformed file is an `InputError` naming the file and the first bad row:

    <file>: line L: malformed run row: <problem>[; <problem> ...] (row N, column C)

(row N counts data rows from 1; line L is the file line the row starts on, the header being
line 1), or the file-level problem (empty, header only, a required column missing, no final
newline). The CLIs print it as `error: <message>` and exit 2; nothing is rendered or written.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import jsonschema
import pandas as pd

STATUSES = ("ok", "oom", "not_applicable")
BOOLEANS = {"true": True, "false": False}


class InputError(ValueError):
    """A malformed input file; the message names the file (and the row and column)."""


@dataclass(frozen=True)
class RunsSpec:
    """What one consumer needs of a runs CSV. Every rule but `required` applies to a column
    only when the header has it."""

    required: tuple[str, ...]  # columns the header must have
    keys: tuple[str, ...] = ()  # text, never empty
    numbers: tuple[str, ...] = ()  # finite numbers; blank = no value
    whole: Mapping[str, int] = field(default_factory=dict)  # whole numbers >= the minimum
    flags: tuple[str, ...] = ()  # true / false (any case); blank = no value
    ok_needs: tuple[str, ...] = ()  # numbers a status-ok (or blank-status) row must have

    @cached_property
    def properties(self) -> dict[str, dict[str, Any]]:
        props: dict[str, dict[str, Any]] = {}
        for name in self.numbers:
            props[name] = {"type": ["number", "null"]}
        for name, minimum in self.whole.items():
            props[name] = {"type": "integer", "minimum": minimum}
        for name in self.flags:
            props[name] = {"type": ["boolean", "null"]}
        for name in self.keys:
            props[name] = {"type": "string", "minLength": 1}
        props["status"] = {"enum": [*STATUSES, None]}  # blank status = ok
        return props

    @cached_property
    def schema(self) -> dict[str, Any]:
        """JSON schema of one typed row."""
        schema: dict[str, Any] = {"type": "object", "properties": self.properties}
        if self.ok_needs:
            schema["if"] = {"properties": {"status": {"enum": ["ok", None]}}}
            schema["then"] = {"properties": {name: {"type": "number"}
                                             for name in self.ok_needs}}
        return schema

    @cached_property
    def validator(self) -> jsonschema.protocols.Validator:
        return jsonschema.Draft202012Validator(self.schema)


def _types(prop: Mapping[str, Any]) -> list[str]:
    kind = prop.get("type", [])
    return [kind] if isinstance(kind, str) else list(kind)


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or \
        (isinstance(value, str) and not value.strip()) or value is pd.NA


def typed_cell(value: Any, prop: Mapping[str, Any]) -> Any:
    """`value` (a CSV text cell, or a DataFrame cell) as the schema property expects it,
    or left as it is (text) when it is not one, so that validation names it."""
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()  # numpy scalar -> Python
    if _blank(value):
        return None
    types = _types(prop)
    if isinstance(value, str):
        text = value.strip()
        if "boolean" in types:
            return BOOLEANS.get(text.lower(), value)
        if "number" in types or "integer" in types:
            try:
                number = float(text)
            except ValueError:
                return value
            if not math.isfinite(number):
                return value
            if "number" not in types:  # integer
                return int(number) if number.is_integer() else value
            return number
        return value
    if isinstance(value, bool):
        return value  # neither a number nor an integer to the schema
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            return repr(value)
        if "integer" in types and "number" not in types:
            return int(value) if float(value).is_integer() else value
        if "number" in types or "integer" in types:
            return value
        return str(value)  # a key or status column pandas read as a number
    return value


def _describe(prop: Mapping[str, Any]) -> str:
    types = _types(prop)
    if "boolean" in types:
        return "true or false"
    if "integer" in types:
        minimum = prop.get("minimum")
        return "a whole number" + ("" if minimum is None else f" >= {minimum}")
    if "number" in types:
        return "a finite number"
    return "text"


def row_problems(cells: Mapping[str, Any], spec: RunsSpec, order: Sequence[str]
                 ) -> list[tuple[str, str]]:
    """(column, problem) of each bad cell of one row (one per column): empty keys first
    (they say which row it is, or that it is no run at all), then in column order."""
    props = spec.properties
    typed = {name: typed_cell(value, props[name]) if name in props else value
             for name, value in cells.items()}
    found: dict[str, tuple[bool, str]] = {}
    for err in spec.validator.iter_errors(typed):
        if not err.path:
            raise AssertionError(f"row schema error without a column: {err.message}")
        name = str(err.path[0])
        on_ok_row = "then" in err.schema_path
        raw = cells.get(name)
        if typed.get(name) is None:
            problem = f"{name} is empty" + (" on a status-ok row" if on_ok_row else "")
        elif err.validator == "enum":
            problem = f"{name} {raw!r} is not one of {', '.join(STATUSES)}"
        elif err.validator in ("type", "minimum", "minLength"):
            problem = f"{name} {raw!r} is not {_describe(props.get(name, {}))}"
        else:
            problem = f"{name}: {err.message}"
        if name not in found or (found[name][0] and not on_ok_row):
            found[name] = (on_ok_row, problem)
    position = {name: i for i, name in enumerate(order)}
    return [(name, found[name][1]) for name in
            sorted(found, key=lambda n: (n not in spec.keys, position.get(n, 0)))]


def _row_error(source: str, line: int, row: int, problems: list[tuple[str, str]],
               shown: int = 6) -> InputError:
    text = "; ".join(p for _, p in problems[:shown])
    if len(problems) > shown:
        text += f"; and {len(problems) - shown} more"
    return InputError(f"{source}: line {line}: malformed run row: {text} "
                      f"(row {row}, column {problems[0][0]})")


def check_header(header: Sequence[str], spec: RunsSpec, source: str) -> None:
    seen: set[str] = set()
    for name in header:
        if name in seen:
            raise InputError(f"{source}: column {name!r} appears twice in the header "
                             f"(line 1, column {name})")
        seen.add(name)
    missing = [name for name in spec.required if name not in seen]
    if missing:
        raise InputError(f"{source}: header lacks required column(s) {', '.join(missing)} "
                         f"(line 1, column {missing[0]})")


def _records(text: str, source: str) -> Iterable[tuple[int, list[str]]]:
    """(start line, cells) of each non-blank CSV record."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    while True:
        start = reader.line_num + 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise InputError(f"{source}: line {start}: not valid CSV ({exc}; the record "
                             f"starting there runs to line {reader.line_num})") from None
        if cells:  # a blank line is skipped (as pandas does)
            yield start, cells


def read_runs_csv(path: str | Path, spec: RunsSpec) -> pd.DataFrame:
    """The runs CSV at `path` as a typed DataFrame, or InputError (see the module doc)."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"{source}: cannot read ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{source}: not UTF-8 text ({exc})") from None
    records = iter(_records(text, source))
    first = next(records, None)
    if first is None:
        raise InputError(f"{source}: empty file (no header)")
    header = [name.strip() for name in first[1]]
    check_header(header, spec, source)
    rows: list[list[str]] = []
    for line, cells in records:
        row = len(rows) + 1
        problems: list[tuple[str, str]] = []
        if len(cells) > len(header):
            raise _row_error(source, line, row, [(
                str(len(header) + 1),
                f"{len(cells)} fields where the header has {len(header)} (a stray line?)")])
        if len(cells) < len(header):
            short = f"{len(cells)} of {len(header)} fields (truncated or stray line)"
            problems.append((header[len(cells)], short))
            cells = cells + [""] * (len(header) - len(cells))
        problems += row_problems(dict(zip(header, cells)), spec, header)
        if problems:
            raise _row_error(source, line, row, problems)
        rows.append(cells)
    if not rows:
        raise InputError(f"{source}: no data rows (only a header)")
    if not text.endswith(("\n", "\r")):
        raise InputError(f"{source}: does not end with a newline, so its last row may be cut "
                         f"short (row {len(rows)}, column {header[-1]})")
    return typed_frame(header, rows, spec)


def typed_frame(header: Sequence[str], rows: Sequence[Sequence[str]], spec: RunsSpec
                ) -> pd.DataFrame:
    """Validated text rows as a DataFrame: spec columns typed as validated (numbers float,
    whole numbers int, flags True/False/None, text as is), other columns numeric when every
    non-blank cell is a number, else text; blank = missing."""
    props = spec.properties
    columns: dict[str, pd.Series] = {}
    for j, name in enumerate(header):
        cells = [row[j] for row in rows]
        prop = props.get(name)
        if prop is None:
            series = pd.Series([c if c.strip() else None for c in cells], dtype=object)
            try:
                series = pd.to_numeric(series)
            except (ValueError, TypeError):
                pass
        else:
            values = [typed_cell(c, prop) for c in cells]
            types = _types(prop)
            if "number" in types:
                series = pd.Series(values, dtype=float)
            elif "integer" in types:
                series = pd.Series(values, dtype="int64")
            else:
                series = pd.Series(values, dtype=object)
        columns[name] = series
    return pd.DataFrame(columns)


def validate_frame(frame: pd.DataFrame, spec: RunsSpec, source: str = "runs") -> None:
    """The same checks on an in-memory runs frame (line = index + 2, row = index + 1)."""
    header = [str(c) for c in frame.columns]
    check_header(header, spec, source)
    for i, cells in enumerate(frame.to_dict("records")):
        problems = row_problems({str(k): v for k, v in cells.items()}, spec, header)
        if problems:
            raise _row_error(source, i + 2, i + 1, problems)


def ok_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows whose status is ok (a blank or absent status counts as ok)."""
    if "status" not in frame.columns:
        return frame
    return frame[frame["status"].fillna("ok") == "ok"]


def require_ok_runs(frame: pd.DataFrame, source: str, what: str) -> None:
    if ok_rows(frame).empty:
        raise InputError(f"{source}: no run with status ok ({len(frame)} rows): "
                         f"nothing to {what}")
