"""The seeded sample of retain facts a method scores itself on while it edits (the gradient
loop's convergence checks, ROME/MEMIT's before/after retain log-prob) and MEMIT's
key-covariance facts.

The job's own evaluation facts are a different, disjoint sample chosen before the method
runs (`harness.jobs.selection.seeded_sample`); TimeROME's tuning draws its own
(`harness.timerome.tuning.retain_sample`). The three rules pick different facts, and the
Table 1 numbers depend on which, so they are kept as they are.
"""

from __future__ import annotations

import random
from typing import Sequence

from harness.data.fact import Fact


def retain_eval_subset(retain: Sequence[Fact], n: int, seed: int) -> list[Fact]:
    """A seeded subset of `n` retain facts (all of them if there are fewer), in order."""
    if len(retain) <= n:
        return list(retain)
    rows = sorted(random.Random(seed).sample(range(len(retain)), n))
    return [retain[i] for i in rows]
