"""The method interface shared by TimeROME-DLM and every baseline."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from harness.data.fact import Fact

if TYPE_CHECKING:  # annotation only: this module imports no torch, so that the workflow can
    # check method configs (Method.validate_config) when it plans the DAG
    from harness.backbones.base import Backbone
    from harness.methods.registry import MethodInfo


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


class MethodConfigError(ValueError):
    """A method config the method cannot run with; `key` names the offending key of the
    config (None: the config as a whole)."""

    def __init__(self, message: str, key: str | None = None):
        super().__init__(message)
        self.key = key


class Method(ABC):
    """An unlearning method. Instances are built from a config dict by the registry."""

    name: str = ""
    info: ClassVar[MethodInfo]  # what the method is (harness.methods.registry.MethodInfo)

    def __init__(self, config: dict[str, Any] | None = None):
        self.config = dict(config or {})

    @classmethod
    def validate_config(cls, config: Mapping[str, Any]) -> None:
        """Raise MethodConfigError (a ValueError) unless `config` (the method's
        `method_config` entry) is one this method can run with: unknown keys, wrong types,
        out-of-range or non-finite values. The workflow calls it when it plans the DAG
        (harness.plan_checks, through harness.methods.registry.validate_method_config), so
        an override must parse the config the way `apply` does without importing torch or
        loading a model. The default: a built-in method's validator from
        harness.methods.registry.BUILTIN_CONFIG_VALIDATORS (the parser its `apply` uses);
        any config for other methods."""
        from harness.methods.registry import builtin_config_validator

        check = builtin_config_validator(cls.name)
        if check is not None:
            check(config)

    @abstractmethod
    def apply(self, request: EditRequest) -> MethodOutcome:
        """Edit `request.backbone` so that it forgets `request.forget`."""
