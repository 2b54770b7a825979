"""Negative Preference Optimization (Zhang et al. 2024) on the masked-diffusion likelihood.

L = -(2/beta) mean log sigmoid(beta (NLL_theta - NLL_ref)) + alpha * retain_loss(retain)
NLL is the summed answer NLL estimate (sum over masked answer tokens of CE / t, one
forward-process draw per row) and the SAME mask draw is used for theta and the reference;
the reference is a frozen deep copy of the model taken before unlearning. alpha > 0 gives
open-unlearning's NPO (= NPO+RT: NPO plus the retain NLL term, as in the NPO paper's
"NPO-RT"); alpha = 0 gives plain NPO. Config keys: `beta`, `alpha` and those of
`baselines.training.TrainingConfig`; defaults: harness/methods/defaults/npo.yaml.
"""

from __future__ import annotations

import torch

from harness.backbones.base import Backbone
from harness.diffusion.batching import QABatch
from harness.methods.base import EditRequest, Method, MethodOutcome
from harness.methods.registry import MethodInfo, register_method

from baselines.configs import NPO_KEYS, check_npo_objective, objective_defaults
from baselines.objectives import npo_loss, paired_answer_nll, retain_loss
from baselines.training import frozen_reference, split_config, train_unlearning

OBJECTIVE_KEYS = NPO_KEYS  # checked at plan time by baselines.configs.validate_npo


class NPOObjective:
    def __init__(self, beta: float, alpha: float, eps: float):
        check_npo_objective(beta, alpha)
        self.beta, self.alpha, self.eps = beta, alpha, eps
        self.needs_retain = alpha > 0
        self.reference: Backbone | None = None

    def setup(self, backbone: Backbone) -> None:
        self.reference = frozen_reference(backbone)

    def loss(self, backbone: Backbone, forget: QABatch, retain: QABatch | None,
             generator: torch.Generator) -> torch.Tensor:
        if self.reference is None:
            raise RuntimeError("npo: setup() was not called (no reference model)")
        nll_theta, nll_ref = paired_answer_nll(backbone, self.reference, forget, generator,
                                               self.eps)
        loss = npo_loss(nll_theta, nll_ref, self.beta)
        if self.needs_retain and retain is not None:
            loss = loss + self.alpha * retain_loss(backbone, retain, generator, self.eps).mean()
        return loss


@register_method("npo")
class NPO(Method):
    """NPO with the retain term (by default; npo.yaml)."""

    info = MethodInfo("npo", "gradient", needs_retain=True)

    def apply(self, request: EditRequest) -> MethodOutcome:
        cfg, kw = split_config({**self.config, **request.config}, self.name, OBJECTIVE_KEYS)
        kw = {**objective_defaults(self.name, OBJECTIVE_KEYS), **kw}
        objective = NPOObjective(eps=cfg.eps, **kw)
        try:
            return train_unlearning(request, objective, cfg, self.name)
        finally:
            objective.reference = None  # free the frozen copy
