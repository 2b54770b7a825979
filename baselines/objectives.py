"""Masked-diffusion losses used by the gradient baselines (per row, differentiable).

Built on `harness.diffusion.loss` (one forward-process draw x_t per row, t ~ U(eps, 1]):
- `answer_loss`: LLaDA's SFT loss restricted to the *answer* tokens (EOS padding excluded):
  sum over masked answer tokens of CE / t, divided by the answer length. Gradient ascent
  maximises it on the forget set (TOFU's GA on the per-token answer NLL).
- `retain_loss`: the fine-tuning objective itself (`sft_loss`, answer + trailing EOS),
  minimised on retain facts by GradDiff / NPO+RT.
- `paired_answer_nll`: the summed answer NLL estimate for the model and a reference model
  under the SAME mask draw (NPO's log-ratio without extra mask noise).
- `npo_loss`: -(2/beta) mean log sigmoid(beta (NLL_theta - NLL_ref)).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from harness.backbones.base import Backbone
from harness.diffusion.batching import QABatch
from harness.diffusion.loss import DEFAULT_EPS, masked_token_nll, sample_masking, sft_loss


def answer_loss(backbone: Backbone, batch: QABatch, generator: torch.Generator,
                eps: float = DEFAULT_EPS) -> torch.Tensor:
    """[B] per-token masked-diffusion answer loss (CE / t summed, / answer length)."""
    ids = batch.input_ids.to(backbone.device)
    draw = sample_masking(ids, batch.answer_mask, backbone.mask_token_id, generator, eps)
    nll = masked_token_nll(backbone, draw.input_ids, ids, draw.masked)
    n_answer = batch.answer_mask.to(ids.device).sum(1).clamp(min=1)
    return nll.sum(1) / draw.t / n_answer


def retain_loss(backbone: Backbone, batch: QABatch, generator: torch.Generator,
                eps: float = DEFAULT_EPS) -> torch.Tensor:
    """[B] the fine-tuning (SFT) loss on retain rows."""
    return sft_loss(backbone, batch, generator, eps)


def paired_answer_nll(backbone: Backbone, reference: Backbone, batch: QABatch,
                      generator: torch.Generator, eps: float = DEFAULT_EPS
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """([B] NLL_theta with gradients, [B] NLL_ref without) from one shared mask draw.

    Each is sum over masked answer tokens of CE / t: the one-draw Monte Carlo estimate of
    -log p(answer | question) (`harness.diffusion.loss.answer_nll_estimate`)."""
    ids = batch.input_ids.to(backbone.device)
    draw = sample_masking(ids, batch.answer_mask, backbone.mask_token_id, generator, eps)
    nll_theta = masked_token_nll(backbone, draw.input_ids, ids, draw.masked).sum(1) / draw.t
    with torch.no_grad():
        ref_ids = draw.input_ids.to(reference.device)
        nll_ref = masked_token_nll(reference, ref_ids, ids.to(reference.device),
                                   draw.masked.to(reference.device)).sum(1)
        nll_ref = nll_ref.to(nll_theta.device) / draw.t
    return nll_theta, nll_ref


def npo_loss(nll_theta: torch.Tensor, nll_ref: torch.Tensor, beta: float) -> torch.Tensor:
    """NPO (Zhang et al. 2024): -(2/beta) mean log sigmoid(beta (NLL_theta - NLL_ref))."""
    if not beta > 0:
        raise ValueError(f"NPO beta must be > 0, got {beta}")
    return -(2.0 / beta) * F.logsigmoid(beta * (nll_theta - nll_ref)).mean()
