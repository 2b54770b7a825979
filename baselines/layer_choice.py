"""Which layers ROME/MEMIT edit: given in the config, chosen by TIE tracing, or the middle.

`layer` / `layers` in the config: an int / list of ints; the string "tie" runs TimeROME-
DLM's Temporal Indirect Effect tracing (`harness.timerome.tracing.trace_facts`) on the
forget facts and takes the layer with the largest mean (over facts) of the best TIE over
positions, never the last layer (MEMIT centres its window there); absent: the middle.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from harness.backbones.base import Backbone
from harness.data.fact import Fact


def _validate(backbone: Backbone, layers: Sequence[Any], key: str) -> list[int]:
    n = backbone.num_layers
    out = []
    for layer in layers:
        if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < n - 1:
            raise ValueError(f"config '{key}': layer {layer!r} is not an integer in [0, {n - 1}) "
                             f"(the last of {n} layers cannot be edited: a change at the subject "
                             "token there never reaches the answer positions)")
        out.append(layer)
    if not out:
        raise ValueError(f"config '{key}': no layer given")
    if len(set(out)) != len(out):
        raise ValueError(f"config '{key}': repeated layer in {list(layers)}")
    return sorted(out)


def rome_layer(backbone: Backbone, configured: int | None) -> int:
    """The configured layer, or the middle one ((num_layers - 1) // 2; never the last)."""
    if configured is None:
        return (backbone.num_layers - 1) // 2
    return _validate(backbone, [configured], "layer")[0]


def memit_layers(backbone: Backbone, configured: Sequence[int] | None) -> list[int]:
    """The configured layers, or a window of max(2, round(5/32 * num_layers)) layers centred
    on the middle, never including the last layer (MEMIT edits 5 of GPT-J's 28 layers;
    32-layer LLaDA -> 14..18, 4-layer -> 1..2, 2-layer -> 0)."""
    if configured is not None:
        return _validate(backbone, list(configured), "layers")
    n = backbone.num_layers
    if n < 2:
        raise ValueError(f"{backbone.name}: MEMIT needs at least 2 layers, the model has {n}")
    width = min(n - 1, max(2, round(5 * n / 32)))
    start = max(0, min(n - 1 - width, n // 2 - width // 2))
    return list(range(start, start + width))


def tie_layer(backbone: Backbone, facts: Sequence[Fact]) -> tuple[int, list[float | None]]:
    """(layer with the largest mean best-position TIE over `facts`, that mean per layer)."""
    from harness.timerome.config import TimeROMEConfig
    from harness.timerome.tracing import trace_facts

    # Traced at the last subject token (the position ROME/MEMIT edit), whatever
    # TimeROME-DLM's own default positions are.
    config = TimeROMEConfig(positions="last_subject", tie_facts=None)
    tie = trace_facts(backbone, facts, config).tie.float()  # [F, L, P]
    best = torch.nan_to_num(tie, nan=float("-inf")).amax(-1)  # [F, L]
    best = best.masked_fill(torch.isinf(best), float("nan"))
    per_layer = torch.nanmean(best, 0)[:backbone.num_layers - 1]
    if bool(torch.isnan(per_layer).all()):
        raise ValueError(f"{backbone.name}: TIE tracing gave no finite effect to choose a layer")
    layer = int(torch.nan_to_num(per_layer, nan=float("-inf")).argmax())
    return layer, [None if v != v else float(v) for v in per_layer.tolist()]


def window_around(backbone: Backbone, centre: int) -> list[int]:
    """MEMIT's default window width, centred on `centre`, never including the last layer."""
    n = backbone.num_layers
    width = min(n - 1, max(2, round(5 * n / 32)))
    start = max(0, min(n - 1 - width, centre - width // 2))
    return list(range(start, start + width))
