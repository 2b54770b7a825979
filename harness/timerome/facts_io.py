"""Read a facts file for the CLI: TOFU-format JSON lines with a `subject` per record.

Records are validated by the data package's reader (`read_split_file`, plain-split schema:
`question`, `answer`, optional `subject` that must occur in the question, optional
`author_id`); TimeROME additionally requires `subject` (it traces the subject).
"""

from __future__ import annotations

from pathlib import Path

from harness.data.errors import DataError
from harness.data.fact import Fact, SubjectSource
from harness.data.reader import read_split_file


def read_facts(path: str | Path, split: str = "forget01") -> list[Fact]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"facts file not found: {path}")
    records = read_split_file(path, split)
    if not records:
        raise DataError(str(path), None, None, "no records")
    facts = []
    for index, rec in enumerate(records):
        if rec.subject is None:
            raise DataError(str(path), rec.line, "subject",
                            "missing field (TimeROME traces the subject of every fact)")
        facts.append(Fact(question=rec.question, answer=rec.answer, subject=rec.subject,
                          subject_source=SubjectSource.GIVEN,
                          author_id=rec.author_id if rec.author_id is not None else -1,
                          split=path.stem, index=index))
    return facts

