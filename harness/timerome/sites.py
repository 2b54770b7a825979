"""Edit sites: the (layer, candidate offset) coordinates of each edited fact that get a
key/delta column in the edit memory (config `sites`; method.md section 2 edits the TIE's
chosen coordinate only, the others are measured variants: docs/measurements/memory_variants.md).

- `chosen`: the TIE coordinate (l*, j*) alone.
- `subject`: every traced subject token of the fact at l* (the chosen layer).
- `subject_through`: every traced subject token at every layer up to and including l*
  (MEMIT spreads an edit over the layers up to the critical one).
- `subject_layers`: every traced subject token at every layer.
- `window`: every traced position of the fact at l*: with `positions: window`, the
  subject tokens and the prompt tokens around the subject's end (config `window`); the
  delta at a non-subject token is what the subject's corruption changes there. A measured
  option, in no default (docs/measurements/memory_variants.md, last section).

Keys and the clean/corrupted outputs at every (layer, offset) were recorded by the trace
(`TraceResult.keys`, `clean_out`, `corrupt_out`), so a wider site set costs no forward pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from harness.timerome.tracing import TraceResult


@dataclass(frozen=True)
class Sites:
    """S edit sites: fact index (into the trace), layer and offset index of each."""

    fact: torch.Tensor  # [S] long
    layer: torch.Tensor  # [S] long
    offset_index: torch.Tensor  # [S] long

    def __len__(self) -> int:
        return int(self.fact.numel())

    def pick(self, tensor: torch.Tensor) -> torch.Tensor:
        """tensor [F, L, P, ...] at the sites -> [S, ...]."""
        return tensor[self.fact, self.layer, self.offset_index]

    def subject_offsets(self, trace: TraceResult) -> list[int]:
        """Each site's offset from the fact's last subject token (the span gate's)."""
        return [int(trace.offsets[o]) for o in self.offset_index.tolist()]

    def on_subject(self, trace: TraceResult) -> list[bool]:
        """Whether each site sits on a subject token of its fact (span_anchor's anchors)."""
        return trace.is_subject[self.fact, self.offset_index].tolist()

    def names(self, trace: TraceResult) -> list[str]:
        """One name per column: the fact key at its chosen coordinate, key@l<layer>o<offset>
        at any other site."""
        out = []
        for f, l, o in zip(self.fact.tolist(), self.layer.tolist(), self.offset_index.tolist()):
            key = trace.fact_keys[f]
            chosen = l == int(trace.layer[f]) and o == int(trace.offset_index[f])
            out.append(key if chosen else f"{key}{SITE_SEPARATOR}l{l}o{trace.offsets[o]}")
        return out


SITE_SEPARATOR = "@"  # a column name: <fact key>[@l<layer>o<offset>]


def fact_of(column_name: str) -> str:
    """The fact key of a memory column name (`Sites.names`)."""
    return column_name.split(SITE_SEPARATOR, 1)[0]


def _sites(rows: list[tuple[int, int, int]]) -> Sites:
    t = torch.tensor(rows, dtype=torch.long).reshape(-1, 3)
    return Sites(t[:, 0], t[:, 1], t[:, 2])


def _subject_offsets(trace: TraceResult, f: int) -> list[int]:
    return (trace.valid[f] & trace.is_subject[f]).nonzero().squeeze(1).tolist()


def chosen_sites(trace: TraceResult, index: Sequence[int]) -> Sites:
    return _sites([(f, int(trace.layer[f]), int(trace.offset_index[f])) for f in index])


def subject_sites(trace: TraceResult, index: Sequence[int]) -> Sites:
    return _sites([(f, int(trace.layer[f]), o) for f in index for o in _subject_offsets(trace, f)])


def subject_through_sites(trace: TraceResult, index: Sequence[int]) -> Sites:
    return _sites([(f, l, o) for f in index for l in range(int(trace.layer[f]) + 1)
                   for o in _subject_offsets(trace, f)])


def window_sites(trace: TraceResult, index: Sequence[int]) -> Sites:
    return _sites([(f, int(trace.layer[f]), o) for f in index
                   for o in trace.valid[f].nonzero().squeeze(1).tolist()])


def subject_layer_sites(trace: TraceResult, index: Sequence[int]) -> Sites:
    n_layers = trace.tie.shape[1]
    return _sites([(f, l, o) for f in index for l in range(n_layers)
                   for o in _subject_offsets(trace, f)])


SITES: dict[str, Callable[[TraceResult, Sequence[int]], Sites]] = {
    "chosen": chosen_sites,
    "subject": subject_sites,
    "subject_through": subject_through_sites,
    "subject_layers": subject_layer_sites,
    "window": window_sites,
}


# sites rule -> the deepest layer it reads, given the chosen layer and the number of layers
# (a trace that stops above it, tie_facts 0, has what the rule needs: tracing.trace_encoded)
DEEPEST_LAYER: dict[str, Callable[[int, int], int]] = {
    "chosen": lambda chosen, n_layers: chosen,
    "subject": lambda chosen, n_layers: chosen,
    "subject_through": lambda chosen, n_layers: chosen,
    "subject_layers": lambda chosen, n_layers: n_layers - 1,
    "window": lambda chosen, n_layers: chosen,
}


def deepest_layer(rules: Sequence[str], chosen: int, n_layers: int) -> int:
    """The deepest layer any of the sites `rules` reads when the chosen layer is `chosen`."""
    unknown = [r for r in rules if r not in DEEPEST_LAYER]
    if unknown:
        raise ValueError(f"unknown sites '{unknown[0]}'; known: {', '.join(DEEPEST_LAYER)}")
    return max(DEEPEST_LAYER[r](chosen, n_layers) for r in rules)


def edit_sites(name: str, trace: TraceResult, index: Sequence[int]) -> Sites:
    """The sites of the facts `index` (into the trace) under the config's `sites` rule."""
    try:
        rule = SITES[name]
    except KeyError:
        raise ValueError(f"unknown sites '{name}'; known: {', '.join(SITES)}") from None
    sites = rule(trace, list(index))
    held = trace.keys.shape[1]  # the layers the trace holds
    computed = (sites.layer < held) & trace.keys[  # [S]: the trace reached the layer
        sites.fact, sites.layer.clamp(max=held - 1), sites.offset_index].isfinite().all(-1)
    if not bool(computed.all()):
        deepest = int(sites.layer[~computed].max())
        raise ValueError(f"sites '{name}' reads layer {deepest}, which this trace did not "
                         "compute (with tie_facts 0 the runs stop at the deepest layer the "
                         "traced site rules read: TimeROMEEditor.trace(site_rules=...))")
    return sites
