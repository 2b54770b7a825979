"""Prepare the corpus the workflow's jobs read: validation split, author subset, author ids.

`prepare_corpus(source, out, ...)` reads a TOFU-format directory (real TOFU as it ships,
the hub download, or the synthetic corpus) and writes a TOFU-format directory in which

* every record carries `author_id` (real TOFU has none: authors are consecutive blocks of
  `facts_per_author` records of `full`; records of other splits get the id of the same
  question/answer in `full`, general-knowledge records get -1);
* `<validation_split>.json` exists: the source's file when it ships one (the synthetic
  corpus does), else `validation_authors` whole authors drawn with `seed` from the retain
  authors outside the largest forget split (forget10), so the same authors validate
  forget01, forget05 and forget10 (see docs/data.md);
* with `authors=N` only the forget split's authors plus N retain authors are kept (the
  validation authors count among the N; the others are drawn with `seed`, first among the
  authors of `retain_perturbed`, so model utility keeps a retain set), and only the
  configured forget/retain splits (with the validation and general-knowledge splits) are
  written: another forgetNN/retainNN would not be its named share of the subset;
* `manifest.json` records what was chosen.

`check_split_files` is the plan-time check (missing or empty split file -> error naming it).
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Sequence
from pathlib import Path

from harness.data.errors import DataError
from harness.data.fact import Fact, SubjectSource
from harness.data.reader import available_splits, load_corpus, split_path
from harness.data.splits import (
    FORGET_PCTS,
    GENERAL_SPLITS,
    TOFU_FACTS_PER_AUTHOR,
    n_pct_records,
    perturbed_split_for,
)

UTILITY_RETAIN_SPLIT = "retain_perturbed"


def required_splits(forget_split: str, retain_split: str) -> list[str]:
    """Split files every workflow run needs (fine-tuning, forget set, retain, metrics)."""
    return ["full", forget_split, retain_split, perturbed_split_for(forget_split),
            UTILITY_RETAIN_SPLIT, *GENERAL_SPLITS]


def check_split_files(tofu_dir: str | Path, splits: Iterable[str],
                      optional: Iterable[str] = ()) -> None:
    """Raise FileNotFoundError (missing) or DataError (empty) naming the first bad file.

    `optional` splits may be absent but must not be empty when present."""
    for split in list(splits) + list(optional):
        path = split_path(tofu_dir, split)
        if not path.is_file():
            if split in optional:
                continue
            raise FileNotFoundError(f"split file not found: {path} (split '{split}' is "
                                    f"needed by this config)")
        with open(path, "rb") as fh:
            empty = not any(line.strip() for line in fh)
        if empty:
            raise DataError(str(path), None, None, f"split file is empty (split '{split}')")


def _key(fact: Fact) -> tuple[str, str]:
    return fact.question, fact.answer


def choose_validation_authors(full: Sequence[Fact], n: int, seed: int) -> list[int]:
    """`n` authors of `full`, seeded, among those outside its last 10% (forget10)."""
    if n < 1:
        raise ValueError("validation_authors must be >= 1")
    tail = n_pct_records(len(full), max(FORGET_PCTS))
    forget_region = {f.author_id for f in full[len(full) - tail:]}
    pool = sorted({f.author_id for f in full} - forget_region)
    if n >= len(pool):
        raise ValueError(f"validation_authors={n} leaves no retain author: only {len(pool)} "
                         f"authors lie outside the last 10% of full")
    return sorted(random.Random(seed).sample(pool, n))


def choose_authors(full: Sequence[Fact], forget_authors: set[int], validation: set[int],
                   n_retain: int, seed: int, preferred: set[int] = frozenset()) -> list[int]:
    """Forget authors + `n_retain` retain authors (validation authors first, the rest
    seeded, `preferred` ones before the others)."""
    retain = sorted({f.author_id for f in full} - forget_authors)
    if n_retain <= len(validation):
        raise ValueError(f"data.authors={n_retain} must exceed the {len(validation)} "
                         f"validation authors (they count among the kept retain authors)")
    if n_retain > len(retain):
        raise ValueError(f"data.authors={n_retain} exceeds the {len(retain)} retain authors")
    others = [a for a in retain if a not in validation]
    rng = random.Random(seed)
    first = [a for a in others if a in preferred]
    rest = [a for a in others if a not in preferred]
    rng.shuffle(first)
    rng.shuffle(rest)
    picked = (first + rest)[: n_retain - len(validation)]
    return sorted(forget_authors | validation | set(picked))


def fact_row(fact: Fact, with_ids: bool = True) -> dict:
    """A TOFU-format record of `fact`; `with_ids` adds `author_id` (and `subject` only if
    given), as the prepared corpus carries them. Without, the record is TOFU's own fields."""
    row: dict = {"question": fact.question, "answer": fact.answer}
    if fact.paraphrased_answer is not None:
        row["paraphrased_answer"] = fact.paraphrased_answer
    if fact.paraphrased_question is not None:
        row["paraphrased_question"] = fact.paraphrased_question
    if fact.perturbed_answers:
        row["perturbed_answer"] = list(fact.perturbed_answers)
    if with_ids:
        if fact.subject_source is SubjectSource.GIVEN:
            row["subject"] = fact.subject
        row["author_id"] = fact.author_id
    return row


