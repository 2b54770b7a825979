"""What ROME and MEMIT share: config parsing, covariance, saved weights, before/after scores.

The before/after forget and retain log-probabilities are reporting, not part of the edit:
their time goes to `details["report_eval_seconds"]`, not to `phase_seconds`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, fields
from typing import Any, Sequence

import torch

from harness.evaluation.finite import json_safe
from harness.evaluation.mean_scores import mean_logprobs
from harness.evaluation.retain_sample import retain_eval_subset
from harness.methods.base import EditRequest, MethodNotApplicable, MethodOutcome

from baselines.configs import (  # noqa: F401  (the key tables, re-exported)
    COMMON_KEYS,
    CONTEXT_KEYS,
    VALUE_KEYS,
    ContextConfig,
    ValueConfig,
    parse_edit_config,
)
from baselines.covariance import key_second_moments
from baselines.edit_contexts import prefix_token_lists


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
    report_eval_seconds: float

    def covariances(self, layers: Sequence[int]) -> tuple[dict[int, torch.Tensor], int]:
        """C per layer (+ ridge * mean diagonal * I, for a well-conditioned solve)."""
        req = self.request
        covs, n = key_second_moments(req.backbone, layers, req.retain, self.cov_facts,
                                     seed=req.seed)
        for layer, c in covs.items():
            eye = torch.eye(c.shape[0], dtype=c.dtype)
            covs[layer] = c + self.cov_ridge * float(c.diagonal().mean()) * eye
        return covs, n

    def save_weights(self, layers: Sequence[int]) -> dict[int, torch.Tensor]:
        """Copies of the weight matrices about to be edited (for `undo`)."""
        saved = {}
        for layer in layers:
            weight = getattr(self.request.backbone.mlp_out_proj(layer), "weight", None)
            if not isinstance(weight, torch.Tensor) or weight.dim() != 2:
                raise MethodNotApplicable(
                    f"{self.request.backbone.name}: layer {layer}'s MLP output projection "
                    f"({self.request.backbone.mlp_out_proj_path(layer)}) has no 2-D weight; "
                    "ROME/MEMIT edit a dense matrix")
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
    prefixes = prefix_token_lists(request.backbone, corpus, contexts, request.seed)
    retain_eval = retain_eval_subset(request.retain, parsed.retain_eval_facts, request.seed)
    batch = parsed.score_batch_size
    start = time.perf_counter()
    before = mean_logprobs(request.backbone, request.forget, retain_eval, batch)
    return EditSetup(request, contexts, values, prefixes, parsed.cov_facts,
                     float(parsed.cov_ridge), retain_eval, batch, before,
                     time.perf_counter() - start)


def finish_edit(request: EditRequest, setup: EditSetup, phases: dict[str, float],
                saved: dict[int, torch.Tensor], details: dict[str, Any]) -> MethodOutcome:
    backbone = request.backbone
    start = time.perf_counter()
    after = mean_logprobs(backbone, request.forget, setup.retain_eval, setup.score_batch_size)
    report_seconds = setup.report_eval_seconds + time.perf_counter() - start

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
        "report_eval_seconds": report_seconds,
        "config": {**{f.name: getattr(setup.contexts, f.name) for f in fields(setup.contexts)},
                   **{f"v_{f.name}": getattr(setup.values, f.name) for f in fields(setup.values)},
                   "cov_facts": setup.cov_facts, "cov_ridge": setup.cov_ridge},
        **details,
    }
    return MethodOutcome(backbone=backbone, phase_seconds=phases, steps=None, converged=True,
                         collapsed=collapsed,
                         collapse_reason="non-finite edited weights" if collapsed else None,
                         details=json_safe(info), undo=undo)

