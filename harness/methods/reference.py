"""The reference rows of every unlearning table, scored by the same job as the methods.

TOFU and open-unlearning tables open with two models no method produced: the fine-tuned
model before any unlearning ("finetuned") and the model fine-tuned without the forget set
("retain", exact unlearning), against which forget quality is defined. Here each is a
registered pseudo-method of kind "reference" (harness.methods.registry), so
harness.jobs.run_method scores it with every metric on the same facts, seed and code path
as the methods:

* `no_edit`: the edit returns the backbone unchanged; after = before.
* `retain_model`: the edit returns the backbone's retain model, loaded from
  `method_config.checkpoint` (the workflow passes the retain model's folder,
  workflows/rules/table1.smk): "before" is the fine-tuned model, "after" the retain model,
  so its Δ forget is the drop exact unlearning makes and its forget quality is 1 by
  definition (the KS test of the retain model against itself).

Neither edits anything: the edit time, memory and FLOPs of a reference row are not shown
(harness/reports/table1.py). Loading the retain model is the harness's bookkeeping
(`MethodOutcome.excluded_phases`), not an edit. This module imports no torch at import time,
so the workflow checks reference configs when it plans the DAG.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from harness.methods.base import EditRequest, Method, MethodConfigError, MethodOutcome
from harness.methods.defaults import method_defaults
from harness.methods.registry import MethodInfo, register_method

LOAD_PHASE = "load_retain_model"  # excluded from the edit time: loading is no edit


def _check_keys(name: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """`config` over the method's defaults (harness/methods/defaults/<name>.yaml); unknown
    keys are a MethodConfigError naming them."""
    defaults = method_defaults(name)
    if not isinstance(config, Mapping):
        raise MethodConfigError(f"{name}: the config must be a mapping, got "
                                f"{type(config).__name__}")
    unknown = sorted(set(config) - set(defaults))
    if unknown:
        known = ", ".join(sorted(defaults)) or "none: a reference row takes no config"
        raise MethodConfigError(f"{name}: unknown config key(s) {', '.join(unknown)}; "
                                f"known: {known}", key=unknown[0])
    return {**defaults, **dict(config)}


def validate_no_edit(config: Mapping[str, Any]) -> None:
    """`method_config.no_edit`: no keys."""
    _check_keys("no_edit", config)


@dataclass(frozen=True)
class RetainModelConfig:
    checkpoint: str | None  # the retain model's folder (None: refused by `apply`)


def parse_retain_model(config: Mapping[str, Any]) -> RetainModelConfig:
    data = _check_keys("retain_model", config)
    checkpoint = data["checkpoint"]
    if checkpoint is not None and not (isinstance(checkpoint, str) and checkpoint.strip()):
        raise MethodConfigError(f"retain_model: checkpoint must be the retain model's folder "
                                f"(a non-empty string) or null, got {checkpoint!r}",
                                key="checkpoint")
    return RetainModelConfig(checkpoint)


def validate_retain_model(config: Mapping[str, Any]) -> None:
    """`method_config.retain_model`: `checkpoint`, a folder or null."""
    parse_retain_model(config)


@register_method("no_edit")
class NoEdit(Method):
    """Reference row "finetuned (no edit)": the backbone as it is."""

    info = MethodInfo("no_edit", "reference", label="finetuned (no edit)")

    def apply(self, request: EditRequest) -> MethodOutcome:
        validate_no_edit(self.config)
        return MethodOutcome(backbone=request.backbone, phase_seconds={}, steps=None,
                             details={"scored_model": "finetuned"})


@register_method("retain_model")
class RetainModel(Method):
    """Reference row "retain (exact unlearning)": the backbone's retain model, loaded from
    `checkpoint` with the backbone's own spec (adapter, dtype, device)."""

    info = MethodInfo("retain_model", "reference", label="retain (exact unlearning)",
                      applicability="backbones with a retain model", on_retain_model=True)

    def apply(self, request: EditRequest) -> MethodOutcome:
        config = parse_retain_model(self.config)
        if config.checkpoint is None:
            raise MethodConfigError("retain_model: no checkpoint: method_config.retain_model."
                                    "checkpoint must name the backbone's retain model "
                                    "(the workflow sets it for backbones with one)",
                                    key="checkpoint")
        from harness.backbones.registry import load_backbone  # torch: only when run

        start = time.perf_counter()
        retain = load_backbone(replace(request.backbone.spec, path=config.checkpoint))
        seconds = time.perf_counter() - start
        return MethodOutcome(backbone=retain, phase_seconds={LOAD_PHASE: seconds}, steps=None,
                             details={"scored_model": "retain",
                                      "checkpoint": config.checkpoint},
                             excluded_phases=(LOAD_PHASE,))
