"""The one rule that picks retain facts: a seeded permutation of the (filtered) pool, cut
into disjoint consecutive blocks.

Every retain sample in the project is a block of `seeded_blocks`: a job's scored and
method facts (`harness.jobs.selection`), the tune job's scored and calibration facts (the
blocks after Table 1's scored block, so tuning never scores a fact Table 1 scores), the
subset a method scores itself on while it edits, MEMIT's key-covariance facts. Blocks of
one (pool, seed) never share a fact, and the same (pool, seed) always gives the same
blocks; each block keeps the pool's order.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Sequence

from harness.data.fact import Fact


def seeded_blocks(pool: Sequence[Fact], sizes: Sequence[int], seed: int,
                  last_may_be_short: bool = False) -> list[list[Fact]]:
    """`pool` permuted with `random.Random(seed)` and cut into consecutive blocks of
    `sizes`, each block sorted back into pool order.

    Every block must be full (ValueError naming the sizes and the pool length otherwise),
    except the last one when `last_may_be_short`: it takes what is left, up to its size."""
    if any(size < 0 for size in sizes):
        raise ValueError(f"retain sample: block sizes {list(sizes)} must be >= 0")
    must_be_full = sum(sizes[:-1]) if last_may_be_short and sizes else sum(sizes)
    if must_be_full > len(pool):
        full = list(sizes[:-1]) if last_may_be_short else list(sizes)
        raise ValueError(f"retain sample: blocks of sizes {list(sizes)} need "
                         f"{must_be_full} facts for the full block(s) {full}, but the pool "
                         f"has {len(pool)}")
    order = list(range(len(pool)))
    random.Random(seed).shuffle(order)
    blocks, start = [], 0
    for size in sizes:
        rows = sorted(order[start:start + size])
        blocks.append([pool[i] for i in rows])
        start += size
    return blocks


def seeded_subset(pool: Sequence[Fact], n: int, seed: int, may_be_short: bool = False
                  ) -> list[Fact]:
    """The first block of `seeded_blocks`: `n` facts of `pool` (ValueError if fewer, or
    all of them when `may_be_short`)."""
    return seeded_blocks(pool, [n], seed, last_may_be_short=may_be_short)[0]


def without(facts: Sequence[Fact], authors: Collection[int] = (),
            exclude: Sequence[Fact] = ()) -> list[Fact]:
    """`facts` minus the records of `authors` and the facts in `exclude` (by key): the
    filter a caller applies to a pool before sampling it."""
    authors = set(authors)
    skip = {f.key for f in exclude}
    return [f for f in facts if f.author_id not in authors and f.key not in skip]
