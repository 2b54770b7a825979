"""Before/after scoring shared by every baseline (mean full_mask log-prob per sample)."""

from __future__ import annotations

import math
import random
from typing import Any, Sequence

from harness.backbones.base import Backbone
from harness.data.fact import Fact
from harness.diffusion.scoring import score_facts


def retain_eval_subset(retain: Sequence[Fact], n: int, seed: int) -> list[Fact]:
    """A seeded subset of `n` retain facts (all of them if there are fewer), in order."""
    if len(retain) <= n:
        return list(retain)
    rows = sorted(random.Random(seed).sample(range(len(retain)), n))
    return [retain[i] for i in rows]


def mean_logprobs(backbone: Backbone, forget: Sequence[Fact], retain: Sequence[Fact],
                  batch_size: int = 32) -> tuple[float, float]:
    """(mean forget, mean retain) full_mask log-prob per sample in nats (retain NaN if empty)."""
    f = score_facts(backbone, forget, "full_mask", batch_size=batch_size)
    if not retain:
        return f.mean, float("nan")
    r = score_facts(backbone, retain, "full_mask", batch_size=batch_size)
    return f.mean, r.mean


def json_safe(value: Any) -> Any:
    """NaN/inf floats -> None (recursively) so that details serialise as strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value
