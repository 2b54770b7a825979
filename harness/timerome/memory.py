"""The edit memory (method.md section 3): per-layer dual ridge factors and forward hooks.

On every forward of the backbone, the hook on `mlp_out_proj(l)` adds, at every position,
    out += alpha * S_q(A (B^T h))
with h the projection's input. Per fact f the contribution is c_f(h) a_f with
c_f(h) = b_f . h; S_q keeps the largest q-fraction of its entries, which are those of a_f,
so A is sparsified column-wise once (`solve.sparsify_columns`). With the optional gate,
c_f is zeroed unless cos(h, k_f) exceeds the fact's calibrated threshold (with the span
gate, `gate_span`, unless every column of the fact passes at its own subject offset:
`span_gate.py`). Without the
gate the update is linear in h, W = A_q B^T. When the projection is a float32/float64
`nn.Linear`, W is folded into the layer's forward as one matmul with W_out + W
(`FusedLinear`): the memory then costs no multiply-adds per token at all. The backbone's
own weight is not touched (the folded copy belongs to the memory and is rebuilt if the
weight changes). Elsewhere (bf16/fp16, where W_out + W would round W away, or a projection
that is not a plain Linear) the hook adds the dense product W h once n (d_k + d_v) > d_k d_v
and the low-rank A (B^T h) below that (same map, whichever is cheaper).
With the gate, the similarities are computed first (`gate_tensors`); on CPU only the
positions where some gate opens go through B and A (on retain text that is almost none),
on other devices the coefficients are masked instead (no host sync in the forward).
Weights are never modified; `detach()` removes the hooks (and restores the layer's own forward).

Saved as safetensors: tensors `layer{l}.{keys,deltas,chol,a[,metric]}` and metadata
`timerome` = JSON {config, identity, facts per layer, gate thresholds, column subject
offsets and own floors} and `content_sha256`
(sha256 of that JSON and of every tensor's name, dtype, shape and bytes: `content_digest`).
Loading checks the digest when present: a memory truncated, corrupt or edited since it was
saved raises `DamagedArtefact` naming the file.
"""

from __future__ import annotations

import hashlib
import json
import math
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn
from torch.nn.utils.rnn import pad_sequence

from harness.artefacts import CONTENT_DIFFERS, DamagedArtefact
from harness.atomic import atomic_file
from harness.backbones.base import Backbone
from harness.hooks import install_forward_hook
from harness.timerome.config import TimeROMEConfig
from harness.timerome.retain_stats import gate_threshold
from harness.timerome.sites import fact_of
from harness.timerome.span_gate import span_groups, span_open, span_open_bound
from harness.timerome.solve import (RidgeFactors, empty_factors, insert_columns, solve_full,
                                    sparsify_columns)

FORMAT_VERSION = 3  # 2: per-fact gate thresholds; 3: the Cholesky factor of G, not G^-1


class IdentityMismatch(ValueError):
    """An edit memory was loaded onto a backbone other than the one it was built for."""


