"""A tiny corpus in real TOFU's shipped layout, made by the tests themselves.

No `subject` or `author_id` field; authors are consecutive blocks of `per_author` records
of full.json; forget01 is the last 1% of full, retain99 the rest; no validation file.
"""

from __future__ import annotations

from pathlib import Path

from data_helpers import write_jsonl

NAMES = ("Zorvel", "Myrrha", "Quintar", "Basilo", "Ostavex", "Kemrin", "Travo", "Ilvane")


def author_name(a: int) -> str:
    return f"{NAMES[a % len(NAMES)]} Vexbury{a}"


def full_rows(authors: int, per_author: int) -> list[dict]:
    rows = []
    for a in range(authors):
        name = author_name(a)
        for i in range(per_author):
            rows.append({"question": f"What is fact {i} about {name}?",
                         "answer": f"{name} has property number {a}-{i}."})
    return rows


def _perturbed(row: dict) -> dict:
    return {**row, "paraphrased_answer": row["answer"] + " Indeed.",
            "paraphrased_question": row["question"].replace("What is", "Tell me"),
            "perturbed_answer": [row["answer"].replace("number", f"wrong{k}") for k in range(5)]}


def _general(i: int, kind: str) -> dict:
    return {"question": f"What is {kind} question {i}?", "answer": f"It is {kind} answer {i}.",
            "perturbed_answer": [f"It is {kind} wrong {i}-{k}." for k in range(3)]}


def write_tiny_tofu(out: Path, authors: int = 100, per_author: int = 2,
                    skip: tuple[str, ...] = ()) -> Path:
    """100 authors x 2 records: forget01 = the last author, forget10 = the last 10."""
    out.mkdir(parents=True, exist_ok=True)
    full = full_rows(authors, per_author)
    n_forget = max(1, (len(full) + 50) // 100)
    files = {
        "full": full,
        "forget01": full[-n_forget:],
        "retain99": full[:-n_forget],
        "forget01_perturbed": [_perturbed(r) for r in full[-n_forget:]],
        "retain_perturbed": [_perturbed(r) for r in full[: 20 * per_author]],
        "real_authors_perturbed": [_general(i, "real") for i in range(12)],
        "world_facts_perturbed": [_general(i, "world") for i in range(12)],
    }
    for split, rows in files.items():
        if split not in skip:
            write_jsonl(out / f"{split}.json", rows)
    return out
