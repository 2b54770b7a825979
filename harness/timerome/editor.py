"""TimeROMEEditor: trace -> keys/deltas -> solve -> hook (method.md sections 1-3).

`edit(facts)` edits a batch at once; `insert(fact)` adds one fact to the existing memory
with an incremental factor update (sequential insertion). Tracing always runs on the
unedited model (the memory's hooks are suspended while tracing), so every fact's key and
delta refer to the original model. Facts whose max TIE is below the flag threshold
(the subject's corruption does not change the answer, so there is no causal site to edit)
are reported in `EditReport.flagged` and not edited unless `edit_flagged` is set.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Sequence

import torch

from harness.backbone_statistics import layer_tensors, per_layer
from harness.backbones.base import Backbone
from harness.data.fact import Fact
from harness.diffusion.batching import EncodedFact, encode_facts
from harness.measure import synchronised_now
from harness.timerome.config import TimeROMEConfig
from harness.timerome.memory import EditMemory
from harness.timerome.retain_stats import KEY_METRICS, retain_states
from harness.timerome.sites import deepest_layer, edit_sites
from harness.timerome.targets import target_deltas
from harness.timerome.tracing import (TraceResult, backbone_tie_profile, peak_layer,
                                      trace_encoded)

RETAIN_KEYS = "retain_keys"  # statistics names (harness.backbone_statistics); the key
TIE_PROFILE = "tie_profile"  # metrics' names: retain_stats.KEY_METRICS
RETAIN_KEY_LENGTHS = "retain_key_lengths"  # the rows of each retain sequence (RetainStates)


@dataclass
class EditReport:
    """What an edit did: coordinates, TIE scores, flagged facts and wall-clock per phase."""

    coordinates: list[dict[str, Any]]  # per edited fact: layer, position, offset, tie
    flagged: list[dict[str, Any]]  # facts not edited (or edited despite a flag), with reason
    tie: dict[str, list[list[float]]]  # fact key -> TIE[layer][offset] (nan: not traced)
    offsets: list[int]  # candidate offsets relative to the last subject token
    phase_seconds: dict[str, float]
    n_edited: int
    trace_forwards: int
    noise_scale: float
    config: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["tie"] = {k: [[None if v != v else v for v in row] for row in rows]
                      for k, rows in self.tie.items()}
        return out


@dataclass
class EditColumns:
    """What an edit inserts: one key/delta column per edit site (`harness.timerome.sites`)."""

    keys: torch.Tensor  # [S, d_k]
    deltas: torch.Tensor  # [S, d_v]
    layer: torch.Tensor  # [S] the layer whose memory holds each column
    names: list[str]  # the fact key at its chosen coordinate; key@l<layer>o<offset> elsewhere
    offsets: list[int]  # each column's offset from its fact's last subject token
    subject: list[bool]  # whether each column sits on a subject token
    floors: list[float] | None = None  # each column's own least similarity (TraceResult.key_floor)


class TimeROMEEditor:
    """Edits one backbone; holds its `EditMemory` (hooks stay on until `undo()`)."""

    def __init__(self, backbone: Backbone, config: TimeROMEConfig = TimeROMEConfig(),
                 retain: Sequence[Fact] = (), statistics: Mapping[str, torch.Tensor] | None = None):
        self.backbone = backbone
        self.config = config
        self.retain = list(retain)
        self.memory: EditMemory | None = None
        self._retain_keys: dict[int, torch.Tensor] | None = None
        self._retain_lengths: torch.Tensor | None = None  # sequences of the retain keys
        self._metrics: dict[int, torch.Tensor] | None = None
        self._tie_profile: torch.Tensor | None = None
        if statistics is not None:  # computed once per backbone (backbone_statistics)
            self._retain_keys = per_layer(RETAIN_KEYS, statistics) or None
            self._retain_lengths = statistics.get(RETAIN_KEY_LENGTHS)
            self._tie_profile = statistics.get(TIE_PROFILE)
            metric = KEY_METRICS.get(config.precondition)
            self._metrics = (per_layer(metric.statistic, statistics) or None) if metric else None

    # ------------------------------------------------------------------ phases
    def _unedited(self):
        return self.memory.suspended() if self.memory is not None else nullcontext()

    def trace(self, facts: Sequence[Fact], site_rules: Sequence[str] = ()
              ) -> tuple[list[EncodedFact], TraceResult]:
        """Trace `facts` on the unedited model. With tie_facts 0 the runs stop at the deepest
        layer the config's `sites` (and any of `site_rules`, e.g. a tuning grid's) reads."""
        encoded = encode_facts(self.backbone, facts)
        layer = stop = None
        if self.config.tie_facts == 0:
            layer = peak_layer(self.tie_profile())
            stop = deepest_layer((self.config.sites, *site_rules), layer,
                                 self.backbone.num_layers)
        with self._unedited():
            return encoded, trace_encoded(self.backbone, encoded, self.config, layer, stop)

    def tie_profile(self) -> torch.Tensor:
        """[L] the backbone's TIE profile on the retain facts (config tie_facts 0: every
        fact's layer is its peak; tracing.backbone_tie_profile)."""
        if self._tie_profile is None:
            if not self.retain:
                raise ValueError("tie_facts 0 takes every fact's layer from the backbone's TIE "
                                 "profile, traced on retain facts, and none were given "
                                 "(TimeROMEEditor(..., retain=[...]) or its statistics)")
            with self._unedited():
                self._tie_profile = backbone_tie_profile(self.backbone, self.retain,
                                                         self.config)
        return self._tie_profile

    def retain_statistics(self) -> dict[int, torch.Tensor]:
        """Retain MLP hidden states per layer (only for precondition/gate)."""
        if self._retain_keys is None:
            if not self.retain:
                raise ValueError(f"precondition '{self.config.precondition}' and the key gate "
                                 "need retain facts "
                                 "(TimeROMEEditor(..., retain=[...]))")
            with self._unedited():
                states = retain_states(self.backbone, self.retain,
                                       range(self.backbone.num_layers))
            self._retain_keys, self._retain_lengths = states.keys, states.lengths
        return self._retain_keys

    def retain_metrics(self) -> dict[int, torch.Tensor]:
        """The key metric M_l of `precondition` per layer (C_l^-1 for retain_cov, the
        null-space projector for null_space; retain_stats.KEY_METRICS)."""
        if self._metrics is None:
            build = KEY_METRICS[self.config.precondition].build
            self._metrics = {l: build(k, self.config)
                             for l, k in self.retain_statistics().items()}
        return self._metrics

    def backbone_statistics(self) -> dict[str, torch.Tensor]:
        """What the edits of this backbone need that does not depend on the forget set:
        the retain keys (gate calibration), the key metric per layer and, with tie_facts 0,
        the TIE profile."""
        out: dict[str, torch.Tensor] = {}
        if self.config.tie_facts == 0:
            out[TIE_PROFILE] = self.tie_profile()
        metric = KEY_METRICS.get(self.config.precondition)
        if self.config.gate or metric is not None:
            out.update(layer_tensors(RETAIN_KEYS, self.retain_statistics()))
            if self._retain_lengths is not None:
                out[RETAIN_KEY_LENGTHS] = self._retain_lengths
        if metric is not None:
            out.update(layer_tensors(metric.statistic, self.retain_metrics()))
        return out

    def new_memory(self) -> EditMemory:
        metrics, reference = {}, {}
        if self.config.precondition in KEY_METRICS:
            metrics = self.retain_metrics()
        if self.config.gate:
            reference = self.retain_statistics()
        with self._unedited():
            identity = self.backbone.identity()
        return EditMemory(self.config, identity, metrics, reference,
                          self._retain_lengths if reference else None)

    def selected(self, trace: TraceResult) -> list[int]:
        """Indices of traced facts that get edited."""
        return [i for i in range(len(trace.fact_keys))
                if self.config.edit_flagged or not bool(trace.flagged[i])]

    def extract(self, encoded: Sequence[EncodedFact], trace: TraceResult,
                index: Sequence[int]) -> EditColumns:
        """Keys and target deltas of the facts `index` at their edit sites (config `sites`:
        the chosen coordinate, or wider; `harness.timerome.sites`)."""
        sites = edit_sites(self.config.sites, trace, index)
        return EditColumns(keys=sites.pick(trace.keys),
                           deltas=target_deltas(self.config.target, self.backbone, encoded,
                                                trace, sites),
                           layer=sites.layer, names=sites.names(trace),
                           offsets=sites.subject_offsets(trace),
                           subject=sites.on_subject(trace),
                           floors=None if trace.key_floor is None
                           else sites.pick(trace.key_floor).tolist())

    def solve(self, memory: EditMemory, columns: "EditColumns") -> None:
        """Insert the columns into `memory`, grouped by layer."""
        layers = columns.layer.tolist()
        for layer in sorted(set(layers)):
            rows = [i for i, l in enumerate(layers) if l == layer]
            memory.insert(layer, columns.keys[rows], columns.deltas[rows],
                          [columns.names[i] for i in rows], [columns.offsets[i] for i in rows],
                          None if columns.floors is None else [columns.floors[i] for i in rows],
                          [columns.subject[i] for i in rows])
        memory.ensure_hooks()

    # ------------------------------------------------------------------ API
    def edit(self, facts: Sequence[Fact]) -> tuple[Backbone, EditReport]:
        """Edit `facts` into a fresh memory and hook it onto the backbone."""
        self.undo()
        return self._add(facts, fresh=True)

    def insert(self, facts: Sequence[Fact] | Fact) -> tuple[Backbone, EditReport]:
        """Add fact(s) to the current memory (incremental update; creates one if none)."""
        if isinstance(facts, Fact):
            facts = [facts]
        return self._add(facts, fresh=self.memory is None)

    def _add(self, facts: Sequence[Fact], fresh: bool) -> tuple[Backbone, EditReport]:
        if not facts:
            raise ValueError("edit: no facts given")
        phases: dict[str, float] = {}
        device = self.backbone.device  # CUDA: synchronise before each clock read
        start = synchronised_now(device)
        encoded, trace = self.trace(facts)
        phases["tracing"] = synchronised_now(device) - start
        start = synchronised_now(device)
        index = self.selected(trace)
        columns = self.extract(encoded, trace, index)
        memory = self.new_memory() if fresh else self.memory
        phases["key_delta_extraction"] = synchronised_now(device) - start
        start = synchronised_now(device)
        self.solve(memory, columns)
        if fresh:
            memory.attach(self.backbone)
            self.memory = memory
        phases["solve"] = synchronised_now(device) - start
        return self.backbone, self._report(trace, index, phases)

    def _report(self, trace: TraceResult, index: Sequence[int],
                phases: dict[str, float]) -> EditReport:
        summary = trace.summary()
        chosen = set(index)
        flagged = []
        for i, row in enumerate(summary):
            if row["flagged"]:
                flagged.append({**row, "edited": i in chosen, **self._flag_reason(row)})
        return EditReport(coordinates=[summary[i] for i in index], flagged=flagged,
                          tie={k: trace.tie[i].tolist() for i, k in enumerate(trace.fact_keys)},
                          offsets=list(trace.offsets), phase_seconds=phases, n_edited=len(index),
                          trace_forwards=trace.forwards, noise_scale=trace.noise_scale,
                          config=self.config.to_dict())

    def _flag_reason(self, row: dict) -> dict[str, str]:
        """Why a fact was flagged: its answer does not depend on the subject ("invariant"),
        or it does but no single (layer, subject position) restoration brings it back
        ("distributed": e.g. a name spread over several tokens in a shallow model)."""
        threshold = self.config.flag_threshold
        tie = "undefined" if row["tie"] is None else f"{row['tie']:.3g}"
        effect = row["corruption_effect"]
        head = f"max TIE {tie} <= threshold {threshold:g}: "
        if not effect > threshold:
            return {"kind": "invariant",
                    "reason": head + f"answer is invariant to subject corruption "
                                     f"(corruption costs {effect:.3g} nats)"}
        return {"kind": "distributed",
                "reason": head + f"subject corruption costs {effect:.3g} nats, but no single "
                                 "(layer, subject position) restoration recovers it"}

    def undo(self) -> None:
        """Remove the hooks: the backbone is exactly the original again."""
        if self.memory is not None:
            self.memory.detach()
        self.memory = None
