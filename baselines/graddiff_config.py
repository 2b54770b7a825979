"""GradDiff's own config keys (method_config.graddiff: `gamma`, `alpha`), torch-free so that
the workflow checks them when it plans the DAG; defaults: harness/methods/defaults/
graddiff.yaml (the training loop's keys: baselines.configs.TrainingConfig)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from baselines.configs import (TrainingConfig, check_finite_numbers, check_own_keys,
                               own_defaults, parse_gradient_config)
from harness.methods.base import MethodConfigError

_OWN = own_defaults("graddiff")  # harness/methods/defaults/graddiff.yaml


@dataclass(frozen=True)
class GradDiffConfig:
    """L = gamma * forget ascent + alpha * retain loss."""

    gamma: float = _OWN["gamma"]  # weight of the forget (ascent) term
    alpha: float = _OWN["alpha"]  # weight of the retain loss

    def __post_init__(self) -> None:
        check_finite_numbers("graddiff", {"gamma": self.gamma, "alpha": self.alpha})
        if self.gamma < 0 or self.alpha < 0:
            raise MethodConfigError(f"graddiff: gamma and alpha must be >= 0, got "
                                    f"{self.gamma}, {self.alpha}",
                                    key="gamma" if self.gamma < 0 else "alpha")


check_own_keys("graddiff", GradDiffConfig)


def parse_graddiff(config: Mapping[str, Any]) -> tuple[TrainingConfig, GradDiffConfig]:
    train, own = parse_gradient_config(config, "graddiff", GradDiffConfig)
    assert own is not None
    return train, own


def validate_graddiff(config: Mapping[str, Any]) -> None:
    parse_graddiff(config)
