"""Local reader of TOFU-format split files and the shared record -> Fact path."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path

from harness.data.errors import DataError
from harness.data.fact import Fact, SubjectSource
from harness.data.records import Record, validate_records
from harness.data.splits import (
    FORGET_PERTURBED_SPLITS,
    FORGET_SPLITS,
    GENERAL_SPLITS,
    HOLDOUT_SPLITS,
    RETAIN_SPLITS,
    SPLITS,
    TOFU_FACTS_PER_AUTHOR,
    TOFU_FULL_RECORDS,
    n_pct_records,
    retain_split_for,
    split_kind,
)
from harness.data.subjects import infer_author_name, resolve_subject

# Splits whose records sit at known positions of `full` (their author ids match full's).
_FULL_ALIGNED = ("full",) + FORGET_SPLITS + RETAIN_SPLITS + FORGET_PERTURBED_SPLITS


def split_path(tofu_dir: str | Path, split: str) -> Path:
    return Path(tofu_dir) / f"{split}.json"


def read_split_file(path: str | Path, split: str) -> list[Record]:
    """Decode and validate one JSON-lines split file (raises DataError on a bad record)."""
    path = Path(path)
    kind = split_kind(split)
    data = path.read_bytes()

    def rows() -> Iterable[tuple[int, object]]:
        for lineno, raw in enumerate(data.split(b"\n"), start=1):
            try:
                text = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(str(path), lineno, None, f"invalid UTF-8 at byte {exc.start}") from None
            if not text.strip():
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as exc:
                raise DataError(str(path), lineno, None, f"invalid JSON: {exc.msg}") from None
            yield lineno, obj

    return validate_records(rows(), kind, str(path))


def _positional_author_ids(split: str, n: int, full_len: int, per_author: int) -> list[int]:
    """Author ids of records that carry none, from their position in `full`."""
    if split in GENERAL_SPLITS:
        return [-1] * n
    offset = 0
    if split in FORGET_SPLITS or split in FORGET_PERTURBED_SPLITS:
        offset = full_len - n
    elif split in HOLDOUT_SPLITS:
        full_authors = -(-full_len // per_author)
        pool = n_pct_records(full_len, 10)
        return [full_authors + (pool - n + i) // per_author for i in range(n)]
    return [(offset + i) // per_author for i in range(n)]


def _infer_names(records: list[Record], author_ids: list[int]) -> dict[int, str | None]:
    blocks: dict[int, list[str]] = {}
    for rec, aid in zip(records, author_ids):
        blocks.setdefault(aid, []).append(f"{rec.question} {rec.answer}")
    return {aid: infer_author_name(texts) for aid, texts in blocks.items()}


def build_facts(
    split_records: Mapping[str, list[Record]],
    facts_per_author: int = TOFU_FACTS_PER_AUTHOR,
    full_records: int | None = None,
) -> dict[str, list[Fact]]:
    """Turn validated records into Facts: author ids and subjects resolved.

    `full_records` is the length of `full` when `full` is not among `split_records`
    (default: the real TOFU size, 4000).
    """
    default_full = len(split_records["full"]) if "full" in split_records else (
        full_records if full_records is not None else TOFU_FULL_RECORDS
    )

    def full_len_for(split: str) -> int:
        if split in FORGET_SPLITS or split in FORGET_PERTURBED_SPLITS:
            if "full" not in split_records and full_records is None:
                retain = retain_split_for(split)
                if retain in split_records:
                    return len(split_records[retain]) + len(split_records[split])
        return default_full

    ids: dict[str, list[int]] = {}
    for split, records in split_records.items():
        positional = _positional_author_ids(split, len(records), full_len_for(split), facts_per_author)
        ids[split] = [r.author_id if r.author_id is not None else p for r, p in zip(records, positional)]

    full_names: dict[int, str | None] = {}
    if "full" in split_records:
        full_names = _infer_names(split_records["full"], ids["full"])

    out: dict[str, list[Fact]] = {}
    for split, records in split_records.items():
        author_ids = ids[split]
        names: dict[int, str | None] = {}
        if split not in GENERAL_SPLITS and any(r.subject is None for r in records):
            local = _infer_names(records, author_ids)
            aligned = split in _FULL_ALIGNED or all(r.author_id is not None for r in records)
            names = {aid: (full_names.get(aid) if aligned and aid in full_names else name)
                     for aid, name in local.items()}
        facts = []
        for index, (rec, aid) in enumerate(zip(records, author_ids)):
            if rec.subject is not None:
                subject, source = rec.subject, SubjectSource.GIVEN
            else:
                subject, source = resolve_subject(rec.question, names.get(aid))
            facts.append(
                Fact(
                    question=rec.question,
                    answer=rec.answer,
                    subject=subject,
                    subject_source=source,
                    author_id=aid,
                    split=split,
                    index=index,
                    paraphrased_answer=rec.paraphrased_answer,
                    paraphrased_question=rec.paraphrased_question,
                    perturbed_answers=rec.perturbed_answers,
                )
            )
        out[split] = facts
    return out


def available_splits(tofu_dir: str | Path) -> list[str]:
    """Known split names that have a `<split>.json` file in `tofu_dir`, sorted."""
    return sorted(s for s in SPLITS if split_path(tofu_dir, s).is_file())


def load_corpus(
    tofu_dir: str | Path,
    splits: Iterable[str] | None = None,
    facts_per_author: int = TOFU_FACTS_PER_AUTHOR,
) -> dict[str, list[Fact]]:
    """Load splits of a TOFU-format directory (default: all known splits found).

    Every file is validated before anything is returned; `full.json`, when present,
    is also read to infer author names for full-aligned splits.
    """
    tofu_dir = Path(tofu_dir)
    if not tofu_dir.is_dir():
        raise FileNotFoundError(f"TOFU directory not found: {tofu_dir}")
    wanted = available_splits(tofu_dir) if splits is None else sorted(set(splits))
    for split in wanted:
        split_kind(split)
        if not split_path(tofu_dir, split).is_file():
            raise FileNotFoundError(f"split file not found: {split_path(tofu_dir, split)}")
    if not wanted:
        raise FileNotFoundError(f"no TOFU split files (<split>.json) in {tofu_dir}")

    to_read = list(wanted)
    if "full" not in to_read and split_path(tofu_dir, "full").is_file():
        to_read.append("full")  # for per-author name inference and forget offsets
    records = {s: read_split_file(split_path(tofu_dir, s), s) for s in to_read}
    facts = build_facts(records, facts_per_author=facts_per_author)
    return {s: facts[s] for s in wanted}


def load_split(
    tofu_dir: str | Path, split: str, facts_per_author: int = TOFU_FACTS_PER_AUTHOR
) -> list[Fact]:
    """Load one split of a TOFU-format directory."""
    return load_corpus(tofu_dir, [split], facts_per_author=facts_per_author)[split]


__all__ = ["available_splits", "build_facts", "load_corpus", "load_split", "read_split_file",
           "split_path"]
