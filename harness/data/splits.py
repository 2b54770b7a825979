"""TOFU split names, record kinds and proportions."""

from __future__ import annotations

import re
from enum import Enum

FORGET_PCTS: tuple[int, ...] = (1, 5, 10)
TOFU_FACTS_PER_AUTHOR = 20
TOFU_FULL_RECORDS = 4000  # 200 authors x 20 records
RETAIN_PERTURBED_MAX = 400
VALIDATION_PCT = 5


class SplitKind(str, Enum):
    """Record schema of a split file."""

    PLAIN = "plain"  # {question, answer}
    PERTURBED = "perturbed"  # + paraphrased_answer, paraphrased_question, perturbed_answer[5]
    GENERAL = "general"  # {question, answer, perturbed_answer[3]}


def forget_split_name(pct: int) -> str:
    """forget_split_name(5) -> 'forget05'."""
    _check_pct(pct)
    return f"forget{pct:02d}"


def holdout_split_name(pct: int) -> str:
    _check_pct(pct)
    return f"holdout{pct:02d}"


def retain_split_name(pct: int) -> str:
    """Retain split complementary to forget `pct`: retain_split_name(5) -> 'retain95'."""
    _check_pct(pct)
    return f"retain{100 - pct:02d}"


def _check_pct(pct: int) -> None:
    if pct not in FORGET_PCTS:
        raise ValueError(f"forget percentage must be one of {FORGET_PCTS}, got {pct!r}")


def forget_pct(split: str) -> int:
    """Percentage of a forget split name ('forget05' or 'forget05_perturbed' -> 5)."""
    m = re.fullmatch(r"forget(\d\d)(_perturbed)?", split)
    if not m or int(m.group(1)) not in FORGET_PCTS:
        raise ValueError(f"not a forget split: {split!r}")
    return int(m.group(1))


def retain_split_for(forget_split: str) -> str:
    """retain_split_for('forget05') -> 'retain95'."""
    return retain_split_name(forget_pct(forget_split))


def holdout_split_for(forget_split: str) -> str:
    """holdout_split_for('forget05') -> 'holdout05'."""
    return holdout_split_name(forget_pct(forget_split))


def perturbed_split_for(forget_split: str) -> str:
    """perturbed_split_for('forget05') -> 'forget05_perturbed'."""
    return f"{forget_split_name(forget_pct(forget_split))}_perturbed"


FORGET_SPLITS = tuple(forget_split_name(p) for p in FORGET_PCTS)
RETAIN_SPLITS = tuple(retain_split_name(p) for p in FORGET_PCTS)
HOLDOUT_SPLITS = tuple(holdout_split_name(p) for p in FORGET_PCTS)
FORGET_PERTURBED_SPLITS = tuple(f"{s}_perturbed" for s in FORGET_SPLITS)
GENERAL_SPLITS = ("real_authors_perturbed", "world_facts_perturbed")

SPLITS: dict[str, SplitKind] = {
    "full": SplitKind.PLAIN,
    **{s: SplitKind.PLAIN for s in FORGET_SPLITS + RETAIN_SPLITS + HOLDOUT_SPLITS},
    **{s: SplitKind.PERTURBED for s in FORGET_PERTURBED_SPLITS},
    "retain_perturbed": SplitKind.PERTURBED,
    # Only question/answer are read: a validation split derived from `full` (real TOFU ships
    # none; harness.data.prepare) has no perturbed answers. Extra fields are ignored.
    "validation": SplitKind.PLAIN,
    **{s: SplitKind.GENERAL for s in GENERAL_SPLITS},
}


def split_kind(split: str) -> SplitKind:
    try:
        return SPLITS[split]
    except KeyError:
        raise ValueError(f"unknown split {split!r}; known: {sorted(SPLITS)}") from None


def n_pct_records(total: int, pct: int) -> int:
    """Whole records making up `pct`% of `total` (half rounds up; at least 1 if total > 0)."""
    if total <= 0:
        return 0
    return max(1, (total * pct + 50) // 100)


def retain_pct_of(split: str) -> int | None:
    m = re.fullmatch(r"retain(\d\d)", split)
    return int(m.group(1)) if m else None
