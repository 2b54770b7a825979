"""Answer log-probabilities under an MDLM (method.md, "Log-probability of an answer").

- `full_mask`: mask every answer token once; sum log p(a_i | q, masks). Deterministic.
- `elbo`: the Monte Carlo bound the LLaDA authors evaluate, E_t[(1/t) sum_{masked i}
  log p(a_i | x_t)]. t is drawn as l/L with l ~ U{1..L} and exactly l of the L answer
  tokens masked (LLaDA's lower-variance form of t ~ U(0,1]; same expectation). Each
  sample's estimate comes with its standard error over the M draws. Draws come from a
  per-fact stream (seed, fact key, answer tokens): independent of batch and list order.
All numbers are nats summed over answer tokens, per sample.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from harness.backbones.base import Backbone
from harness.data.fact import Fact
from harness.diffusion.batching import QABatch, batches, encode_facts
from harness.diffusion.seeding import fact_generator

ESTIMATORS = ("full_mask", "elbo")


@dataclass
class AnswerScores:
    logp: torch.Tensor  # [n] nats per sample (sum over answer tokens)
    stderr: torch.Tensor | None  # [n] Monte Carlo standard error (elbo only)
    n_tokens: torch.Tensor  # [n] answer lengths in tokens
    estimator: str

    @property
    def mean(self) -> float:
        return float(self.logp.mean())


def token_logprobs(backbone: Backbone, input_ids: torch.Tensor, targets: torch.Tensor,
                   score_mask: torch.Tensor) -> torch.Tensor:
    """log p(targets) at `score_mask` positions given (masked) `input_ids`: [B, L], 0 elsewhere."""
    logits = backbone.logits(input_ids.to(backbone.device))
    where = score_mask.to(logits.device).bool()
    # The softmax runs only at the scored positions (the rest would be multiplied by 0).
    logp = torch.log_softmax(logits[where].float(), dim=-1)
    picked = logp.gather(-1, targets.to(logp.device)[where].unsqueeze(-1)).squeeze(-1)
    return torch.zeros(where.shape, dtype=picked.dtype, device=picked.device
                       ).masked_scatter(where, picked)


def full_mask_logprob(backbone: Backbone, batch: QABatch) -> torch.Tensor:
    """[B] sum of log p(a_i) with every answer token masked."""
    masked = batch.input_ids.masked_fill(batch.answer_mask, backbone.mask_token_id)
    return token_logprobs(backbone, masked, batch.input_ids, batch.answer_mask).sum(-1).cpu()


def elbo_generators(batch: QABatch, seed: int) -> list[torch.Generator]:
    """One random stream per row, keyed by the fact and its answer tokens (so the paraphrased
    and perturbed answers of a fact get their own draws): a row's Monte Carlo draws do not
    depend on the other rows of its batch or on the list order."""
    return [fact_generator(seed, f"{e.fact.key}|{','.join(map(str, e.answer_ids))}")
            for e in batch.encoded]


def elbo_draws(batch: QABatch, mask_token_id: int, generators: Sequence[torch.Generator]
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One draw per row: (masked input ids, masked-position mask, weight L/l), with
    l ~ U{1..L} answer tokens masked, chosen uniformly, from the row's own stream."""
    chosen = torch.zeros(batch.input_ids.shape, dtype=torch.bool)
    weights = torch.empty(len(batch))
    for r, gen in enumerate(generators):
        start, n = int(batch.prompt_lengths[r]), int(batch.answer_lengths[r])
        l = int(torch.rand(1, generator=gen) * n) + 1  # U{1..L}
        chosen[r, start + torch.rand(n, generator=gen).argsort()[:l]] = True
        weights[r] = n / l
    return batch.input_ids.masked_fill(chosen, mask_token_id), chosen, weights


def elbo_logprob(backbone: Backbone, batch: QABatch, mc_samples: int,
                 seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """[B] Monte Carlo estimate and its standard error (M draws per row, batched)."""
    generators = elbo_generators(batch, seed)
    draws = [elbo_draws(batch, backbone.mask_token_id, generators) for _ in range(mc_samples)]
    masked = torch.cat([d[0] for d in draws])
    chosen = torch.cat([d[1] for d in draws])
    weights = torch.cat([d[2] for d in draws])
    targets = batch.input_ids.repeat(mc_samples, 1)
    per_draw = token_logprobs(backbone, masked, targets, chosen).sum(-1).cpu() * weights
    per_draw = per_draw.view(mc_samples, len(batch))
    mean = per_draw.mean(0)
    stderr = per_draw.std(0, unbiased=True) / mc_samples ** 0.5 if mc_samples > 1 \
        else torch.full_like(mean, float("nan"))
    return mean, stderr


def score_facts(backbone: Backbone, facts: Sequence[Fact], estimator: str = "full_mask",
                batch_size: int = 32, mc_samples: int = 16, seed: int = 0,
                question_field: str = "question", answer_field: str = "answer") -> AnswerScores:
    """Score every fact's answer; deterministic for a given seed."""
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown estimator '{estimator}'; known: {', '.join(ESTIMATORS)}")
    encoded = encode_facts(backbone, facts, question_field, answer_field)
    logp = torch.zeros(len(encoded))
    stderr = torch.zeros(len(encoded)) if estimator == "elbo" else None
    with torch.inference_mode():
        rows = max(1, batch_size // mc_samples) if estimator == "elbo" else batch_size
        for index, batch in batches(backbone, encoded, rows):
            if estimator == "full_mask":
                logp[index] = full_mask_logprob(backbone, batch).float()
            else:
                mean, err = elbo_logprob(backbone, batch, mc_samples, seed)
                logp[index], stderr[index] = mean.float(), err.float()
    n_tokens = torch.tensor([len(e.answer_ids) for e in encoded])
    return AnswerScores(logp, stderr, n_tokens, estimator)

