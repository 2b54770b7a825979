"""TOFU-format data: loading, validation, subject inference and a synthetic generator."""

from harness.data.errors import DataError
from harness.data.fact import Fact, SubjectSource
from harness.data.hub import load_hub_split
from harness.data.reader import available_splits, load_corpus, load_split
from harness.data.splits import (
    FORGET_PCTS,
    SPLITS,
    SplitKind,
    forget_split_name,
    holdout_split_for,
    holdout_split_name,
    perturbed_split_for,
    retain_split_for,
    retain_split_name,
    split_kind,
)
from harness.data.subjects import subject_source_counts
from harness.data.synth import write_synthetic

__all__ = [
    "DataError",
    "FORGET_PCTS",
    "Fact",
    "SPLITS",
    "SplitKind",
    "SubjectSource",
    "available_splits",
    "forget_split_name",
    "holdout_split_for",
    "holdout_split_name",
    "load_corpus",
    "load_hub_split",
    "load_split",
    "perturbed_split_for",
    "retain_split_for",
    "retain_split_name",
    "split_kind",
    "subject_source_counts",
    "write_synthetic",
]
