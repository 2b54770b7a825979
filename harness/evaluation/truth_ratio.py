"""TOFU's truth ratio from MDLM answer log-probabilities.

For a question q with paraphrased answer a~ and perturbed (wrong) answers a^_1..a^_k,
with P_norm(a) = P(a | q)^(1/|a|) the length-normalised answer probability:

    R_truth = (prod_j P_norm(a^_j))^(1/k) / P_norm(a~)

(geometric mean of the perturbed answers over the paraphrase). R_truth << 1 means the
model prefers the true answer. Splits without a paraphrase (real_authors, world_facts)
use the answer itself as a~ (as TOFU does). Log-probabilities come from
`harness.evaluation.answer_logprob.score_facts` with the named estimator (default `full_mask`),
divided by the answer's token count.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import torch

from harness.backbones.base import Backbone
from harness.data.fact import Fact
from harness.evaluation.answer_logprob import score_facts


@dataclass
class TruthRatios:
    paraphrased_logp: torch.Tensor  # [n] length-normalised log p(paraphrased answer)
    perturbed_logp: torch.Tensor  # [n, k] length-normalised log p(perturbed answers)
    estimator: str

    @property
    def ratio(self) -> torch.Tensor:
        """[n] R_truth = exp(mean_j log P_norm(perturbed_j) - log P_norm(paraphrased))."""
        return truth_ratio_from_logprobs(self.paraphrased_logp, self.perturbed_logp)


def truth_ratio_from_logprobs(paraphrased_logp: torch.Tensor,
                              perturbed_logp: torch.Tensor) -> torch.Tensor:
    """R_truth from length-normalised log-probs: [n] and [n, k] -> [n]."""
    if perturbed_logp.dim() != 2 or perturbed_logp.shape[0] != paraphrased_logp.shape[0]:
        raise ValueError(f"perturbed log-probs must be [n, k] with n = "
                         f"{paraphrased_logp.shape[0]}, got {list(perturbed_logp.shape)}")
    return torch.exp(perturbed_logp.mean(1) - paraphrased_logp)


def normalised_logprobs(backbone: Backbone, facts: Sequence[Fact], estimator: str = "full_mask",
                        **score_kw) -> torch.Tensor:
    """[n] log p(answer | question) / number of answer tokens."""
    scores = score_facts(backbone, facts, estimator=estimator, **score_kw)
    return scores.logp / scores.n_tokens.clamp(min=1)


def truth_ratios(backbone: Backbone, facts: Sequence[Fact], estimator: str = "full_mask",
                 **score_kw) -> TruthRatios:
    """Score every fact's paraphrased and perturbed answers (TOFU perturbed-format facts)."""
    if not facts:
        raise ValueError("truth_ratios: no facts")
    no_perturbed = [f.key for f in facts if not f.perturbed_answers]
    if no_perturbed:
        raise ValueError(f"truth_ratios: facts without perturbed answers: {no_perturbed[:5]} "
                         f"(use a *_perturbed split)")
    k = min(len(f.perturbed_answers) for f in facts)
    paraphrased = [replace(f, answer=f.paraphrased_answer or f.answer) for f in facts]
    perturbed = [replace(f, answer=f.perturbed_answers[j]) for f in facts for j in range(k)]
    para = normalised_logprobs(backbone, paraphrased, estimator, **score_kw)
    pert = normalised_logprobs(backbone, perturbed, estimator, **score_kw).view(len(facts), k)
    return TruthRatios(para, pert, estimator)
