"""Gradient difference (TOFU/open-unlearning GradDiff).

L = gamma * (-answer_loss(forget)) + alpha * retain_loss(retain) (defaults: graddiff.yaml);
the retain term is the fine-tuning objective (LLaDA SFT loss) on a seeded random batch of
retain facts of the same size as the forget batch. Config keys: `gamma`, `alpha` and those
of `baselines.training.TrainingConfig`.
"""

from __future__ import annotations

import torch

from harness.backbones.base import Backbone
from harness.diffusion.batching import QABatch
from harness.methods.base import EditRequest, Method, MethodOutcome
from harness.methods.registry import MethodInfo, register_method

from baselines.configs import GRADDIFF_KEYS, check_graddiff_objective, objective_defaults
from baselines.objectives import answer_loss, retain_loss
from baselines.training import split_config, train_unlearning

OBJECTIVE_KEYS = GRADDIFF_KEYS  # checked at plan time by baselines.configs.validate_graddiff


class GradDiffObjective:
    needs_retain = True

    def __init__(self, gamma: float, alpha: float, eps: float):
        check_graddiff_objective(gamma, alpha)
        self.gamma, self.alpha, self.eps = gamma, alpha, eps

    def setup(self, backbone: Backbone) -> None:
        pass

    def loss(self, backbone: Backbone, forget: QABatch, retain: QABatch | None,
             generator: torch.Generator) -> torch.Tensor:
        assert retain is not None
        forget_term = -answer_loss(backbone, forget, generator, self.eps).mean()
        retain_term = retain_loss(backbone, retain, generator, self.eps).mean()
        return self.gamma * forget_term + self.alpha * retain_term


@register_method("graddiff")
class GradDiff(Method):
    """Ascend on the forget loss, descend on the retain loss."""

    info = MethodInfo("graddiff", "gradient", needs_retain=True)

    def apply(self, request: EditRequest) -> MethodOutcome:
        cfg, kw = split_config({**self.config, **request.config}, self.name, OBJECTIVE_KEYS)
        kw = {**objective_defaults(self.name, OBJECTIVE_KEYS), **kw}
        return train_unlearning(request, GradDiffObjective(eps=cfg.eps, **kw), cfg, self.name)
