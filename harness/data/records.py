"""Validated TOFU records: schema per split kind, one shared validation path."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from harness.data.errors import DataError
from harness.data.splits import SplitKind

PERTURBED_COUNT: dict[SplitKind, int] = {SplitKind.PERTURBED: 5, SplitKind.GENERAL: 3}

# Required string fields per kind (perturbed_answer is checked separately).
REQUIRED_STRINGS: dict[SplitKind, tuple[str, ...]] = {
    SplitKind.PLAIN: ("question", "answer"),
    SplitKind.PERTURBED: ("question", "answer", "paraphrased_answer", "paraphrased_question"),
    SplitKind.GENERAL: ("question", "answer"),
}
NON_EMPTY = ("question", "answer")


@dataclass(frozen=True)
class Record:
    """One validated record of a split file (before subject/author resolution)."""

    line: int  # 1-based line in the source
    question: str
    answer: str
    subject: str | None = None
    author_id: int | None = None
    paraphrased_answer: str | None = None
    paraphrased_question: str | None = None
    perturbed_answers: tuple[str, ...] = ()


def validate_record(obj: Any, kind: SplitKind, path: str, line: int) -> Record:
    """Check one decoded record against the schema of `kind`; raise DataError if bad."""
    if not isinstance(obj, Mapping):
        raise DataError(path, line, None, f"record must be a JSON object, got {type(obj).__name__}")

    def get_str(name: str) -> str:
        value = obj.get(name)
        if value is None:
            raise DataError(path, line, name, "missing field")
        if not isinstance(value, str):
            raise DataError(path, line, name, f"expected a string, got {type(value).__name__}")
        if name in NON_EMPTY and not value.strip():
            raise DataError(path, line, name, "empty string")
        return value

    strings = {name: get_str(name) for name in REQUIRED_STRINGS[kind]}
    if kind is SplitKind.PLAIN:
        # A plain split may carry the perturbed-format fields (a shipped validation split,
        # harness.data.prepare): kept when present, checked like a perturbed record's.
        for name in ("paraphrased_answer", "paraphrased_question"):
            if obj.get(name) is not None:
                strings[name] = get_str(name)

    perturbed: tuple[str, ...] = ()
    if kind in PERTURBED_COUNT:
        want = PERTURBED_COUNT[kind]
        value = obj.get("perturbed_answer")
        if value is None:
            raise DataError(path, line, "perturbed_answer", "missing field")
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise DataError(path, line, "perturbed_answer", "expected a list of strings")
        if len(value) != want:
            raise DataError(
                path, line, "perturbed_answer", f"expected {want} perturbed answers, got {len(value)}"
            )
        perturbed = tuple(value)
    elif kind is SplitKind.PLAIN and obj.get("perturbed_answer") is not None:
        value = obj["perturbed_answer"]
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise DataError(path, line, "perturbed_answer", "expected a list of strings")
        perturbed = tuple(value)

    subject = obj.get("subject")
    if subject is not None:
        if not isinstance(subject, str):
            raise DataError(path, line, "subject", f"expected a string, got {type(subject).__name__}")
        if not subject.strip():
            raise DataError(path, line, "subject", "empty string")
        if subject not in strings["question"]:
            raise DataError(path, line, "subject", f"subject {subject!r} does not occur in the question")

    author_id = obj.get("author_id")
    if author_id is not None and (isinstance(author_id, bool) or not isinstance(author_id, int)):
        raise DataError(path, line, "author_id", f"expected an integer, got {type(author_id).__name__}")

    return Record(
        line=line,
        question=strings["question"],
        answer=strings["answer"],
        subject=subject,
        author_id=author_id,
        paraphrased_answer=strings.get("paraphrased_answer"),
        paraphrased_question=strings.get("paraphrased_question"),
        perturbed_answers=perturbed,
    )


def validate_records(rows: Iterable[tuple[int, Any]], kind: SplitKind, path: str) -> list[Record]:
    """Validate (line, decoded object) pairs of one file; reject duplicate question+answer."""
    seen: dict[tuple[str, str], int] = {}
    out: list[Record] = []
    for line, obj in rows:
        rec = validate_record(obj, kind, path, line)
        key = (rec.question, rec.answer)
        if key in seen:
            raise DataError(
                path, line, "question",
                f"duplicate record: same question and answer as line {seen[key]}",
            )
        seen[key] = line
        out.append(rec)
    return out
