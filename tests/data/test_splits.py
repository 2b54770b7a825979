import pytest

from harness.data import (
    SPLITS,
    SplitKind,
    forget_split_name,
    holdout_split_for,
    perturbed_split_for,
    retain_split_for,
    retain_split_name,
    split_kind,
)
from harness.data.splits import n_pct_records


def test_split_names():
    assert [forget_split_name(p) for p in (1, 5, 10)] == ["forget01", "forget05", "forget10"]
    assert [retain_split_name(p) for p in (1, 5, 10)] == ["retain99", "retain95", "retain90"]
    assert retain_split_for("forget05") == "retain95"
    assert retain_split_for("forget10_perturbed") == "retain90"
    assert holdout_split_for("forget01") == "holdout01"
    assert perturbed_split_for("forget10") == "forget10_perturbed"
    for bad in ("forget02", "retain90", "forget5"):
        with pytest.raises(ValueError):
            retain_split_for(bad)
    with pytest.raises(ValueError):
        forget_split_name(2)


def test_split_kinds():
    assert split_kind("full") is SplitKind.PLAIN
    assert split_kind("holdout05") is SplitKind.PLAIN
    assert split_kind("retain_perturbed") is SplitKind.PERTURBED
    assert split_kind("validation") is SplitKind.PLAIN
    assert split_kind("world_facts_perturbed") is SplitKind.GENERAL
    assert len(SPLITS) == 17
    with pytest.raises(ValueError):
        split_kind("manifest")


def test_tofu_proportions():
    assert [n_pct_records(4000, p) for p in (1, 5, 10)] == [40, 200, 400]
    assert [4000 - n_pct_records(4000, p) for p in (1, 5, 10)] == [3960, 3800, 3600]
    assert n_pct_records(30, 1) == 1  # at least one record
    assert n_pct_records(0, 1) == 0
