"""Gradient difference (TOFU/open-unlearning GradDiff).

L = gamma * (-answer_loss(forget)) + alpha * retain_loss(retain); the retain term is the
fine-tuning objective (LLaDA SFT loss) on a seeded random batch of retain facts of the same
size as the forget batch. Config keys: `gamma`, `alpha` (`baselines.graddiff_config.
GradDiffConfig`, defaults: harness/methods/defaults/graddiff.yaml) and those of
`baselines.configs.TrainingConfig`.
"""

from __future__ import annotations

import torch

from harness.backbones.base import Backbone
from harness.diffusion.batching import QABatch
from harness.methods.base import EditRequest, Method, MethodOutcome
from harness.methods.registry import MethodInfo, register_method

from baselines.graddiff_config import GradDiffConfig, parse_graddiff
from baselines.objectives import answer_loss, retain_loss
from baselines.training import train_unlearning, warm_up_training


class GradDiffObjective:
    needs_retain = True

    def __init__(self, config: GradDiffConfig, eps: float):
        self.gamma, self.alpha, self.eps = config.gamma, config.alpha, eps

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

    def warm_up(self, request: EditRequest) -> None:
        """One lr-0 training step before the edit is timed (`warm_up_training`)."""
        cfg, _ = parse_graddiff({**self.config, **request.config})
        warm_up_training(request, cfg)

    def apply(self, request: EditRequest) -> MethodOutcome:
        cfg, own = parse_graddiff({**self.config, **request.config})
        return train_unlearning(request, GradDiffObjective(own, eps=cfg.eps), cfg, self.name)