def _write_jsonl(path: Path, facts: Sequence[Fact]) -> None:
    text = "".join(json.dumps(fact_row(f), ensure_ascii=False) + "\n" for f in facts)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def prepare_corpus(source: str | Path, out: str | Path, forget_split: str, retain_split: str,
                   *, validation_split: str, validation_authors: int, authors: int | None,
                   seed: int, facts_per_author: int = TOFU_FACTS_PER_AUTHOR) -> dict:
    """Write the prepared corpus into `out`; return its manifest (also written). The data
    settings have no defaults here: the workflow config (schema.json) states them once."""
    source, out = Path(source), Path(out)
    if out.resolve() == source.resolve():
        raise ValueError(f"prepared corpus must not overwrite its source {source}")
    check_split_files(source, required_splits(forget_split, retain_split),
                      optional=[validation_split])
    corpus = load_corpus(source, facts_per_author=facts_per_author)
    full = corpus["full"]
    full_ids = {_key(f): f.author_id for f in full}

    def with_full_ids(split: str, facts: list[Fact]) -> list[Fact]:
        if split in GENERAL_SPLITS:
            return facts
        return [Fact(**{**vars(f), "author_id": full_ids.get(_key(f), f.author_id)})
                for f in facts]

    corpus = {s: with_full_ids(s, facts) for s, facts in corpus.items()}
    forget_authors = {f.author_id for f in corpus[forget_split]}

    shipped = validation_split in corpus
    if shipped:
        val_facts = corpus[validation_split]
        val_authors = sorted({f.author_id for f in val_facts})
        clash = sorted(set(val_authors) & forget_authors)
        if clash:
            raise DataError(str(split_path(source, validation_split)), None, "author_id",
                            f"validation authors {clash} are authors of {forget_split}")
    else:
        val_authors = choose_validation_authors(full, validation_authors, seed)
        clash = sorted(set(val_authors) & forget_authors)
        if clash:  # forget_split is always inside forget10's region; keep the check anyway
            raise ValueError(f"validation authors {clash} are authors of {forget_split}")
        chosen = set(val_authors)
        val_facts = [Fact(**{**vars(f), "split": validation_split})
                     for f in full if f.author_id in chosen]

    kept: list[int] | None = None
    if authors is not None:
        preferred = {f.author_id for f in corpus.get(UTILITY_RETAIN_SPLIT, [])}
        kept = choose_authors(full, forget_authors, set(val_authors), authors, seed, preferred)

    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("*.json"):
        stale.unlink()
    counts: dict[str, int] = {}
    needed = set(required_splits(forget_split, retain_split))
    keep = None if kept is None else set(kept)
    splits = dict(corpus)
    splits[validation_split] = val_facts
    for split, facts in sorted(splits.items()):
        if keep is not None and split not in needed and split != validation_split:
            continue  # other forget/retain/holdout splits would not be their named share
        if keep is not None and split not in GENERAL_SPLITS:
            facts = [f for f in facts if f.author_id in keep]
        if not facts:
            if split in needed:
                raise ValueError(f"split '{split}' has no record of the kept authors {kept}")
            continue
        _write_jsonl(split_path(out, split), facts)
        counts[split] = len(facts)

    manifest = {
        "source": str(source),
        "forget_split": forget_split,
        "retain_split": retain_split,
        "validation_split": validation_split,
        "validation": "shipped" if shipped else "derived",
        "validation_authors": val_authors,
        "forget_authors": sorted(forget_authors),
        "authors": kept,
        "seed": seed,
        "facts_per_author": facts_per_author,
        "counts": counts,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n",
                                       encoding="utf-8")
    return manifest


def validation_author_ids(tofu_dir: str | Path, validation_split: str = "validation"
                          ) -> set[int]:
    """Author ids of the validation split of `tofu_dir` (empty if it has none)."""
    if validation_split not in available_splits(tofu_dir):
        return set()
    return {f.author_id for f in load_corpus(tofu_dir, [validation_split])[validation_split]}


__all__ = ["check_split_files", "choose_authors",
           "choose_validation_authors", "prepare_corpus", "required_splits",
           "validation_author_ids"]
