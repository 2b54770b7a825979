"""Masked-diffusion training losses (LLaDA's SFT objective) through the `Backbone` adapter.

Per row, t ~ U(eps, 1]; every target token (answer + trailing EOS, `QABatch.target_mask`)
is replaced by the mask token independently with probability t (at least one per row);
the loss is the cross-entropy on the masked targets weighted by 1/t. LLaDA's SFT
normalises each row by its number of target tokens (`sft_loss`); the unnormalised sum
over the answer tokens (`answer_nll_estimate`) is the Monte Carlo upper bound on
-log p(answer | question) that likelihood-based unlearning losses (NPO) need.
Both return one differentiable value per row, [B]; randomness comes only from the
`torch.Generator` passed in (CPU generator; draws are moved to the model's device).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from harness.backbones.base import Backbone
from harness.diffusion.batching import QABatch

DEFAULT_EPS = 1e-3


@dataclass(frozen=True)
class DiffusionMasking:
    """One forward-process draw x_t for a batch."""

    input_ids: torch.Tensor  # [B, L] with masked positions replaced by the mask token
    masked: torch.Tensor  # [B, L] bool: positions that were masked (subset of the eligible)
    t: torch.Tensor  # [B] masking level of each row, in (eps, 1]


def sample_masking(input_ids: torch.Tensor, eligible: torch.Tensor, mask_token_id: int,
                   generator: torch.Generator, eps: float = DEFAULT_EPS) -> DiffusionMasking:
    """Mask each `eligible` token with prob t_row, t_row ~ U(eps, 1]; >= 1 mask per row.

    Rows with no eligible position are rejected (they would have nothing to learn from).
    """
    if not 0.0 <= eps < 1.0:
        raise ValueError(f"eps must be in [0, 1), got {eps}")
    eligible = eligible.bool().cpu()
    counts = eligible.sum(1)
    if bool((counts == 0).any()):
        rows = (counts == 0).nonzero().flatten().tolist()
        raise ValueError(f"rows {rows} have no target token to mask")
    b, width = input_ids.shape
    t = eps + (1.0 - eps) * (1.0 - torch.rand(b, generator=generator))  # (eps, 1]
    masked = (torch.rand((b, width), generator=generator) < t[:, None]) & eligible
    # Rows that drew no mask get one uniformly chosen eligible position masked.
    empty = masked.sum(1) == 0
    if bool(empty.any()):
        scores = torch.rand((b, width), generator=generator).masked_fill(~eligible, -1.0)
        forced = F.one_hot(scores.argmax(1), width).bool() & empty[:, None]
        masked = masked | forced
    masked = masked.to(input_ids.device)
    noisy = input_ids.masked_fill(masked, mask_token_id)
    return DiffusionMasking(noisy, masked, t.to(input_ids.device))


def masked_token_nll(backbone: Backbone, noisy_ids: torch.Tensor, targets: torch.Tensor,
                     masked: torch.Tensor) -> torch.Tensor:
    """[B, L] cross-entropy of `targets` at `masked` positions (0 elsewhere); differentiable."""
    masked = masked.bool()
    # Logits and cross-entropy only at the masked positions: the output head and the softmax
    # over the vocabulary are the costliest part of a small model's step, and unmasked
    # positions contribute nothing (`logits_at` runs the head on those rows alone).
    picked = F.cross_entropy(backbone.logits_at(noisy_ids, masked).float(), targets[masked],
                             reduction="none")
    return torch.zeros(masked.shape, dtype=picked.dtype, device=picked.device
                       ).masked_scatter(masked, picked)


def sft_loss(backbone: Backbone, batch: QABatch, generator: torch.Generator,
             eps: float = DEFAULT_EPS) -> torch.Tensor:
    """[B] LLaDA SFT loss: sum_{masked targets} CE / t, divided by the row's target count."""
    device = backbone.device
    ids = batch.input_ids.to(device)
    draw = sample_masking(ids, batch.target_mask, backbone.mask_token_id, generator, eps)
    nll = masked_token_nll(backbone, draw.input_ids, ids, draw.masked)
    n_targets = batch.target_mask.to(device).sum(1).clamp(min=1)
    return nll.sum(1) / draw.t / n_targets


def answer_nll_estimate(backbone: Backbone, batch: QABatch, generator: torch.Generator,
                        eps: float = DEFAULT_EPS) -> torch.Tensor:
    """[B] one-draw estimate of -log p(answer | question): sum over masked *answer* tokens
    (EOS excluded) of CE / t, not normalised. Its expectation is the negative diffusion
    ELBO, an upper bound on the answer NLL in nats; differentiable (for NPO-style losses)."""
    device = backbone.device
    ids = batch.input_ids.to(device)
    draw = sample_masking(ids, batch.answer_mask, backbone.mask_token_id, generator, eps)
    nll = masked_token_nll(backbone, draw.input_ids, ids, draw.masked)
    return nll.sum(1) / draw.t