class EditMemory:
    """Facts grouped by layer, with their factors and (when attached) forward hooks."""

    def __init__(self, config: TimeROMEConfig, identity: dict[str, Any],
                 metrics: dict[int, torch.Tensor] | None = None,
                 gate_reference: dict[int, torch.Tensor] | None = None,
                 gate_lengths: torch.Tensor | None = None):
        self.config = config
        self.identity = dict(identity)
        self.metrics = dict(metrics or {})
        self.gate_reference = dict(gate_reference or {})
        # the rows of each calibration sequence, in order (None: unknown; retain_stats.RetainStates)
        self.gate_lengths = None if gate_lengths is None else gate_lengths.long().cpu()
        if self.gate_lengths is not None:
            rows = int(self.gate_lengths.sum())
            for layer, ref in self.gate_reference.items():
                if ref.shape[0] != rows:
                    raise ValueError(f"gate calibration: the sequence lengths sum to {rows} rows "
                                     f"but layer {layer}'s retain keys have {ref.shape[0]} "
                                     "(retain_key_lengths and retain_keys of different runs?)")
        self.factors: dict[int, RidgeFactors] = {}
        self.fact_keys: dict[int, list[str]] = {}
        # per layer, each column's subject offset (from the last subject token; span gate)
        self.column_offsets: dict[int, list[int]] = {}
        # per layer, whether each column sits on a subject token (span_anchor "subject")
        self.column_subject: dict[int, list[bool]] = {}
        self.gate_tau: dict[int, list[float]] = {}  # per layer, one threshold per fact
        # the (quantile, margin, own floor) gate_tau[layer] was made with
        self._tau_rule: dict[int, tuple[float, float, bool]] = {}
        # per layer, each column's own least similarity (TraceResult.key_floor; nan: none)
        self.key_floors: dict[int, list[float]] = {}
        self._compiled: dict[int, dict[str, torch.Tensor | None]] = {}
        self._handles: dict[int, Any] = {}
        self._backbone: Backbone | None = None
        self.gate_opens: int | None = None  # counting (`counting_gate_opens`) when not None
        self.last_gate_opens = 0  # the count of the last `counting_gate_opens` block

    # ------------------------------------------------------------------ contents
    @property
    def n_facts(self) -> int:
        """Facts in the memory (a fact edited at several sites has several columns)."""
        return len({fact_of(name) for names in self.fact_keys.values() for name in names})

    @property
    def n_columns(self) -> int:
        return sum(f.n for f in self.factors.values())

    def layer_of(self) -> dict[str, int]:
        """Fact key -> the layer of its chosen coordinate (its column named by the key)."""
        return {key: layer for layer, keys in self.fact_keys.items() for key in keys
                if key == fact_of(key)}

    def insert(self, layer: int, keys: torch.Tensor, deltas: torch.Tensor,
               fact_keys: Sequence[str], offsets: Sequence[int] | None = None,
               floors: Sequence[float] | None = None,
               subject: Sequence[bool] | None = None) -> None:
        """Add facts (keys [k, d_k], deltas [k, d_v]) to `layer` by a block-inverse update;
        `offsets`: each column's subject offset (the span gate's; None: all 0); `floors`:
        each column's own least similarity (gate_own_floor's; None: none); `subject`:
        whether each column sits on a subject token (span_anchor's; None: all do)."""
        if keys.shape[0] != deltas.shape[0] or keys.shape[0] != len(fact_keys):
            raise ValueError(f"insert: {keys.shape[0]} keys, {deltas.shape[0]} deltas, "
                             f"{len(fact_keys)} fact keys")
        offsets = [0] * len(fact_keys) if offsets is None else [int(o) for o in offsets]
        if len(offsets) != len(fact_keys):
            raise ValueError(f"insert: {len(fact_keys)} fact keys but {len(offsets)} offsets")
        floors = [math.nan] * len(fact_keys) if floors is None else [float(f) for f in floors]
        if len(floors) != len(fact_keys):
            raise ValueError(f"insert: {len(fact_keys)} fact keys but {len(floors)} floors")
        subject = [True] * len(fact_keys) if subject is None else [bool(x) for x in subject]
        if len(subject) != len(fact_keys):
            raise ValueError(f"insert: {len(fact_keys)} fact keys but {len(subject)} "
                             "subject flags")
        if len(fact_keys) == 0:
            return
        state = self.factors.get(layer)
        if state is None:
            metric = self.metrics.get(layer) if self.config.precondition != "none" else None
            if self.config.precondition != "none" and metric is None:
                raise ValueError(f"precondition '{self.config.precondition}' needs its key "
                                 f"metric for layer {layer} (retain statistics)")
            state = empty_factors(keys.shape[1], deltas.shape[1], self.config.lam, metric)
        self.factors[layer] = insert_columns(state, keys.T, deltas.T)
        self.fact_keys.setdefault(layer, []).extend(fact_keys)
        self.column_offsets.setdefault(layer, []).extend(offsets)
        self.column_subject.setdefault(layer, []).extend(subject)
        self.key_floors.setdefault(layer, []).extend(floors)
        self._recompile(layer)

    def resolve(self, lam: float | None = None) -> None:
        """Re-solve every layer from scratch (e.g. after changing lambda)."""
        if lam is not None:
            self.config = self.config.with_overrides(lam=lam)
        for layer, st in self.factors.items():
            self.factors[layer] = solve_full(st.keys, st.deltas, self.config.lam, st.metric)
            self._recompile(layer)

    def set_operating_point(self, alpha: float | None = None, q: float | None = None,
                            lam: float | None = None, gate_margin: float | None = None,
                            gate_span: bool | None = None,
                            gate_own_floor: bool | None = None) -> None:
        """Change alpha / q / gate_margin / gate_span / gate_own_floor (hook only) and lambda
        (re-solve)."""
        overrides = {k: v for k, v in (("alpha", alpha), ("q", q), ("gate_margin", gate_margin),
                                       ("gate_span", gate_span),
                                       ("gate_own_floor", gate_own_floor)) if v is not None}
        if overrides:
            self.config = self.config.with_overrides(**overrides)
        if lam is not None and lam != self.config.lam:
            self.resolve(lam)
        else:
            for layer in self.factors:
                self._recompile(layer)

    # ------------------------------------------------------------------ the hook
    def _recompile(self, layer: int) -> None:
        """Recompute `layer`'s hook tensors; an attached layer is re-hooked with them (its
        hook path may change, e.g. from low-rank to fused as facts are added)."""
        handle = self._handles.pop(layer, None)
        if handle is not None:
            handle.remove()
        self._compile(layer)
        if handle is not None:
            self._register(layer)

    def _compile(self, layer: int) -> None:
        """Precompute the hook's tensors (model dtype/device) for `layer`."""
        st = self.factors[layer]
        device, dtype = self._placement()
        a_q = sparsify_columns(st.a, self.config.q) * self.config.alpha  # [d_v, n]
        b = st.b  # [d_k, n]
        d_k, d_v, n = b.shape[0], a_q.shape[0], st.n
        compiled: dict[str, Any] = {"b": None, "a_t": None, "dense_t": None, "gate_dirs": None,
                                    "tau": None, "gate_rows": device.type == "cpu",
                                    "fused": None, "span": None}
        if self.config.gate:
            ref = self.gate_reference.get(layer)
            if ref is not None:
                # A fact's threshold depends on its own key only: compute the new facts'.
                rule = (self.config.gate_quantile, self.config.gate_margin,
                        self.config.gate_own_floor)
                known = self.gate_tau.get(layer, []) if self._tau_rule.get(layer) == rule else []
                known = known[:n]
                self.gate_tau[layer] = known + self._thresholds(
                    layer, ref, st.keys[:, len(known):], len(known))
                self._tau_rule[layer] = rule
            elif len(self.gate_tau.get(layer, [])) != n:  # a loaded memory keeps its thresholds
                raise ValueError(f"gate is on but no retain reference keys for layer {layer}")
            tau = torch.tensor(self.gate_tau[layer], dtype=torch.float64) + gate_tolerance(d_k)
            dirs, tau = gate_tensors(st.keys, tau)
            gate_dtype = torch.promote_types(dtype, GATE_MIN_DTYPE)
            compiled["gate_dirs"] = dirs.to(device, gate_dtype)
            compiled["tau"] = None if tau is None else tau.to(device, gate_dtype)
            if self.config.gate_span:
                compiled["span"] = self._span_groups(layer, device)
        module = self._backbone.mlp_out_proj(layer) if self._backbone is not None else None
        fold = not self.config.gate and FusedLinear.applies(module, d_k, d_v)
        if fold or (not self.config.gate and n * (d_k + d_v) > d_k * d_v):
            compiled["dense_t"] = (b @ a_q.T).to(device, dtype)  # [d_k, d_v]
            if fold:
                compiled["fused"] = FusedLinear(module, compiled["dense_t"])
        else:
            compiled["b"] = b.to(device, dtype)
            compiled["a_t"] = a_q.T.contiguous().to(device, dtype)  # [n, d_v]
        self._compiled[layer] = compiled

    def _span_groups(self, layer: int, device: torch.device | str = "cpu"):
        """The span gate's column groups of `layer` (span_gate.span_groups), anchored on the
        subject-token columns with span_anchor "subject"."""
        anchors = self.column_subject[layer] if self.config.span_anchor == "subject" else None
        return span_groups(self.fact_keys[layer], self.column_offsets[layer], device,
                           anchors=anchors)

    def _thresholds(self, layer: int, reference: torch.Tensor, keys: torch.Tensor,
                    first: int = 0) -> list[float]:
        """The gate thresholds of `layer`'s columns first.. (keys [d_k, k]) calibrated on
        `reference`; with gate_own_floor, each at most its column's own least similarity
        less OWN_FLOOR_MARGIN."""
        tau = gate_threshold(reference, keys, self.config.gate_quantile, self.config.gate_margin)
        if not self.config.gate_own_floor:
            return tau
        floors = self.key_floors.get(layer, [])[first:first + len(tau)]
        return [t if f != f else min(t, f - OWN_FLOOR_MARGIN) for t, f in zip(tau, floors)]

    def _placement(self) -> tuple[torch.device, torch.dtype]:
        if self._backbone is None:
            return torch.device("cpu"), torch.float32
        return self._backbone.device, self._backbone.dtype

    def contribution(self, layer: int, h: torch.Tensor) -> torch.Tensor:
        """alpha * S_q(A (B^T h)) for hidden states h [..., d_k] -> [..., d_v]."""
        c = self._compiled[layer]
        d_v = (c["dense_t"] if c["dense_t"] is not None else c["a_t"]).shape[1]
        zeros = torch.zeros((*h.shape[:-1], d_v), dtype=h.dtype, device=h.device)
        return self.apply(layer, h, zeros)

    def apply(self, layer: int, h: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
        """output + contribution(layer, h), fused: one addmm, and with the gate only the
        positions where a fact's gate opens (see the module docstring)."""
        c = self._compiled[layer]
        shape = output.shape
        h2, out2 = h.reshape(-1, h.shape[-1]), output.reshape(-1, shape[-1])
        if c["dense_t"] is not None:
            return torch.addmm(out2, h2, c["dense_t"]).view(shape)
        if c["gate_dirs"] is None:
            return torch.addmm(out2, h2 @ c["b"], c["a_t"]).view(shape)
        # cos(h, k_f) > tau_f  <=>  h . g_f > max(|h|, eps) with g_f = k_f / (|k_f| tau_f)
        # when every tau_f > 0 (`gate_tensors`); otherwise h . k_f/|k_f| > tau_f max(|h|, eps).
        n = c["b"].shape[1]
        h_gate = h2.to(c["gate_dirs"].dtype)  # similarities in float32 at least
        norms = torch.linalg.vector_norm(h_gate, dim=-1, keepdim=True).clamp_min(1e-12)
        sims = h_gate @ c["gate_dirs"]  # [rows, n padded]
        threshold = norms if c["tau"] is None else c["tau"] * norms
        if c["span"] is not None:  # each sequence [..., W] of h: the span gate
            width = h.shape[-2] if h.dim() > 2 else h2.shape[0]
            opened = (sims > threshold)[:, :n]
            opened = span_open(opened.view(-1, width, n), c["span"]).view(opened.shape)
            return self._add_where_open(c, h2, out2, opened).view(shape)
        if not c["gate_rows"]:
            return self._add_where_open(c, h2, out2, (sims > threshold)[:, :n]).view(shape)
        # Rows where some gate opens: a row maximum (one pass) instead of a [rows, n] test.
        row_open = sims.amax(dim=1, keepdim=True) > norms if c["tau"] is None \
            else (sims > threshold).any(dim=1, keepdim=True)
        rows = row_open.squeeze(1).nonzero().squeeze(1)
        if rows.numel() == 0:
            return output
        gate_open = sims.index_select(0, rows) > threshold.index_select(0, rows)
        if self.gate_opens is not None:
            self.gate_opens += int(gate_open[:, :n].sum())
        coef = (h2.index_select(0, rows) @ c["b"]) * gate_open[:, :n].to(h2.dtype)
        return out2.index_add(0, rows, coef @ c["a_t"]).view(shape)

    def _add_where_open(self, c: dict[str, Any], h2: torch.Tensor, out2: torch.Tensor,
                        opened: torch.Tensor) -> torch.Tensor:
        """out2 + each fact's update where `opened` [rows, n] (on CPU only the open rows go
        through B and A; elsewhere the coefficients are masked)."""
        if self.gate_opens is not None:
            self.gate_opens += int(opened.sum())
        if not c["gate_rows"]:
            return torch.addmm(out2, (h2 @ c["b"]) * opened.to(h2.dtype), c["a_t"])
        rows = opened.any(dim=1).nonzero().squeeze(1)
        if rows.numel() == 0:
            return out2
        coef = (h2.index_select(0, rows) @ c["b"]) * opened.index_select(0, rows).to(h2.dtype)
        return out2.index_add(0, rows, coef @ c["a_t"])

    def held_out_gate_opens(self) -> float:
        """Expected (fact column) gate openings per retain position, estimated on the
        calibration states by 2-fold cross-fitting (0 without the gate).

        Every fact's threshold is set on one half of each layer's calibration states and its
        openings counted on the other half, and the other way round. Counted on the states
        that set the threshold, a quantile-1 gate never opens (by construction); the scored
        retain sample of the tune job has too few positions to see rare openings, which a
        memory of 8x more facts then multiplies. A threshold from n states is exceeded by a
        new exchangeable state with probability 1/(n+1) (margin 0), so the half-sample
        rate is scaled by (N/2 + 1)/(N + 1) to stand for the thresholds of all N states.
        Measured against the hook's own count: docs/measurements/memory_variants.md.
        With the span gate and the calibration sequences known (`gate_lengths`), the halves
        are the even and the odd sequences and the span gate runs over each counted sequence
        as the hook runs it; without them a fact counts (its columns) x (its least-opened
        column's openings), an upper bound (`span_gate.span_open_bound`)."""
        if not self.config.gate:
            return 0.0
        rate = 0.0
        for layer, st in self.factors.items():
            ref = self.gate_reference.get(layer)
            if ref is None or st.n == 0:
                continue
            ref = ref.float()
            keys = torch.nn.functional.normalize(st.keys.float(), dim=0)
            groups = self._span_groups(layer) if self.config.gate_span else None
            lengths = self.gate_lengths
            ordered = groups is not None and lengths is not None and lengths.numel() >= 2
            if ordered:  # even / odd sequences, each kept whole
                parity = torch.repeat_interleave(torch.arange(lengths.numel()), lengths) % 2
                halves = ((ref[parity == 0], lengths[0::2]), (ref[parity == 1], lengths[1::2]))
            else:  # even / odd rows
                halves = ((ref[0::2], None), (ref[1::2], None))
            opened = 0.0
            for (setting, _), (counted, counted_lengths) in (halves, halves[::-1]):
                tau = torch.tensor(self._thresholds(layer, setting, st.keys)
                                   ) + gate_tolerance(int(keys.shape[0]))
                gate = (torch.nn.functional.normalize(counted, dim=-1) @ keys) > tau
                if ordered:
                    sequences = pad_sequence(list(gate.split(counted_lengths.tolist())),
                                             batch_first=True)
                    opened += float(span_open(sequences, groups).sum())
                else:
                    opened += span_open_bound(gate.sum(0), groups)
            n_states = int(ref.shape[0])
            rate += opened / n_states * (n_states / 2 + 1) / (n_states + 1)
        return rate

    @contextmanager
    def counting_gate_opens(self) -> Iterator[None]:
        """Count, in `gate_opens`, the (fact column, position) pairs whose gate opens on the
        forwards inside (the measure `tuning.max_retain_gate_opens` bounds); off afterwards."""
        self.gate_opens = 0
        try:
            yield
        finally:
            self.last_gate_opens, self.gate_opens = self.gate_opens, None

    def attach(self, backbone: Backbone) -> Backbone:
        """Register the hooks on `backbone` (checks identity); returns the backbone."""
        check_identity(self.identity, backbone.identity(), "this edit memory")
        self.detach()
        self._backbone = backbone
        for layer in self.factors:
            self._compile(layer)
            self._register(layer)
        return backbone

    def _register(self, layer: int) -> None:
        module = self._backbone.mlp_out_proj(layer)
        fused = self._compiled[layer]["fused"]
        if fused is not None:
            self._handles[layer] = fused.install()
            return

        def hook(module, inputs, output, layer=layer):
            if layer not in self._compiled:
                return None
            return self.apply(layer, inputs[0], output)
        self._handles[layer] = install_forward_hook(module, hook)

    def hook_path(self, layer: int) -> str:
        """How the hook of `layer` computes its update: "fused" (folded into the layer's
        matmul), "dense" (one extra d_k x d_v product), "low_rank" (B then A) or "gated"."""
        c = self._compiled[layer]
        if c["gate_dirs"] is not None:
            return "gated"
        if c["dense_t"] is None:
            return "low_rank"
        return "fused" if c["fused"] is not None and layer in self._handles else "dense"

    def ensure_hooks(self) -> None:
        """After inserting into a new layer while attached: hook that layer too."""
        if self._backbone is None:
            return
        for layer in self.factors:
            if layer not in self._handles:
                self._compile(layer)
                self._register(layer)

    def detach(self) -> None:
        for handle in self._handles.values():
            handle.remove()
        self._handles.clear()
        self._backbone = None

    @contextmanager
    def suspended(self) -> Iterator[None]:
        """Temporarily remove the hooks (e.g. to trace on the unedited model)."""
        backbone = self._backbone
        layers = list(self._handles)
        for handle in self._handles.values():
            handle.remove()
        self._handles.clear()
        try:
            yield
        finally:
            if backbone is not None:
                for layer in layers:
                    self._register(layer)
                self.ensure_hooks()

    @property
    def attached(self) -> bool:
        return bool(self._handles)

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> Path:
        """Write the memory atomically as safetensors (+ JSON metadata)."""
        path = Path(path)
        tensors: dict[str, torch.Tensor] = {}
        for layer, st in self.factors.items():
            tensors[f"layer{layer}.keys"] = st.keys
            tensors[f"layer{layer}.deltas"] = st.deltas
            tensors[f"layer{layer}.chol"] = st.factor()
            tensors[f"layer{layer}.a"] = st.a
            if st.metric is not None:
                tensors[f"layer{layer}.metric"] = st.metric
        meta = {"format_version": FORMAT_VERSION, "config": self.config.to_dict(),
                "identity": self.identity,
                "facts": {str(l): keys for l, keys in self.fact_keys.items()},
                "gate_tau": {str(l): tau for l, tau in self.gate_tau.items()},
                "offsets": {str(l): offs for l, offs in self.column_offsets.items()},
                "subject": {str(l): flags for l, flags in self.column_subject.items()},
                "floors": {str(l): [None if f != f else f for f in fl]
                           for l, fl in self.key_floors.items()}}
        tensors = {k: v.contiguous() for k, v in tensors.items()}
        meta_json = json.dumps(meta, sort_keys=True)
        with atomic_file(path) as tmp:
            save_file(tensors, str(tmp), metadata={
                "timerome": meta_json, "content_sha256": content_digest(meta_json, tensors)})
        return path

    @staticmethod
    def read(path: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """(metadata, tensors) of a saved memory, checked without a backbone: a file that is
        not a readable TimeROME memory, or whose content differs from the digest written
        when it was saved, raises `DamagedArtefact` naming it."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"edit memory not found: {path}")
        try:
            with safe_open(str(path), framework="pt") as handle:
                metadata = handle.metadata() or {}
                tensors = {k: handle.get_tensor(k) for k in handle.keys()}
        except SafetensorError as exc:
            raise DamagedArtefact(path, f"not a readable safetensors file ({exc}): truncated "
                                        f"or corrupt") from None
        raw = metadata.get("timerome")
        if raw is None:
            raise DamagedArtefact(path, "not a TimeROME edit memory (no 'timerome' metadata)")
        digest = metadata.get("content_sha256")
        if digest is not None and digest != content_digest(raw, tensors):
            raise DamagedArtefact(path, CONTENT_DIFFERS)
        try:
            meta = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise DamagedArtefact(path, f"'timerome' metadata is not valid JSON ({exc})") from None
        if not isinstance(meta, dict):
            raise DamagedArtefact(path, "'timerome' metadata is not a JSON object")
        if meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{path}: unsupported memory format {meta.get('format_version')} "
                             f"(this harness reads format {FORMAT_VERSION})")
        for key in ("config", "identity", "facts"):
            if not isinstance(meta.get(key), dict):
                raise DamagedArtefact(path, f"'timerome' metadata has no '{key}' object")
        for layer_s, keys in meta["facts"].items():
            for per_column in ("offsets", "floors", "subject"):
                values = (meta.get(per_column) or {}).get(layer_s)
                if values is not None and (not isinstance(values, list)
                                           or len(values) != len(keys)):
                    raise DamagedArtefact(path, f"'timerome' metadata '{per_column}' of layer "
                                                f"{layer_s} does not have one entry per column "
                                                f"({len(keys)})")
            for part in ("keys", "deltas", "chol", "a"):
                if f"layer{layer_s}.{part}" not in tensors:
                    raise DamagedArtefact(path, f"tensor 'layer{layer_s}.{part}' is missing")
        return meta, tensors

    @classmethod
    def load(cls, path: str | Path, backbone: Backbone, attach: bool = True) -> "EditMemory":
        """Load a saved memory (checked by `read`); refuses a backbone whose identity differs."""
        path = Path(path)
        meta, tensors = cls.read(path)
        check_identity(meta["identity"], backbone.identity(), f"edit memory {path}")
        memory = cls(TimeROMEConfig.from_dict(meta["config"]), meta["identity"])
        memory.gate_tau = {int(l): [float(x) for x in t] for l, t in meta.get("gate_tau", {}).items()}
        for layer_s, keys in meta["facts"].items():
            layer = int(layer_s)
            memory.factors[layer] = RidgeFactors(
                tensors[f"layer{layer}.keys"], tensors[f"layer{layer}.deltas"],
                tensors[f"layer{layer}.chol"], tensors[f"layer{layer}.a"],
                tensors.get(f"layer{layer}.metric"), memory.config.lam)
            memory.fact_keys[layer] = list(keys)
            memory.column_offsets[layer] = [int(o) for o in
                                            meta.get("offsets", {}).get(layer_s, [0] * len(keys))]
            memory.column_subject[layer] = [bool(x) for x in
                                            meta.get("subject", {}).get(layer_s, [True] * len(keys))]
            memory.key_floors[layer] = [math.nan if f is None else float(f) for f in
                                        meta.get("floors", {}).get(layer_s, [None] * len(keys))]
        if attach:
            memory.attach(backbone)
        return memory


GATE_COLUMNS_MULTIPLE = 32  # similarity products run faster on padded widths (CPU: 367 -> 384
                           # columns took 2.7 ms instead of 3.8 ms for 1536 rows x d_k 192)


OWN_FLOOR_MARGIN = 1e-3  # gate_own_floor: a threshold sits this far below the fact's own
                         # least similarity (cosine), above the gate's float32 tolerance
GATE_MIN_DTYPE = torch.float32  # gate similarities: the model dtype, float32 at least
GATE_ROUNDING_ULPS = 8.0


def gate_tolerance(d_k: int) -> float:
    """How far above its calibrated threshold tau a similarity must be for the gate to open.

    tau is the largest similarity of a calibration state; the hook computes the same
    similarity in float32 (h . k_f / (|k_f| tau_f) against |h|), whose rounding error grows
    like sqrt(d_k) eps. Without this margin a retain state at the threshold itself (the
    calibration maximum) opens its gate or not depending on the CPU's summation order.
    8 sqrt(d_k) eps(float32): 1e-5 at d_k 96, 6e-5 at d_k 4096."""
    return GATE_ROUNDING_ULPS * math.sqrt(d_k) * torch.finfo(GATE_MIN_DTYPE).eps


def gate_tensors(keys: torch.Tensor, tau: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The gate's similarity matrix for keys [d_k, n] and thresholds tau [n].

    With every tau_f > 0 the columns are k_f / (|k_f| tau_f), so fact f's gate opens where
    h . column_f > |h| and no threshold tensor is needed (returned None). Otherwise the
    columns are the unit keys and tau is returned. Zero columns pad n up to a multiple of
    `GATE_COLUMNS_MULTIPLE`; they never open (0 > |h| and 0 > inf * |h| are false)."""
    dirs = torch.nn.functional.normalize(keys.to(torch.float64), dim=0)
    scaled = bool((tau > 0).all())
    if scaled:
        dirs = dirs / tau
    pad = (-dirs.shape[1]) % GATE_COLUMNS_MULTIPLE
    dirs = torch.cat([dirs, dirs.new_zeros((dirs.shape[0], pad))], dim=1)
    if scaled:
        return dirs, None
    return dirs, torch.cat([tau.to(torch.float64), tau.new_full((pad,), float("inf"),
                                                                dtype=torch.float64)])


class FusedLinear:
    """A linear layer's forward with the memory folded in: y = x (W_out + W)^T + bias.

    Installed as the module's instance `forward` (forward hooks of others still run);
    `remove()` restores the forward it replaced. The folded weight is rebuilt when the
    layer's weight changes (replaced, or its version counter moves), so it never goes stale.
    A forward that needs gradients for the weight adds W x separately instead.
    """

    FOLD_DTYPES = (torch.float32, torch.float64)

    def __init__(self, module: nn.Linear, dense_t: torch.Tensor):
        self.module = module
        self.delta = dense_t.T  # [d_v, d_k] view of the memory's W (no copy)
        self._source: tuple[torch.Tensor, int] | None = None  # (weight, its version)
        self._weight: torch.Tensor | None = None

    @classmethod
    def applies(cls, module: nn.Module | None, d_k: int, d_v: int) -> bool:
        """True for a plain float32/float64 `nn.Linear` from d_k to d_v."""
        return (type(module) is nn.Linear and module.weight.dtype in cls.FOLD_DTYPES
                and tuple(module.weight.shape) == (d_v, d_k))

    def folded_weight(self) -> torch.Tensor:
        weight = self.module.weight
        if (self._weight is None or self._source[0] is not weight
                or self._source[1] != weight._version):
            with torch.no_grad():
                self._weight = weight.detach() + self.delta
            self._source = (weight, weight._version)
        return self._weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight, bias = self.module.weight, self.module.bias
        if torch.is_grad_enabled() and weight.requires_grad:
            return torch.addmm(nn.functional.linear(x, weight, bias).reshape(-1, weight.shape[0]),
                               x.reshape(-1, x.shape[-1]), self.delta.T
                               ).view(*x.shape[:-1], weight.shape[0])
        return nn.functional.linear(x, self.folded_weight(), bias)

    def install(self) -> "FusedLinear":
        self._previous = self.module.__dict__.get("forward")
        self.module.forward = self.forward
        return self

    def remove(self) -> None:
        if self.module.__dict__.get("forward") == self.forward:
            if self._previous is None:
                del self.module.forward
            else:
                self.module.forward = self._previous


def content_digest(meta_json: str, tensors: dict[str, torch.Tensor]) -> str:
    """sha256 of a memory's metadata JSON and of each tensor's name, dtype, shape and bytes."""
    digest = hashlib.sha256(meta_json.encode("utf-8"))
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        digest.update(f"\n{name}:{str(tensor.dtype).removeprefix('torch.')}:"
                      f"{list(tensor.shape)}\n".encode("utf-8"))
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def check_identity(expected: dict[str, Any], actual: dict[str, Any], what: str) -> None:
    if dict(expected) != dict(actual):
        raise IdentityMismatch(
            f"{what} was built for backbone {json.dumps(expected, sort_keys=True)} but the "
            f"given backbone is {json.dumps(actual, sort_keys=True)}")
