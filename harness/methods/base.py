"""The method interface shared by TimeROME-DLM and every baseline."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from harness.backbones.base import Backbone
from harness.data.fact import Fact


@dataclass
class EditRequest:
    """What a method is asked to do: make `backbone` forget `forget`, keeping `retain`."""

    backbone: Backbone
    forget: Sequence[Fact]
    retain: Sequence[Fact]  # retain facts the method may use (retain loss, covariance, KL)
    config: dict[str, Any] = field(default_factory=dict)  # method hyperparameters
    seed: int = 0
    # Matched-efficacy stopping for training baselines: stop once the mean forget
    # full_mask log-prob per sample has dropped by this many nats (None: own rule).
    target_forget_drop: float | None = None


@dataclass
class MethodOutcome:
    """What a method returns. `backbone` is the edited model (hooked or re-weighted)."""

    backbone: Backbone
    phase_seconds: dict[str, float]  # wall-clock per phase, e.g. {"tracing": .., "solve": ..}
    steps: int | None = None  # optimisation steps (None for closed-form methods)
    converged: bool = True
    collapsed: bool = False
    collapse_reason: str | None = None
    details: dict[str, Any] = field(default_factory=dict)  # JSON-serialisable extras
    undo: Callable[[], None] | None = None  # restores the original model where possible

    @property
    def wall_clock_s(self) -> float:
        return float(sum(self.phase_seconds.values()))


class MethodNotApplicable(ValueError):
    """The method cannot run on this backbone (e.g. a weight edit on a parameter-free hook
    point). The harness records the job as `not_applicable` instead of failing the DAG."""


class Method(ABC):
    """An unlearning method. Instances are built from a config dict by the registry."""

    name: str = ""

    def __init__(self, config: dict[str, Any] | None = None):
        self.config = dict(config or {})

    @abstractmethod
    def apply(self, request: EditRequest) -> MethodOutcome:
        """Edit `request.backbone` so that it forgets `request.forget`."""
