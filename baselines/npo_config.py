"""NPO's own config keys (method_config.npo: `beta`, `alpha`), torch-free so that the
workflow checks them when it plans the DAG; defaults: harness/methods/defaults/npo.yaml
(the training loop's keys: baselines.configs.TrainingConfig)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from baselines.configs import (TrainingConfig, check_finite_numbers, check_own_keys,
                               own_defaults, parse_gradient_config)
from harness.methods.base import MethodConfigError

_OWN = own_defaults("npo")  # harness/methods/defaults/npo.yaml


@dataclass(frozen=True)
class NPOConfig:
    """NPO's inverse temperature `beta` and the weight `alpha` of the retain loss (alpha = 0:
    plain NPO; alpha > 0: NPO-RT, open-unlearning's NPO)."""

    beta: float = _OWN["beta"]
    alpha: float = _OWN["alpha"]

    def __post_init__(self) -> None:
        check_finite_numbers("npo", {"beta": self.beta, "alpha": self.alpha})
        if not self.beta > 0:
            raise MethodConfigError(f"npo: beta must be > 0, got {self.beta}", key="beta")
        if self.alpha < 0:
            raise MethodConfigError(f"npo: alpha must be >= 0, got {self.alpha}", key="alpha")


check_own_keys("npo", NPOConfig)


def parse_npo(config: Mapping[str, Any]) -> tuple[TrainingConfig, NPOConfig]:
    train, own = parse_gradient_config(config, "npo", NPOConfig)
    assert own is not None
    return train, own


def validate_npo(config: Mapping[str, Any]) -> None:
    parse_npo(config)
