"""One backbone's TIE signal in four numbers: does causal tracing locate anything?

- `corruption_effect`: mean over facts and levels of P_clean - P_corrupted (nats per masked
  answer token): how much corrupting the subject hurts the answer;
- `chosen_tie`: mean TIE at each fact's chosen coordinate (layer, position);
- `median_abs_tie`: median |TIE| over the traced coordinates of every fact in layers
  below the last (the background a located coordinate must stand out from). The last
  layer is left out: its MLP output at a prompt position reaches no answer token (no
  attention follows it), so its TIE there is exactly 0 by construction, on any depth;
- `flagged_fraction`: share of facts whose max TIE is below the flag threshold (no single
  restoration recovers the answer).

`located_ratio` = chosen_tie / median_abs_tie. Issue 13's bar for a twin: corruption
effect >= 1 nat per masked token, ratio >= 5, flagged fraction < 10%.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch

from harness.timerome.tracing import TraceResult

BARS = {"corruption_effect": 1.0, "located_ratio": 5.0, "flagged_fraction": 0.10}


@dataclass(frozen=True)
class TieSummary:
    n_facts: int
    n_layers: int
    corruption_effect: float
    chosen_tie: float
    median_abs_tie: float
    located_ratio: float | None
    flagged_fraction: float
    chosen_layers: list[int]

    def meets_bars(self) -> dict[str, bool]:
        ratio = self.located_ratio
        return {"corruption_effect": self.corruption_effect >= BARS["corruption_effect"],
                "located_ratio": ratio is not None and ratio >= BARS["located_ratio"],
                "flagged_fraction": self.flagged_fraction < BARS["flagged_fraction"]}

    def as_record(self) -> dict[str, Any]:
        return {**asdict(self), "bars": dict(BARS), "meets_bars": self.meets_bars()}


def summarize_trace(trace: TraceResult) -> TieSummary:
    if trace.tie.shape[1] < 2:
        raise ValueError("a TIE summary needs at least 2 layers (the last one cannot carry "
                         "a prompt position's effect to the answer)")
    below_last = trace.tie[:, :-1]
    traced = below_last[~torch.isnan(below_last)]
    if traced.numel() == 0:
        raise ValueError("the trace has no traced coordinate (every TIE is NaN)")
    median = float(traced.abs().median())
    chosen = float(torch.nan_to_num(trace.max_tie, nan=0.0).mean())
    ratio = chosen / median if median > 0 else None
    return TieSummary(
        n_facts=len(trace.fact_keys), n_layers=int(trace.tie.shape[1]),
        corruption_effect=float(trace.corruption_effect.mean()), chosen_tie=chosen,
        median_abs_tie=median, located_ratio=None if ratio is None or not math.isfinite(ratio)
        else ratio, flagged_fraction=float(trace.flagged.float().mean()),
        chosen_layers=[int(x) for x in trace.layer.tolist()])
