"""Gradient ascent (TOFU's GA): maximise the masked-diffusion answer loss on the forget set.

L = -mean_rows answer_loss(forget); see `baselines.objectives.answer_loss`. Config keys:
those of `baselines.configs.TrainingConfig` (no method-specific ones; defaults:
harness/methods/defaults/gradient_loop.yaml).
"""

from __future__ import annotations

import torch

from harness.backbones.base import Backbone
from harness.diffusion.batching import QABatch
from harness.methods.base import EditRequest, Method, MethodOutcome
from harness.methods.registry import MethodInfo, register_method

from baselines.configs import parse_gradient_config
from baselines.objectives import answer_loss
from baselines.training import train_unlearning, warm_up_training


class GradientAscentObjective:
    needs_retain = False

    def __init__(self, eps: float):
        self.eps = eps

    def setup(self, backbone: Backbone) -> None:
        pass

    def loss(self, backbone: Backbone, forget: QABatch, retain: QABatch | None,
             generator: torch.Generator) -> torch.Tensor:
        return -answer_loss(backbone, forget, generator, self.eps).mean()


@register_method("gradient_ascent")
class GradientAscent(Method):
    """Gradient ascent on the forget set's masked-diffusion loss."""

    info = MethodInfo("gradient_ascent", "gradient")

    def warm_up(self, request: EditRequest) -> None:
        """One lr-0 training step before the edit is timed (`warm_up_training`)."""
        cfg, _ = parse_gradient_config({**self.config, **request.config}, self.name, None)
        warm_up_training(request, cfg)

    def apply(self, request: EditRequest) -> MethodOutcome:
        cfg, _ = parse_gradient_config({**self.config, **request.config}, self.name, None)
        return train_unlearning(request, GradientAscentObjective(cfg.eps), cfg, self.name)
