"""ROUGE-L recall of generated answers against references (the `rouge-score` package)."""

from __future__ import annotations

from functools import lru_cache
from typing import Sequence

from rouge_score import rouge_scorer


@lru_cache(maxsize=1)
def _scorer() -> rouge_scorer.RougeScorer:
    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def rouge_l_recall(predictions: Sequence[str], references: Sequence[str]) -> list[float]:
    """Per-pair ROUGE-L recall (LCS / reference length), as TOFU reports it."""
    if len(predictions) != len(references):
        raise ValueError(f"rouge_l_recall: {len(predictions)} predictions but "
                         f"{len(references)} references")
    scorer = _scorer()
    return [scorer.score(ref, pred)["rougeL"].recall for pred, ref in zip(predictions, references)]
