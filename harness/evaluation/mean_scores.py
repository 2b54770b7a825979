"""Mean scores over a fact list: answer log-prob (nats per sample) and ROUGE-L recall of
greedy generations. Used by the jobs (before/after numbers of a record) and by the
baselines (their in-loop forget/retain checks).

Log-probabilities come from `harness.evaluation.answer_logprob.score_facts`.
"""

from __future__ import annotations

from typing import Sequence

from harness.backbones.base import Backbone
from harness.data.fact import Fact
from harness.evaluation.answer_logprob import score_facts


def mean_logp(backbone: Backbone, facts: Sequence[Fact], estimator: str, batch_size: int,
              seed: int) -> float | None:
    """Mean log-prob per sample of the facts' answers, or None for no facts."""
    if not facts:
        return None
    return score_facts(backbone, facts, estimator=estimator, batch_size=batch_size, seed=seed).mean


def mean_logprobs(backbone: Backbone, forget: Sequence[Fact], retain: Sequence[Fact],
                  batch_size: int = 32) -> tuple[float, float]:
    """(mean forget, mean retain) full_mask log-prob per sample in nats (retain NaN if empty)."""
    f = score_facts(backbone, forget, "full_mask", batch_size=batch_size)
    if not retain:
        return f.mean, float("nan")
    r = score_facts(backbone, retain, "full_mask", batch_size=batch_size)
    return f.mean, r.mean


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
