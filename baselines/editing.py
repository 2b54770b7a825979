"""What ROME and MEMIT share: config parsing, covariance, saved weights, before/after scores.

Phases every ROME/MEMIT edit reports besides its own (tracing, covariance, keys,
value_optimisation, update): `prefixes` (the random corpus prefixes of the edit contexts,
the method's), and two the harness's bookkeeping, listed in
`MethodOutcome.excluded_phases` and not part of the edit time
(docs/measurements/edit_timing_rules.md): `undo_copy` (copies of the matrices about to be
edited, kept for `undo`) and `report_eval` (the before/after forget and retain
log-probabilities of `details`, which no step of the edit reads).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Sequence

import torch

from harness.evaluation.finite import json_safe
from harness.evaluation.mean_scores import mean_logprobs
from harness.evaluation.retain_sample import seeded_subset
from harness.measure import bookkeeping, timed
from harness.methods.base import EditRequest, MethodNotApplicable, MethodOutcome

from baselines.configs import (  # noqa: F401  (the key tables, re-exported)
    COMMON_KEYS,
    CONTEXT_KEYS,
    VALUE_KEYS,
    ContextConfig,
    ValueConfig,
    parse_edit_config,
)
from baselines.covariance import retain_key_moments
from baselines.edit_contexts import prefix_token_lists

UNDO_COPY = "undo_copy"  # the harness's bookkeeping phases (excluded from the edit time)
REPORT_EVAL = "report_eval"
EXCLUDED_PHASES = (UNDO_COPY, REPORT_EVAL)


def solve_psd(matrix: torch.Tensor, rhs: torch.Tensor) -> torch.Tensor:
    """matrix^-1 rhs for a symmetric positive definite matrix (Cholesky, float64)."""
    m = matrix.double()
    chol, info = torch.linalg.cholesky_ex(m)
    if int(info) != 0:  # not numerically PD: fall back to a least-squares solve
        return torch.linalg.lstsq(m, rhs.double()).solution
    return torch.cholesky_solve(rhs.double(), chol)


@dataclass
class EditSetup:
    request: EditRequest
    contexts: ContextConfig
    values: ValueConfig
    prefixes: list[list[int]]
    cov_facts: int
    cov_ridge: float
    retain_eval: list
    score_batch_size: int
    before: tuple[float, float]
    # wall-clock per phase, the method's and the excluded ones; the edit adds its own
    phases: dict[str, float] = field(default_factory=dict)

    def covariances(self, layers: Sequence[int]) -> tuple[dict[int, torch.Tensor], int]:
        """C per layer (+ ridge * mean diagonal * I, for a well-conditioned solve)."""
        req = self.request
        covs, n = retain_key_moments(req, layers, self.cov_facts)
        for layer, c in covs.items():
            eye = torch.eye(c.shape[0], dtype=c.dtype)
            covs[layer] = c + self.cov_ridge * float(c.diagonal().mean()) * eye
        return covs, n

    def save_weights(self, layers: Sequence[int]) -> dict[int, torch.Tensor]:
        """Copies of the weight matrices about to be edited (for `undo`; phase undo_copy)."""
        saved = {}
        with bookkeeping(self.phases, UNDO_COPY, self.request.backbone.device):
            for layer in layers:
                weight = getattr(self.request.backbone.mlp_out_proj(layer), "weight", None)
                if not isinstance(weight, torch.Tensor) or weight.dim() != 2:
                    raise MethodNotApplicable(
                        f"{self.request.backbone.name}: layer {layer}'s MLP output projection "
                        f"({self.request.backbone.mlp_out_proj_path(layer)}) has no 2-D "
                        "weight; ROME/MEMIT edit a dense matrix")
                saved[layer] = weight.detach().clone()
        return saved


def edit_setup(request: EditRequest, config: dict[str, Any], method: str,
               extra_keys: Sequence[str] = ()) -> EditSetup:
    parsed = parse_edit_config(config, method, extra_keys)  # the plan-time check's parser
    if not request.forget:
        raise ValueError(f"method '{method}': the forget set is empty")
    if not request.retain:
        raise ValueError(f"method '{method}': needs retain facts (key statistics, prefixes)")
    contexts, values = parsed.contexts, parsed.values
    corpus = [f.answer for f in request.retain]
    phases: dict[str, float] = {}
    with timed(phases, "prefixes", request.backbone.device):
        prefixes = prefix_token_lists(request.backbone, corpus, contexts, request.seed)
    retain_eval = seeded_subset(request.retain, parsed.retain_eval_facts, request.seed,
                                may_be_short=True)
    batch = parsed.score_batch_size
    with bookkeeping(phases, REPORT_EVAL, request.backbone.device):
        before = mean_logprobs(request.backbone, request.forget, retain_eval, batch)
    return EditSetup(request, contexts, values, prefixes, parsed.cov_facts,
                     float(parsed.cov_ridge), retain_eval, batch, before, phases)


def finish_edit(request: EditRequest, setup: EditSetup, saved: dict[int, torch.Tensor],
                details: dict[str, Any]) -> MethodOutcome:
    """The outcome of an edit whose phases are in `setup.phases`; adds the after scores."""
    backbone = request.backbone
    phases = setup.phases
    with bookkeeping(phases, REPORT_EVAL, backbone.device):
        after = mean_logprobs(backbone, request.forget, setup.retain_eval,
                              setup.score_batch_size)

    def undo() -> None:
        with torch.no_grad():
            for layer, weight in saved.items():
                backbone.mlp_out_proj(layer).weight.copy_(weight)

    collapsed = not all(torch.isfinite(backbone.mlp_out_proj(l).weight).all() for l in saved)
    info = {
        "estimator": "full_mask",
        "forget_logp_before": setup.before[0], "forget_logp_after": after[0],
        "retain_logp_before": setup.before[1], "retain_logp_after": after[1],
        "forget_drop": setup.before[0] - after[0], "retain_drop": setup.before[1] - after[1],
        "n_forget": len(request.forget), "n_retain_eval": len(setup.retain_eval),
        "config": {**{f.name: getattr(setup.contexts, f.name) for f in fields(setup.contexts)},
                   **{f"v_{f.name}": getattr(setup.values, f.name) for f in fields(setup.values)},
                   "cov_facts": setup.cov_facts, "cov_ridge": setup.cov_ridge},
        **details,
    }
    return MethodOutcome(backbone=backbone, phase_seconds=phases, steps=None, converged=True,
                         collapsed=collapsed,
                         collapse_reason="non-finite edited weights" if collapsed else None,
                         details=json_safe(info), undo=undo,
                         excluded_phases=tuple(p for p in EXCLUDED_PHASES if p in phases))

