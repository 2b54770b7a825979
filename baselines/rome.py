"""ROME (Meng et al. 2022) adapted to unlearning on a masked diffusion LM.

For each forget fact in turn (sequential ROME; each edit sees the previous ones):
- key k*: mean input of `mlp_out_proj(layer)` at the last subject token over context rows
  (plain prompt + seeded corpus prefixes) x (masked states of the answer)
  (`baselines.edit_contexts`);
- target v* = W k* + delta, delta from `baselines.value_target.optimise_delta` (minimise
  the answer's masked-diffusion log-likelihood, KL on a neutral prompt, norm clamp);
- rank-one update W <- W + (v* - W k*) (C^-1 k*)^T / (k*^T C^-1 k*), C the uncentred key
  second moment on retain text (`baselines.covariance`, phase "covariance"), so that
  W_new k* = v*.
Weights are edited in place; `undo` restores the edited matrix from a saved copy.

Config keys: `layer` (int, "tie" = chosen by TIE tracing, phase "tracing"; default the
middle layer (num_layers - 1) // 2), `cov_facts` (256), `cov_ridge` (1e-4,
added to C's diagonal relative to its mean diagonal), `n_prefixes`, `prefix_tokens`,
`mask_ratios` (ContextConfig), `v_steps`, `v_lr`, `kl_factor`, `v_weight_decay`, `clamp`
(ValueConfig), `retain_eval_facts` (32, reporting only).
"""

from __future__ import annotations

from typing import Any

import torch

from harness.hooks import at_positions, capture_input
from harness.measure import timed
from harness.methods.base import EditRequest, Method, MethodOutcome
from harness.methods.registry import register_method

from baselines.configs import ROME_KEYS, validate_rome
from baselines.covariance import KeyMomentStatistics
from baselines.edit_contexts import build_contexts, neutral_contexts
from baselines.editing import EditSetup, edit_setup, finish_edit, solve_psd
from baselines.layer_choice import rome_layer, tie_layer
from baselines.value_target import optimise_delta


def rank_one_update(weight: torch.Tensor, key: torch.Tensor, target: torch.Tensor,
                    cov: torch.Tensor, current: torch.Tensor | None = None) -> torch.Tensor:
    """The update U (same shape as `weight` [d_v, d_k]) with (W + U) k* = v*.

    U = (v* - W k*) (C^-1 k*)^T / (k*^T C^-1 k*); `current` overrides W k* (e.g. the module
    output including a bias). Computed in float64."""
    w, k, v = weight.double(), key.double().to(weight.device), target.double().to(weight.device)
    c = cov.double().to(weight.device)
    cur = w @ k if current is None else current.double().to(weight.device)
    u = solve_psd(c, k[:, None])[:, 0]  # C^-1 k*
    return torch.outer(v - cur, u) / (k @ u)


@register_method("rome")
class ROME(KeyMomentStatistics, Method):
    """Sequential rank-one edits of one MLP output projection, one per forget fact."""

    def apply(self, request: EditRequest) -> MethodOutcome:
        config: dict[str, Any] = {**self.config, **request.config}
        validate_rome(config)  # the plan-time check (harness.plan_checks), before any work
        setup = edit_setup(request, config, self.name, extra_keys=ROME_KEYS)
        phases = setup.phases  # the edit's phases join the setup's
        extra: dict[str, Any] = {}
        if config.get("layer") == "tie":
            with timed(phases, "tracing", request.backbone.device):
                layer, extra["tie_per_layer"] = tie_layer(request.backbone, request.forget)
        else:
            layer = rome_layer(request.backbone, config.get("layer"))
        return _run_rome(request, setup, layer, phases, extra)


def _run_rome(request: EditRequest, setup: EditSetup, layer: int, phases: dict[str, float],
              extra: dict[str, Any]) -> MethodOutcome:
    backbone = request.backbone
    module = backbone.mlp_out_proj(layer)
    saved = setup.save_weights([layer])
    with timed(phases, "covariance", backbone.device):
        covs, n_keys = setup.covariances([layer])
    per_fact: list[dict[str, Any]] = []
    for i, fact in enumerate(request.forget):
        with timed(phases, "keys", backbone.device):
            ctx = build_contexts(backbone, [fact], setup.prefixes, setup.contexts,
                                 request.seed + i)  # plain tensors: reused under autograd
            with torch.inference_mode(), capture_input(module) as ins:
                backbone.logits(ctx.input_ids.to(backbone.device))
            key = at_positions(ins[0], ctx.subject_pos).float().mean(0)
        with timed(phases, "value_optimisation", backbone.device):
            neutral = neutral_contexts(backbone, [fact])
            value = optimise_delta(backbone, layer, ctx, neutral, setup.values)
        with timed(phases, "update", backbone.device), torch.inference_mode():
            current = module(key.to(module.weight.dtype)[None]).float()[0]
            target = current + value.delta.float()
            update = rank_one_update(module.weight, key, target, covs[layer], current)
            module.weight.add_(update.to(module.weight.dtype))
        per_fact.append({"fact": fact.key, "delta_norm": float(value.delta.norm()),
                         "v_norm": float(value.v_original.norm()),
                         "answer_logp_token_before": value.answer_logp_before,
                         "answer_logp_token_after": value.answer_logp_after,
                         "kl": value.kl, "n_contexts": len(ctx)})
    details = {"layer": layer, "cov_keys": n_keys, "facts": per_fact, **extra}
    return finish_edit(request, setup, saved, details)

