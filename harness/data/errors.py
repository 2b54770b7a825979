"""Errors raised on bad input data; they always name file, line and field."""

from __future__ import annotations


class DataError(ValueError):
    """A bad record. `line` is 1-based; `field` names the offending field."""

    def __init__(self, path: str, line: int | None, field: str | None, problem: str):
        self.path = str(path)
        self.line = line
        self.field = field
        self.problem = problem
        where = self.path
        if line is not None:
            where += f", line {line}"
        if field is not None:
            where += f", field '{field}'"
        super().__init__(f"{where}: {problem}")
