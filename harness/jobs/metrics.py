"""The evaluation numbers of a job: answer log-probs, ROUGE-L, forget quality, utility.

Log-probabilities come from `harness.diffusion.scoring.score_facts` (mean nats per sample);
ROUGE-L recall of greedy generations from `harness.evaluation` (forget quality and model
utility: `harness.jobs.quality`).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from harness.backbones.base import Backbone
from harness.data.fact import Fact
from harness.diffusion.scoring import score_facts


def mean_logp(backbone: Backbone, facts: Sequence[Fact], estimator: str, batch_size: int,
              seed: int) -> float | None:
    if not facts:
        return None
    return score_facts(backbone, facts, estimator=estimator, batch_size=batch_size, seed=seed).mean


def rouge_recall(backbone: Backbone, facts: Sequence[Fact], steps: int | None,
                 batch_size: int, seed: int) -> float | None:
    """Mean ROUGE-L recall of greedy generations against the reference answers."""
    if not facts:
        return None
    from harness.diffusion.sampling import generate
    from harness.evaluation.rouge import rouge_l_recall

    texts = generate(backbone, facts, steps=steps, seed=seed, batch_size=batch_size)
    scores = rouge_l_recall(texts, [f.answer for f in facts])
    return float(sum(scores) / len(scores))


def finite_or_none(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None
