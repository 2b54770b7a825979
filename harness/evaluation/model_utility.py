"""TOFU's model utility: what the model still knows outside the forget set.

Following the TOFU paper (Maini et al., 2024), three statistics are computed on each of
three evaluation sets -- the retain set (here `retain_perturbed`), real authors
(`real_authors_perturbed`) and world facts (`world_facts_perturbed`):

- Probability. Retain: mean P_norm(a | q) = P(a | q)^(1/|a|) (length-normalised answer
  probability). Real authors / world facts: mean P_norm(a) / (P_norm(a) + sum_j
  P_norm(a^_j)), the probability of the true answer among the answer options.
- ROUGE-L recall of the greedy generated answer against the true answer.
- Truth ratio statistic: mean max(0, 1 - R_truth), R_truth as in `truth_ratio.py`
  (the answer itself stands in for the paraphrase on real authors / world facts).

Model utility is the harmonic mean of the nine numbers (0 if any is 0). On the forget set
TOFU reports the truth ratio as mean min(R_truth, 1/R_truth) (`forget_truth_ratio_stat`).
Answer probabilities come from the MDLM estimator named by `estimator` (`full_mask` by
default; see harness.evaluation.answer_logprob), generations from harness.diffusion.sampling.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

import torch
from scipy.stats import hmean

from harness.backbones.base import Backbone
from harness.data.fact import Fact
from harness.diffusion.sampling import generate
from harness.evaluation.rouge import rouge_l_recall
from harness.evaluation.truth_ratio import TruthRatios, normalised_logprobs, truth_ratios


def retain_truth_ratio_stat(ratio: torch.Tensor) -> float:
    """mean max(0, 1 - R_truth): 1 = the true answer is always far more likely."""
    return float(torch.clamp(1.0 - ratio, min=0.0).mean())


def forget_truth_ratio_stat(ratio: torch.Tensor) -> float:
    """mean min(R_truth, 1/R_truth) (TOFU's forget-set truth ratio)."""
    return float(torch.minimum(ratio, 1.0 / ratio).mean())


def _absolute_probability(tr: TruthRatios, answer_logp: torch.Tensor) -> float:
    return float(answer_logp.exp().mean())


def _relative_probability(tr: TruthRatios, answer_logp: torch.Tensor) -> float:
    true_p = answer_logp.exp()
    return float((true_p / (true_p + tr.perturbed_logp.exp().sum(1))).mean())


# How each evaluation set turns answer probabilities into its "Probability" statistic.
PROBABILITY_KINDS: dict[str, Callable[[TruthRatios, torch.Tensor], float]] = {
    "retain": _absolute_probability,
    "real_authors": _relative_probability,
    "world_facts": _relative_probability,
}


@dataclass
class UtilityComponents:
    probability: float
    rouge_l: float
    truth_ratio: float


@dataclass
class ModelUtility:
    components: dict[str, UtilityComponents]
    estimator: str
    value: float = field(init=False)

    def __post_init__(self) -> None:
        self.value = harmonic_utility(self.components)

    def to_dict(self) -> dict[str, Any]:
        return {"model_utility": self.value, "estimator": self.estimator,
                "components": {k: asdict(v) for k, v in self.components.items()}}


def harmonic_utility(components: dict[str, UtilityComponents]) -> float:
    values = [v for c in components.values() for v in asdict(c).values()]
    if not values:
        raise ValueError("model utility: no components")
    if min(values) <= 0:
        return 0.0
    return float(hmean(values))


def split_components(backbone: Backbone, facts: Sequence[Fact], kind: str,
                     estimator: str = "full_mask", generation: dict[str, Any] | None = None,
                     **score_kw) -> UtilityComponents:
    """The three statistics of one evaluation set (`kind` in PROBABILITY_KINDS)."""
    try:
        probability = PROBABILITY_KINDS[kind]
    except KeyError:
        raise KeyError(f"unknown utility set kind '{kind}'; known: "
                       f"{', '.join(PROBABILITY_KINDS)}") from None
    tr = truth_ratios(backbone, facts, estimator, **score_kw)
    if all(f.paraphrased_answer is None for f in facts):
        answer_logp = tr.paraphrased_logp  # the answer itself was scored as the paraphrase
    else:
        answer_logp = normalised_logprobs(backbone, facts, estimator, **score_kw)
    predictions = generate(backbone, facts, **(generation or {}))
    rouge = rouge_l_recall(predictions, [f.answer for f in facts])
    return UtilityComponents(probability(tr, answer_logp), sum(rouge) / len(rouge),
                             retain_truth_ratio_stat(tr.ratio))


def model_utility(backbone: Backbone, retain: Sequence[Fact], real_authors: Sequence[Fact],
                  world_facts: Sequence[Fact], estimator: str = "full_mask",
                  generation: dict[str, Any] | None = None, **score_kw) -> ModelUtility:
    """Harmonic mean of the nine TOFU statistics over the three evaluation sets."""
    sets = {"retain": retain, "real_authors": real_authors, "world_facts": world_facts}
    components = {kind: split_components(backbone, facts, kind, estimator, generation, **score_kw)
                  for kind, facts in sets.items()}
    return ModelUtility(components, estimator)
