"""MEMIT (Meng et al. 2023) adapted to unlearning on a masked diffusion LM.

All forget facts are edited in one batch over a window of layers R = [l_1 .. l_L]:
1. per fact i, a delta_i at the last layer l_L (`baselines.value_target`, the same
   unlearning objective as ROME): the target hidden state is z_i = h_i + delta_i, h_i the
   output of block l_L at the subject token (mean over the fact's context rows);
2. for each layer l in R in order: keys K (d_k x n, mean over context rows, recomputed on
   the model edited so far), residual R = (z - h_current) / (number of layers left),
   Delta = R K^T (lambda C + K K^T)^-1 added to W_l (C: key second moment on retain text,
   phase "covariance"). Dividing the residual over the remaining layers is MEMIT's spread.
Config keys: `layers` (list, "tie" = window centred on the TIE-traced layer, phase
"tracing"; default `layer_choice.memit_layers`); `mom2_weight` (lambda, fixed;
MEMIT uses 15000 on GPT-J) or, by default, `mom2_ratio` (0.1): lambda = mom2_ratio x the
mean whitened key norm k^T C^-1 k of the batch at that layer, a scale-free form (a single
fact's key then receives 1 / (1 + mom2_ratio) of its residual at that layer, whatever the
backbone's key scale); plus ROME's context / value / covariance keys.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from harness.backbones.base import Backbone
from harness.hooks import at_positions, capture_input, capture_output
from harness.measure import timed
from harness.methods.base import EditRequest, Method, MethodOutcome
from harness.methods.registry import register_method

from baselines.configs import DEFAULT_MOM2_RATIO, MEMIT_KEYS, memit_mom2, validate_memit  # noqa: F401
from baselines.covariance import KeyMomentStatistics
from baselines.edit_contexts import ContextBatch, build_contexts, neutral_contexts
from baselines.editing import EditSetup, edit_setup, finish_edit, solve_psd
from baselines.layer_choice import memit_layers, tie_layer, window_around
from baselines.value_target import optimise_delta


def memit_update(keys: torch.Tensor, residuals: torch.Tensor, cov: torch.Tensor,
                 mom2_weight: float) -> torch.Tensor:
    """Delta = R K^T (lambda C + K K^T)^-1, keys K [d_k, n], residuals R [d_v, n]; float64.

    Delta solves the normal equations Delta (lambda C + K K^T) = R K^T."""
    k, r = keys.double(), residuals.double().to(keys.device)
    a = mom2_weight * cov.double().to(keys.device) + k @ k.T  # symmetric PD
    return solve_psd(a, (r @ k.T).T).T


def whitened_norm(keys: torch.Tensor, cov: torch.Tensor) -> float:
    """Mean over the columns k of K [d_k, n] of k^T C^-1 k."""
    k = keys.double()
    return float((k * solve_psd(cov.to(k.device), k)).sum(0).mean())


def _mean_per_fact(rows: torch.Tensor, owner: torch.Tensor, n: int) -> torch.Tensor:
    """[n, D] mean of the rows [N, D] belonging to each fact."""
    out = torch.zeros(n, rows.shape[1], dtype=torch.float64, device=rows.device)
    out.index_add_(0, owner.to(rows.device), rows.double())
    counts = torch.bincount(owner, minlength=n).to(rows.device).double()
    return out / counts[:, None]


def _keys_and_hidden(backbone: Backbone, layer: int, last: int, ctx: ContextBatch, n: int
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """(K [d_k, n] at `layer`, H [d_v, n] block `last` outputs) at the subject tokens."""
    with torch.inference_mode():
        with capture_input(backbone.mlp_out_proj(layer)) as ins, \
                capture_output(backbone.blocks()[last]) as outs:
            backbone.logits(ctx.input_ids.to(backbone.device))
        keys = _mean_per_fact(at_positions(ins[0], ctx.subject_pos), ctx.fact_index, n)
        hidden = _mean_per_fact(at_positions(outs[0], ctx.subject_pos), ctx.fact_index, n)
    return keys.T, hidden.T


@register_method("memit")
class MEMIT(KeyMomentStatistics, Method):
    """Batch edit of all forget facts spread over a window of MLP output projections."""

    def apply(self, request: EditRequest) -> MethodOutcome:
        config: dict[str, Any] = {**self.config, **request.config}
        validate_memit(config)  # the plan-time check (harness.plan_checks), before any work
        weight, ratio = memit_mom2(config)
        setup = edit_setup(request, config, self.name, extra_keys=MEMIT_KEYS)
        phases = setup.phases  # the edit's phases join the setup's
        extra: dict[str, Any] = {}
        if config.get("layers") == "tie":
            with timed(phases, "tracing", request.backbone.device):
                centre, extra["tie_per_layer"] = tie_layer(request.backbone, request.forget)
            layers = window_around(request.backbone, centre)
        else:
            layers = memit_layers(request.backbone, config.get("layers"))
        return _run_memit(request, setup, layers, weight, ratio, phases, extra)


def _run_memit(request: EditRequest, setup: EditSetup, layers: Sequence[int],
               mom2_weight: float | None, mom2_ratio: float, phases: dict[str, float],
               extra: dict[str, Any]) -> MethodOutcome:
    backbone = request.backbone
    facts = list(request.forget)
    n, last = len(facts), layers[-1]
    saved = setup.save_weights(layers)
    with timed(phases, "covariance", backbone.device):
        covs, n_keys = setup.covariances(layers)
    with timed(phases, "keys", backbone.device):  # plain tensors: reused under autograd
        ctx = build_contexts(backbone, facts, setup.prefixes, setup.contexts, request.seed)
    with timed(phases, "value_optimisation", backbone.device):
        deltas, per_fact = [], []
        for i, fact in enumerate(facts):
            rows = ctx.fact_index == i
            one = ContextBatch(ctx.input_ids[rows], ctx.targets[rows], ctx.masked[rows],
                               ctx.subject_pos[rows], torch.zeros(int(rows.sum()), dtype=torch.long))
            value = optimise_delta(backbone, last, one, neutral_contexts(backbone, [fact]),
                                   setup.values)
            deltas.append(value.delta.double())
            per_fact.append({"fact": fact.key, "delta_norm": float(value.delta.norm()),
                             "v_norm": float(value.v_original.norm()),
                             "answer_logp_token_before": value.answer_logp_before,
                             "answer_logp_token_after": value.answer_logp_after,
                             "kl": value.kl})
    targets = None
    lams: list[float] = []
    residual_norms = []
    for idx, layer in enumerate(layers):
        with timed(phases, "keys", backbone.device):
            keys, hidden = _keys_and_hidden(backbone, layer, last, ctx, n)
        with timed(phases, "update", backbone.device), torch.inference_mode():
            if targets is None:  # z_i = h_i + delta_i, on the unedited model
                targets = hidden + torch.stack(deltas, 1).to(hidden.device)
            residual = (targets - hidden) / (len(layers) - idx)
            residual_norms.append(float(residual.norm(dim=0).mean()))
            lam = float(mom2_weight) if mom2_weight is not None else \
                mom2_ratio * whitened_norm(keys, covs[layer])
            lams.append(lam)
            weight = backbone.mlp_out_proj(layer).weight
            update = memit_update(keys.to(weight.device), residual, covs[layer], lam)
            weight.add_(update.to(weight.dtype))
    details = {"layers": list(layers), "mom2_weight": lams, "mom2_ratio": None if mom2_weight else mom2_ratio, "cov_keys": n_keys,
               "residual_norms": residual_norms, "facts": per_fact, "n_contexts": len(ctx), **extra}
    return finish_edit(request, setup, saved, details)
