"""Which facts a job forgets, which retain facts it may use, which it is evaluated on.

The sizes come from the job (config `data.retain_eval_size`, `data.retain_train_size`: their
defaults are stated in workflows/config/schema.json only)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from harness.data import load_split
from harness.data.fact import Fact
from harness.data.prepare import validation_author_ids
from harness.data.subjects import subject_source_counts
from harness.evaluation.retain_sample import seeded_blocks


@dataclass
class FactSelection:
    forget: list[Fact]
    retain_train: list[Fact]  # retain facts handed to the method (retain loss, covariance)
    retain_eval: list[Fact]  # disjoint fixed sample the job is scored on
    split: str  # label of the forget set ("forget01", "full[-10:]")

    def subject_source(self) -> dict[str, int]:
        return {str(k): int(v) for k, v in subject_source_counts(self.forget).items()}


def retain_pool(facts: Sequence[Fact], tofu_dir: str, forget: Sequence[Fact] = (),
                validation_split: str = "validation") -> list[Fact]:
    """`facts` minus the records of validation and forget authors (tuning facts and forget
    facts never enter a retain sample)."""
    excluded = validation_author_ids(tofu_dir, validation_split) | {f.author_id for f in forget}
    return [f for f in facts if f.author_id not in excluded]


def split_selection(tofu_dir: str, forget_split: str, retain_split: str, size: int,
                    seed: int, train_size: int,
                    validation_split: str = "validation") -> FactSelection:
    """Table 1: forget = the forget split; retain facts sampled from its retain split,
    without the validation authors."""
    forget = load_split(tofu_dir, forget_split)
    pool = retain_pool(load_split(tofu_dir, retain_split), tofu_dir, forget, validation_split)
    retain_eval, retain_train = seeded_blocks(pool, [size, train_size], seed,
                                              last_may_be_short=True)
    return FactSelection(forget, retain_train, retain_eval, forget_split)


def tuning_retain(tofu_dir: str, forget_split: str, retain_split: str, size: int, seed: int,
                  train_size: int, validation_split: str = "validation"
                  ) -> tuple[list[Fact], list[Fact]]:
    """The tune job's retain facts: (scored: `size` facts whose drop must stay under the
    bar, calibration: up to `train_size` others for the edit's retain statistics).

    Same pool and permutation as `split_selection` (same `seed`: config data.eval_seed);
    block 0 is Table 1's scored retain sample and is skipped, so the tuning never scores
    or calibrates on a fact Table 1 scores."""
    forget = load_split(tofu_dir, forget_split)
    pool = retain_pool(load_split(tofu_dir, retain_split), tofu_dir, forget, validation_split)
    _table1_scored, scored, calibration = seeded_blocks(pool, [size, size, train_size], seed,
                                                        last_may_be_short=True)
    return scored, calibration


def last_n_selection(tofu_dir: str, n: int, max_n: int, size: int, seed: int,
                     train_size: int) -> FactSelection:
    """Scaling: forget = the last n records of `full`; the retain sample comes from the
    records before the last `max_n`, so it is the same for every n. (Unlike Table 1's
    selection it keeps validation authors: the scaling pool is positional, see docs/data.md.)"""
    full = load_split(tofu_dir, "full")
    if not 1 <= n <= max_n <= len(full) - 1:
        raise ValueError(f"fact count {n} (max {max_n}) does not fit the {len(full)} records "
                         f"of {tofu_dir}/full.json")
    retain_eval, retain_train = seeded_blocks(full[: len(full) - max_n], [size, train_size],
                                              seed, last_may_be_short=True)
    return FactSelection(full[len(full) - n:], retain_train, retain_eval, f"full[-{n}:]")
