"""Per-token answer scores under the `full_mask` estimator, with each position's distribution.

Every answer token is masked at once (the `full_mask` estimator of
`harness.evaluation.answer_logprob`, method.md "Log-probability of an answer"); at each
answer position i the model gives a distribution p_i over the vocabulary, and we keep

- `logp[i]  = log p_i(a_i)`, the answer token's log-probability (their sum is exactly the
  `full_mask` score of the fact);
- `mu[i]    = E_{z ~ p_i}[log p_i(z)]` (minus the entropy of p_i);
- `sigma[i] = sqrt(E_{z ~ p_i}[(log p_i(z) - mu[i])^2])`,

which is what the membership-inference scores of `harness.evaluation.membership` need
(LOSS, ZLib and Min-K% read `logp`; Min-K%++ standardises it with `mu` and `sigma`).
The moments are taken over the model's whole output row (the same softmax as the
log-probability). Rows are batched by `harness.diffusion.batching.batches` (each row padded
to its own width), so a fact's scores do not depend on the other facts of the list.
Whatever hooks are attached to the backbone (an edit memory) act on these forwards.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from harness.backbones.base import Backbone
from harness.data.fact import Fact
from harness.diffusion.batching import batches, encode_facts


@dataclass(frozen=True)
class TokenScores:
    """One fact's answer scored token by token (nats; CPU float64 tensors of equal length)."""

    fact_key: str
    answer: str  # the answer text that was scored
    logp: torch.Tensor  # [n] log p_i(a_i), every answer token masked
    mu: torch.Tensor  # [n] mean of log p_i over the vocabulary under p_i
    sigma: torch.Tensor  # [n] standard deviation of log p_i under p_i

    @property
    def n_tokens(self) -> int:
        return int(self.logp.numel())

    @property
    def total_logp(self) -> float:
        """The fact's `full_mask` answer log-probability (sum over its tokens)."""
        return float(self.logp.sum())


def distribution_moments(logits: torch.Tensor, targets: torch.Tensor, chunk_rows: int = 256
                         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For logits [N, V] and target ids [N]: (log p(target), mu, sigma), each [N] float64.

    mu and sigma are the mean and standard deviation of log p(z) with z drawn from p itself
    (Zhang et al. 2024, Min-K%++, eq. 2). Computed in float64, `chunk_rows` rows at a time
    (a memorised token's sigma is tiny, and float32 would leave its z-score mostly rounding
    noise); entries with p(z) = 0 contribute nothing (their log p may be -inf)."""
    picked, mus, sigmas = [], [], []
    for start in range(0, logits.shape[0], chunk_rows):
        logp = torch.log_softmax(logits[start:start + chunk_rows].double(), dim=-1)
        p = logp.exp()
        safe = torch.where(p > 0, logp, torch.zeros_like(logp))
        mu = (p * safe).sum(-1)
        var = (p * (safe - mu[:, None]).square()).sum(-1)
        rows = targets[start:start + chunk_rows].long().to(logp.device)
        picked.append(logp.gather(-1, rows.unsqueeze(-1)).squeeze(-1))
        mus.append(mu)
        sigmas.append(var.clamp(min=0.0).sqrt())
    if not picked:
        empty = logits.new_zeros(0, dtype=torch.float64)
        return empty, empty, empty
    return torch.cat(picked), torch.cat(mus), torch.cat(sigmas)


def full_mask_token_scores(backbone: Backbone, facts: Sequence[Fact], batch_size: int = 32,
                           question_field: str = "question", answer_field: str = "answer"
                           ) -> list[TokenScores]:
    """`TokenScores` of every fact, in the order given; deterministic (no random draw)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    encoded = encode_facts(backbone, facts, question_field, answer_field)
    out: list[TokenScores | None] = [None] * len(encoded)
    with torch.inference_mode():
        for index, batch in batches(backbone, encoded, batch_size):
            ids = batch.input_ids.to(backbone.device)
            where = batch.answer_mask.to(backbone.device)
            masked = ids.masked_fill(where, backbone.mask_token_id)
            # `logits_at` runs the output head on the answer rows only, in row-major order.
            logp, mu, sigma = distribution_moments(backbone.logits_at(masked, where), ids[where])
            logp, mu, sigma = logp.cpu(), mu.cpu(), sigma.cpu()
            start = 0
            for row, i in enumerate(index):
                n = int(batch.answer_lengths[row])
                fact = encoded[i].fact
                out[i] = TokenScores(fact.key, str(getattr(fact, answer_field)).strip(),
                                     logp[start:start + n].clone(), mu[start:start + n].clone(),
                                     sigma[start:start + n].clone())
                start += n
    return [s for s in out if s is not None]
