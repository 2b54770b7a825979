"""Negative Preference Optimization (Zhang et al. 2024) on the masked-diffusion likelihood.

L = -(2/beta) mean log sigmoid(beta (NLL_theta - NLL_ref)) + alpha * retain_loss(retain)
NLL is the summed answer NLL estimate (sum over masked answer tokens of CE / t, one
forward-process draw per row) and the SAME mask draw is used for theta and the reference;
the reference is a frozen deep copy of the model taken before unlearning. alpha > 0 gives
open-unlearning's NPO (= NPO+RT: NPO plus the retain NLL term, as in the NPO paper's
"NPO-RT"); alpha = 0 gives plain NPO. Config keys: `beta`, `alpha` (`baselines.npo_config.
NPOConfig`, defaults: harness/methods/defaults/npo.yaml) and those of
`baselines.configs.TrainingConfig`.
"""

from __future__ import annotations

import torch

from harness.backbones.base import Backbone
from harness.diffusion.batching import QABatch
from harness.methods.base import EditRequest, Method, MethodOutcome
from harness.methods.registry import MethodInfo, register_method

from baselines.npo_config import NPOConfig, parse_npo
from baselines.objectives import npo_loss, paired_answer_nll, retain_loss
from baselines.training import frozen_reference, train_unlearning, warm_up_training


class NPOObjective:
    def __init__(self, config: NPOConfig, eps: float):
        self.beta, self.alpha, self.eps = config.beta, config.alpha, eps
        self.needs_retain = config.alpha > 0
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

    def warm_up(self, request: EditRequest) -> None:
        """One lr-0 training step before the edit is timed (`warm_up_training`)."""
        cfg, _ = parse_npo({**self.config, **request.config})
        warm_up_training(request, cfg)

    def apply(self, request: EditRequest) -> MethodOutcome:
        cfg, own = parse_npo({**self.config, **request.config})
        objective = NPOObjective(own, eps=cfg.eps)
        try:
            return train_unlearning(request, objective, cfg, self.name)
        finally:
            objective.reference = None  # free the frozen copy
