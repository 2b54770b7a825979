"""Target values for ROME/MEMIT unlearning edits: gradient steps on one delta vector.

A delta d is added to the output of `mlp_out_proj(layer)` at the last subject token of
every context row (prefix x masked answer state). Adam on d minimises
    mean_rows [mean over masked answer tokens of log p(a_i | x_t)]      (unlearning)
  + kl_factor * KL(p_original || p_edited) on the neutral prompt's masked answer slots
  + weight_decay * ||d||^2 / ||v||^2
with ||d|| clamped to <= clamp * ||v|| after every step, v = the module's original output
at the subject token (mean over rows). Only d receives gradients; the model's parameters
are frozen for the duration.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.nn.functional as F

from harness.backbones.base import Backbone
from harness.hooks import add_at_positions, at_positions, capture_output

from baselines.configs import ValueConfig  # torch-free: checked when the workflow plans
from baselines.edit_contexts import ContextBatch


@dataclass
class ValueResult:
    delta: torch.Tensor  # [d_v] float32, on the model's device
    v_original: torch.Tensor  # [d_v] mean original output at the subject token
    answer_logp_before: float  # mean per-token log-prob over the rows' masked answer tokens
    answer_logp_after: float
    kl: float


@contextmanager
def frozen(model: torch.nn.Module) -> Iterator[None]:
    flags = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(model.parameters(), flags):
            p.requires_grad_(flag)


def _answer_logp(backbone: Backbone, ctx: ContextBatch) -> torch.Tensor:
    """Mean over rows of the mean per-token log-prob of the masked answer tokens."""
    logits = backbone.logits(ctx.input_ids.to(backbone.device)).float()
    logp = torch.log_softmax(logits, -1)
    picked = logp.gather(-1, ctx.targets.to(logp.device)[..., None]).squeeze(-1)
    masked = ctx.masked.to(logp.device)
    per_row = (picked * masked).sum(1) / masked.sum(1).clamp(min=1)
    return per_row.mean()


def _slot_logprobs(backbone: Backbone, ctx: ContextBatch) -> torch.Tensor:
    """[n_slots, V] log-distributions at the neutral prompts' masked answer slots."""
    logits = backbone.logits(ctx.input_ids.to(backbone.device)).float()
    return torch.log_softmax(logits[ctx.masked.to(logits.device)], -1)


def optimise_delta(backbone: Backbone, layer: int, ctx: ContextBatch, neutral: ContextBatch,
                   cfg: ValueConfig) -> ValueResult:
    """The unlearning delta at `layer` for the rows of `ctx` (one fact or a batch)."""
    module = backbone.mlp_out_proj(layer)
    with torch.no_grad():
        with capture_output(module) as outs:
            before = float(_answer_logp(backbone, ctx))
        v_original = at_positions(outs[0], ctx.subject_pos).float().mean(0)
        reference = _slot_logprobs(backbone, neutral)
    v_norm = float(v_original.norm())
    delta = torch.zeros_like(v_original, requires_grad=True)
    optimizer = torch.optim.Adam([delta], lr=cfg.lr)
    positions = [ctx.subject_pos]
    kl = torch.zeros(())
    with frozen(backbone.model), add_at_positions(module, delta, positions):
        for _ in range(cfg.steps):
            optimizer.zero_grad(set_to_none=True)
            positions[0] = ctx.subject_pos
            forget_term = _answer_logp(backbone, ctx)
            positions[0] = neutral.subject_pos
            edited = _slot_logprobs(backbone, neutral)
            kl = F.kl_div(edited, reference, log_target=True, reduction="batchmean")
            loss = forget_term + cfg.kl_factor * kl
            if cfg.weight_decay:
                loss = loss + cfg.weight_decay * delta.pow(2).sum() / max(v_norm, 1e-12) ** 2
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                limit = cfg.clamp * v_norm
                norm = float(delta.norm())
                if norm > limit:
                    delta.mul_(limit / norm)
        with torch.no_grad():
            positions[0] = ctx.subject_pos
            after = float(_answer_logp(backbone, ctx))
    return ValueResult(delta.detach(), v_original, before, after, float(kl.detach()))
