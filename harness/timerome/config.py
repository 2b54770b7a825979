"""Configuration of TimeROME-DLM (one typed dataclass; every choice is a named option)."""

from __future__ import annotations

import difflib
import math
from dataclasses import asdict, dataclass, fields
from numbers import Integral, Real
from typing import Any, Mapping

from harness.methods.base import MethodConfigError
from harness.methods.defaults import method_defaults

TARGETS = ("corrupt", "suppress")
PRECONDITIONS = ("none", "retain_cov", "null_space")  # retain_stats.KEY_METRICS
POSITION_MODES = ("last_subject", "subject", "window")
SITE_RULES = ("chosen", "subject", "subject_through", "subject_layers", "window")  # sites.SITES
RESTORE_SPANS = ("token", "subject")  # tracing._restored_rows
SPAN_ANCHORS = ("subject", "span")  # span_gate.span_groups(anchors=...)


_DEFAULTS = method_defaults("timerome")  # harness/methods/defaults/timerome.yaml


@dataclass(frozen=True)
class TimeROMEConfig:
    """Hyper-parameters of tracing, the memory solve and the hook. The defaults are
    harness/methods/defaults/timerome.yaml, the variant Table 1 runs.

    alpha: hook scale; lam: ridge lambda; q: kept fraction of each fact's contribution.
    times: the denoising grid T; noise_samples: N corrupted runs per level;
    noise_multiplier: nu = multiplier x std(token embeddings).
    target: "corrupt" | "suppress" (target deltas); precondition: the key metric of the
      solve, "none" (ridge), "retain_cov" (lambda C, MEMIT) or "null_space" (ridge on the keys
      projected onto the retain keys' null space, AlphaEdit: the eigen-directions of the
      normalised retain key covariance with eigenvalue below `null_space_threshold`).
    gate: per-fact cosine gate calibrated at `gate_quantile` of retain key similarities
      (fact f's update applies where cos(h, k_f) exceeds that quantile of cos(h_retain, k_f);
      1.0 = above every retain state seen in calibration; measured:
      docs/measurements/timerome_variant.md), raised by `gate_margin` of its distance to 1
      (tau = r + margin (1 - r); retain_stats.gate_threshold).
    gate_span: (with the gate, for facts edited at several subject tokens of a layer) a
      fact's columns open only together: at position p, column s (subject offset o_s)
      opens when every column s' of the same fact and layer passes its own gate at
      p - o_s + o_s', i.e. when the whole subject span matches, not one of its tokens
      (a retain name sharing one token with a forget name stays closed;
      docs/measurements/memory_variants.md).
    span_anchor: (with gate_span) which of a fact's columns must pass their own gates for
      its columns to open: "subject" (its subject-token columns; a column outside the
      subject, a `window` site, opens wherever the fact's subject matches at its offset,
      whatever the tokens there) or "span" (every column). The same with sites inside the
      subject; with `sites: window`, "span" keeps a window edit to the edited question's
      exact wording (measured on twins trained on paraphrases:
      docs/measurements/memory_variants.md, "Anchored window").
    gate_own_floor: (with the gate) each column's threshold is at most its fact's own
      least similarity: the smallest cosine, over the traced denoising levels, between the
      fact's clean state at that site and its key (less `OWN_FLOOR_MARGIN`), so the fact's
      own text opens its gates at every level the trace saw. Meant for `gate_span` (the
      tune job tries it only there): on the per-token gate the lowered thresholds open on
      retain tokens alone (measured: Table 1 retain drops of 1.02 and 1.91 nats;
      docs/measurements/memory_variants.md).
    positions: candidate positions ("last_subject", "subject" = all subject tokens,
    "window" = subject tokens plus `window` tokens before/after the subject end, for the
    figure; the chosen coordinate is always a subject token).
    sites: which (layer, position) coordinates of an edited fact get a key/delta column:
      "chosen" (the TIE coordinate), "subject" (every subject token at the chosen layer),
      "subject_through" (... at every layer up to the chosen one), "subject_layers" (... at
      every layer), "window" (every traced position at the chosen layer: with positions
      "window", the tokens around the subject's end too); harness.timerome.sites.
    restore_span: what one restored run patches back: "token" (one (layer, position), the
      spec: the TIE is per layer and position) or "subject" (every traced subject token of
      the fact at one layer, ROME's window over the subject: the TIE is per layer, kept at
      the last subject token, the position the spec defaults to).
    tie_facts: restored runs (the TIE) for at most this many facts per edit (null: every
      fact, the spec). The others get their keys and deltas from their own clean and
      corrupted runs as usual, and the layer where the traced facts' mean TIE peaks (MEMIT
      picks its layers from causal traces averaged over facts); which facts are traced is a
      seeded choice by fact key (tracing.traced_sample). 0: no fact of the edit is traced;
      every fact takes the peak layer of the backbone's TIE profile, traced once per
      backbone on `profile_facts` retain facts (a backbone statistic, like the retain
      covariance: tracing.backbone_tie_profile).
    profile_facts: how many retain facts (a seeded sample) the backbone's TIE profile is
      traced on (used only when tie_facts is 0).
    flag_threshold: a fact whose max TIE is below this (nats) is flagged, not edited (an
      untraced fact: when its corruption effect is below it).
    effect_flag: (used only when tie_facts is 0) measure each fact's corruption effect (the
      first level's clean and corrupted runs in full, through the head) and flag a fact
      whose effect is below `flag_threshold`. false: every level's runs stop at the deepest
      layer the edit reads and no fact is flagged (docs/measurements/trace_variants.md).
    """

    alpha: float = _DEFAULTS["alpha"]
    lam: float = _DEFAULTS["lam"]
    q: float = _DEFAULTS["q"]
    times: tuple[float, ...] = tuple(_DEFAULTS["times"])
    noise_samples: int = _DEFAULTS["noise_samples"]
    noise_multiplier: float = _DEFAULTS["noise_multiplier"]
    target: str = _DEFAULTS["target"]
    precondition: str = _DEFAULTS["precondition"]
    gate: bool = _DEFAULTS["gate"]
    gate_quantile: float = _DEFAULTS["gate_quantile"]
    gate_margin: float = _DEFAULTS["gate_margin"]
    gate_span: bool = _DEFAULTS["gate_span"]
    span_anchor: str = _DEFAULTS["span_anchor"]
    gate_own_floor: bool = _DEFAULTS["gate_own_floor"]
    positions: str = _DEFAULTS["positions"]
    sites: str = _DEFAULTS["sites"]
    window: tuple[int, int] = tuple(_DEFAULTS["window"])
    restore_span: str = _DEFAULTS["restore_span"]
    tie_facts: int | None = _DEFAULTS["tie_facts"]
    profile_facts: int = _DEFAULTS["profile_facts"]
    flag_threshold: float = _DEFAULTS["flag_threshold"]
    edit_flagged: bool = _DEFAULTS["edit_flagged"]
    effect_flag: bool = _DEFAULTS["effect_flag"]
    trace_batch_rows: int = _DEFAULTS["trace_batch_rows"]
    fact_batch: int = _DEFAULTS["fact_batch"]
    cov_shrinkage: float = _DEFAULTS["cov_shrinkage"]
    null_space_threshold: float = _DEFAULTS["null_space_threshold"]
    seed: int = _DEFAULTS["seed"]

    def __post_init__(self) -> None:
        self._check_types()
        object.__setattr__(self, "times", tuple(float(t) for t in self.times))
        object.__setattr__(self, "window", tuple(int(w) for w in self.window))
        problems: list[tuple[str, str]] = []  # (key, problem)
        if self.alpha < 0:
            problems.append(("alpha", f"alpha must be >= 0, got {self.alpha}"))
        if self.lam <= 0:
            problems.append(("lam", f"lam must be > 0, got {self.lam}"))
        if not 0 < self.q <= 1:
            problems.append(("q", f"q must lie in (0, 1], got {self.q}"))
        if not self.times or any(not 0 < t <= 1 for t in self.times):
            problems.append(("times",
                             f"times must be a non-empty grid in (0, 1], got {self.times}"))
        if self.noise_samples < 1:
            problems.append(("noise_samples",
                             f"noise_samples must be >= 1, got {self.noise_samples}"))
        if self.noise_multiplier < 0:
            problems.append(("noise_multiplier",
                             f"noise_multiplier must be >= 0, got {self.noise_multiplier}"))
        for name, value, known in (("target", self.target, TARGETS),
                                   ("precondition", self.precondition, PRECONDITIONS),
                                   ("positions", self.positions, POSITION_MODES),
                                   ("sites", self.sites, SITE_RULES),
                                   ("restore_span", self.restore_span, RESTORE_SPANS),
                                   ("span_anchor", self.span_anchor, SPAN_ANCHORS)):
            if value not in known:
                problems.append((name, f"unknown {name} '{value}'; known: {', '.join(known)}"))
        if not 0 < self.gate_quantile <= 1:
            problems.append(("gate_quantile",
                             f"gate_quantile must lie in (0, 1], got {self.gate_quantile}"))
        if len(self.window) != 2 or min(self.window) < 0:
            problems.append(("window", f"window must be two non-negative ints, got {self.window}"))
        if self.null_space_threshold <= 0:
            problems.append(("null_space_threshold",
                             f"null_space_threshold must be > 0, got {self.null_space_threshold}"))
        if not 0 <= self.gate_margin < 1:
            problems.append(("gate_margin",
                             f"gate_margin must lie in [0, 1), got {self.gate_margin}"))
        if self.tie_facts is not None and self.tie_facts < 0:
            problems.append(("tie_facts", f"tie_facts must be >= 0 or null, got {self.tie_facts}"))
        if self.profile_facts < 1:
            problems.append(("profile_facts",
                             f"profile_facts must be >= 1, got {self.profile_facts}"))
        if self.trace_batch_rows < 1 or self.fact_batch < 1:
            problems.append(("trace_batch_rows" if self.trace_batch_rows < 1 else "fact_batch",
                             "trace_batch_rows and fact_batch must be >= 1"))
        if problems:
            raise MethodConfigError("invalid TimeROMEConfig: " + "; ".join(p for _, p in problems),
                                    key=problems[0][0])

    def _check_types(self) -> None:
        """Named errors for values of the wrong type (before any comparison could raise a
        TypeError or pass by accident) and for NaN / infinity, which pass every comparison
        of __post_init__ or make the solve a no-op."""
        def real(v: Any) -> bool:
            return isinstance(v, Real) and not isinstance(v, bool)

        def integer(v: Any) -> bool:
            return isinstance(v, Integral) and not isinstance(v, bool)

        problems: list[tuple[str, str]] = []
        numbers = {"alpha": self.alpha, "lam": self.lam, "q": self.q,
                   "noise_multiplier": self.noise_multiplier, "gate_quantile": self.gate_quantile,
                   "flag_threshold": self.flag_threshold, "cov_shrinkage": self.cov_shrinkage,
                   "null_space_threshold": self.null_space_threshold,
                   "gate_margin": self.gate_margin}
        if isinstance(self.times, (list, tuple)):
            numbers.update({f"times[{i}]": t for i, t in enumerate(self.times)})
        else:
            problems.append(("times", f"times must be a list of numbers, got {self.times!r}"))
        for key, v in numbers.items():
            if not real(v) or not math.isfinite(v):
                problems.append((key.split("[")[0], f"{key} must be a finite number, got {v!r}"))
        for key in ("noise_samples", "trace_batch_rows", "fact_batch", "profile_facts", "seed"):
            if not integer(getattr(self, key)):
                problems.append((key, f"{key} must be an integer, got {getattr(self, key)!r}"))
        if self.tie_facts is not None and not integer(self.tie_facts):
            problems.append(("tie_facts",
                             f"tie_facts must be an integer or null, got {self.tie_facts!r}"))
        for key in ("gate", "gate_span", "gate_own_floor", "edit_flagged", "effect_flag"):
            if not isinstance(getattr(self, key), bool):
                problems.append((key, f"{key} must be true or false, got {getattr(self, key)!r}"))
        if not (isinstance(self.window, (list, tuple)) and all(integer(w) for w in self.window)):
            problems.append(("window",
                             f"window must be two non-negative ints, got {self.window!r}"))
        if problems:
            raise MethodConfigError("invalid TimeROMEConfig: " + "; ".join(p for _, p in problems),
                                    key=problems[0][0])

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["times"] = list(self.times)
        out["window"] = list(self.window)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "TimeROMEConfig":
        known = sorted(f.name for f in fields(cls))
        unknown = sorted(set(data) - set(known))
        if unknown:
            close = difflib.get_close_matches(str(unknown[0]), known, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise MethodConfigError(f"unknown TimeROMEConfig key(s): {', '.join(unknown)}{hint}; "
                                    f"known: {', '.join(known)}", key=unknown[0])
        return cls(**dict(data))

    def with_overrides(self, **overrides: Any) -> "TimeROMEConfig":
        return type(self).from_dict({**self.to_dict(), **overrides})


if set(_DEFAULTS) != {f.name for f in fields(TimeROMEConfig)}:
    raise ValueError("harness/methods/defaults/timerome.yaml and TimeROMEConfig name different "
                     f"keys: {sorted(set(_DEFAULTS) ^ {f.name for f in fields(TimeROMEConfig)})}")


def validate_config(data: Mapping[str, Any]) -> None:
    """Raise MethodConfigError unless `data` is a valid `method_config.timerome` (the
    method's Method.validate_config; the workflow calls it when it plans the DAG)."""
    TimeROMEConfig.from_dict(data)
