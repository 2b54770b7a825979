"""The one retain sampler (`harness.evaluation.retain_sample`): disjoint seeded blocks, and
the tune job's samples never touching the retain facts Table 1 scores."""

from __future__ import annotations

import pytest

from harness.data import load_split, write_synthetic
from harness.data.fact import Fact, SubjectSource
from harness.evaluation.retain_sample import (seeded_blocks,
                                              seeded_subset, without)
from harness.jobs.selection import split_selection, tuning_retain
from harness.workflow_config import load_workflow_config


def facts(n: int, per_author: int = 5) -> list[Fact]:
    return [Fact(question=f"q{i}?", answer=f"a{i}", subject=None,
                 subject_source=SubjectSource.FALLBACK_LAST_TOKEN, author_id=i // per_author,
                 split="pool", index=i) for i in range(n)]


def keys(block: list[Fact]) -> list[str]:
    return [f.key for f in block]


def test_blocks_are_disjoint_sized_and_in_pool_order():
    pool = facts(50)
    blocks = seeded_blocks(pool, [10, 15, 20], seed=3)
    assert [len(b) for b in blocks] == [10, 15, 20]
    seen = [k for b in blocks for k in keys(b)]
    assert len(seen) == len(set(seen)) == 45
    position = {f.key: i for i, f in enumerate(pool)}
    for block in blocks:
        rows = [position[k] for k in keys(block)]
        assert rows == sorted(rows)


def test_blocks_are_one_permutation_cut_consecutively():
    """A block does not depend on the blocks after it: [a] and [a, b] share their first."""
    pool = facts(60)
    assert seeded_blocks(pool, [12], 5) == seeded_blocks(pool, [12, 30], 5)[:1]
    a, b = seeded_blocks(pool, [12, 30], 5)
    assert seeded_blocks(pool, [42], 5)[0] == sorted(a + b, key=pool.index)


def test_same_seed_same_blocks_other_seed_other_blocks():
    pool = facts(80)
    assert seeded_blocks(pool, [10, 10], 0) == seeded_blocks(pool, [10, 10], 0)
    assert seeded_subset(pool, 10, 0) != seeded_subset(pool, 10, 1)


def test_pool_too_small_names_the_sizes_and_the_pool():
    with pytest.raises(ValueError, match=r"sizes \[8, 8\].*pool has 12"):
        seeded_blocks(facts(12), [8, 8], 0)
    with pytest.raises(ValueError, match=r"sizes \[13\].*pool has 12"):
        seeded_subset(facts(12), 13, 0)


def test_a_short_last_block_takes_what_is_left():
    blocks = seeded_blocks(facts(12), [8, 8], 0, last_may_be_short=True)
    assert [len(b) for b in blocks] == [8, 4]
    with pytest.raises(ValueError, match=r"full block\(s\) \[13\]"):
        seeded_blocks(facts(12), [13, 1], 0, last_may_be_short=True)
    pool = facts(6)
    assert seeded_subset(pool, 10, 0, may_be_short=True) == pool
    assert seeded_subset(facts(30), 7, 2, may_be_short=True) == seeded_subset(facts(30), 7, 2)


def test_without_drops_authors_and_facts():
    pool = facts(20)
    kept = without(pool, authors={0, 3}, exclude=pool[5:7])
    assert {f.author_id for f in kept} == {1, 2}
    assert not set(keys(kept)) & set(keys(pool[5:7]))
    assert len(kept) == 20 - 10 - 2


@pytest.fixture(scope="module")
def default_corpus(tmp_path_factory):
    """The default workflow config's synthetic corpus, and that config's data section."""
    data = load_workflow_config()["data"]
    tofu = write_synthetic(tmp_path_factory.mktemp("corpus"), **data["synthetic"])
    return str(tofu), data


def test_tuning_retain_never_meets_table1_scored_retain_at_default_sizes(default_corpus):
    tofu, data = default_corpus
    size, train, seed = data["retain_eval_size"], data["retain_train_size"], data["eval_seed"]
    table1 = split_selection(tofu, data["forget_split"], data["retain_split"], size, seed,
                             train, data["validation_split"])
    scored, calibration = tuning_retain(tofu, data["forget_split"], data["retain_split"], size,
                                        seed, train, data["validation_split"])
    assert len(table1.retain_eval) == len(scored) == size
    assert len(calibration) == train
    table1_scored = set(keys(table1.retain_eval))
    assert not table1_scored & set(keys(scored))
    assert not table1_scored & set(keys(calibration))
    assert not set(keys(scored)) & set(keys(calibration))
    banned = ({f.author_id for f in load_split(tofu, data["validation_split"])}
              | {f.author_id for f in load_split(tofu, data["forget_split"])})
    assert not {f.author_id for f in scored + calibration} & banned


def test_table1_selection_is_the_first_two_blocks(default_corpus):
    tofu, _ = default_corpus
    sel = split_selection(tofu, "forget01", "retain99", 40, 7, 100)
    assert not set(keys(sel.retain_eval)) & set(keys(sel.retain_train))
    assert (len(sel.retain_eval), len(sel.retain_train)) == (40, 100)
    other = split_selection(tofu, "forget01", "retain99", 40, 8, 100)
    assert keys(other.retain_eval) != keys(sel.retain_eval)
