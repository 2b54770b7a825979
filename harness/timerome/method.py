"""The registered method `timerome`: TimeROMEEditor behind the shared Method interface."""

from __future__ import annotations

from typing import Mapping, Sequence

import torch

from harness.backbones.base import Backbone
from harness.data.fact import Fact
from harness.methods.base import EditRequest, Method, MethodOutcome
from harness.methods.registry import MethodInfo, register_method
from harness.timerome.config import TimeROMEConfig
from harness.timerome.editor import TimeROMEEditor


@register_method("timerome")
class TimeROMEMethod(Method):
    """Training-free: trace, solve in closed form, hook. `request.retain` feeds the
    optional retain covariance / key gate; `request.seed` overrides the config seed."""

    info = MethodInfo("timerome", "inference_time",
                      tunable_keys=("alpha", "lam", "q", "gate_margin", "sites", "gate_span",
                                    "gate_own_floor"),
                      needs_retain=True, backbone_statistics=True, sequential=True)

    def timerome_config(self, seed: int | None = None) -> TimeROMEConfig:
        data = dict(self.config)
        if seed is not None:
            data["seed"] = seed
        return TimeROMEConfig.from_dict(data)

    def backbone_statistics(self, backbone: Backbone, retain: Sequence[Fact], seed: int
                            ) -> dict[str, torch.Tensor]:
        """Retain keys and preconditioner per layer (TimeROMEEditor.backbone_statistics)."""
        return TimeROMEEditor(backbone, self.timerome_config(seed),
                              retain=retain).backbone_statistics()

    def sequential_editor(self, backbone: Backbone, retain: Sequence[Fact], seed: int,
                          statistics: Mapping[str, torch.Tensor] | None = None
                          ) -> TimeROMEEditor:
        """One edit memory that each `insert` extends (incremental solve)."""
        return TimeROMEEditor(backbone, self.timerome_config(seed), retain=retain,
                              statistics=statistics)

    def apply(self, request: EditRequest) -> MethodOutcome:
        editor = TimeROMEEditor(request.backbone, self.timerome_config(request.seed),
                                retain=request.retain, statistics=request.statistics)
        backbone, report = editor.edit(request.forget)
        return MethodOutcome(
            backbone=backbone, phase_seconds=dict(report.phase_seconds), steps=None,
            details={"coordinates": report.coordinates, "tie": report.to_dict()["tie"],
                     "flagged": report.flagged, "n_edited": report.n_edited,
                     "trace_forwards": report.trace_forwards, "offsets": report.offsets,
                     "noise_scale": report.noise_scale, "config": report.config},
            undo=editor.undo)
