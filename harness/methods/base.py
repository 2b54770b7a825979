"""The method interface shared by TimeROME-DLM and every baseline."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, TYPE_CHECKING

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
    # The method's per-backbone statistics, computed once (`Method.backbone_statistics`,
    # harness.backbone_statistics); None: the method computes them inside its edit.
    statistics: Mapping[str, Any] | None = None


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
    # Phases of `phase_seconds` that are the harness's bookkeeping, not the method's work
    # (a weight copy kept for `undo`, evaluation done only for reporting or as a collapse
    # guard): reported, but not part of the edit time (docs/measurements/edit_timing_rules.md).
    excluded_phases: tuple[str, ...] = ()

    @property
    def wall_clock_s(self) -> float:
        """The method's own time: every phase but the excluded ones."""
        return float(sum(s for name, s in self.phase_seconds.items()
                         if name not in self.excluded_phases))


class SequentialEditor(Protocol):
    """One edit of a backbone that takes its facts one call at a time
    (`Method.sequential_editor`); each `insert` adds to the edit made so far."""

    def insert(self, facts: Sequence[Fact] | Fact) -> object: ...


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

    def backbone_statistics(self, backbone: Backbone, retain: Sequence[Fact], seed: int
                            ) -> dict[str, Any]:
        """The statistics of `backbone` this method's edits need that do not depend on the
        forget set ({name: tensor}); `apply` uses them when `EditRequest.statistics` holds
        them and computes them itself otherwise. Only methods whose
        `MethodInfo.backbone_statistics` is set implement it."""
        raise NotImplementedError(f"method '{self.name}' has no per-backbone statistics")

    def sequential_editor(self, backbone: Backbone, retain: Sequence[Fact], seed: int,
                          statistics: Mapping[str, Any] | None = None) -> SequentialEditor:
        """An edit of `backbone` that inserts facts one at a time (the sequential-insertion
        experiment, harness.jobs.sequential); `retain` and `statistics` as in `EditRequest`
        (the job computes the statistics before the first insertion, so that no insertion's
        time holds them). Only methods whose `MethodInfo.sequential` is set implement it."""
        raise NotImplementedError(f"method '{self.name}' does not insert facts one at a time")
