"""Tuning of (alpha, lambda, q) on the validation split (method.md section 4).

Facts are traced once; each lambda is one solve and each (alpha, q) only recompiles the
hook, so the grid costs two scoring passes per point. The utility-safe operating point
maximises the mean forget full_mask log-prob drop per sample subject to a mean retain drop
of at most `max_retain_drop` nats per sample. Nothing here is backbone-specific: the same
function and grid run unchanged on any adapter (transfer).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from harness.backbones.base import Backbone
from harness.data.fact import Fact
from harness.diffusion.batching import encode_facts
from harness.evaluation.answer_logprob import score_facts
from harness.timerome.config import SITE_RULES, TimeROMEConfig
from harness.timerome.editor import TimeROMEEditor
from harness.atomic import write_json_atomic
from harness.timerome.tracing import TraceResult

ESTIMATOR = "full_mask"
# A point is utility-safe when the one-sided 95% upper confidence bound of its mean retain
# drop over the scored retain facts (mean + z SE) is within the budget: the scored facts are
# a sample, and a Table 1 or scaling job is scored on another one. One opened gate can cost
# a retain fact 20 nats, so the per-fact drops are heavy-tailed and the mean alone was
# exceeded on new facts (docs/measurements/memory_variants.md).
RETAIN_Z = 1.645


def mean_and_se(values: torch.Tensor) -> tuple[float, float]:
    """Mean and standard error of the mean (0 for fewer than two values)."""
    n = int(values.numel())
    if n < 2:
        return float(values.mean()) if n else 0.0, 0.0
    return float(values.mean()), float(values.std(unbiased=True)) / math.sqrt(n)


@dataclass(frozen=True)
class TuningGrid:
    """The grid searched; its defaults are the one statement of the default grid (config
    `tuning.grid` and `python -m harness.timerome tune` fall back to them)."""

    alphas: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 16.0)
    lams: tuple[float, ...] = (0.1, 1.0, 10.0)
    qs: tuple[float, ...] = (0.25, 0.5, 1.0)
    gate_margins: tuple[float, ...] = (0.0,)
    sites: tuple[str, ...] = ()  # edit-site rules (harness.timerome.sites); (): the config's
    gate_spans: tuple[bool, ...] = ()  # span gate off/on (config gate_span); (): the config's
    gate_own_floors: tuple[bool, ...] = ()  # config gate_own_floor off/on; (): the config's

    @classmethod
    def from_config(cls, grid: Mapping[str, Sequence[float]]) -> "TuningGrid":
        """From config `tuning.grid` ({alpha, lam, q, gate_margin, sites, gate_span,
        gate_own_floor}: lists); a key left out: the default."""
        names = {"alpha": "alphas", "lam": "lams", "q": "qs", "gate_margin": "gate_margins",
                 "sites": "sites", "gate_span": "gate_spans",
                 "gate_own_floor": "gate_own_floors"}
        unknown = sorted(set(grid) - set(names))
        if unknown:
            raise ValueError(f"tuning grid: unknown key(s) {', '.join(unknown)}; "
                             f"known: {', '.join(names)}")
        bad = [rule for rule in grid.get("sites", ()) if rule not in SITE_RULES]
        if bad:
            raise ValueError(f"tuning grid: unknown sites rule(s) {', '.join(map(str, bad))}; "
                             f"known: {', '.join(SITE_RULES)}")
        for key in ("gate_span", "gate_own_floor"):
            bad = [v for v in grid.get(key, ()) if not isinstance(v, bool)]
            if bad:
                raise ValueError(f"tuning grid: {key} values must be true or false, got "
                                 f"{', '.join(map(repr, bad))}")
        return cls(**{names[k]: tuple(values) for k, values in grid.items()})


@dataclass
class GridPoint:
    alpha: float
    lam: float
    q: float
    forget_drop: float  # mean nats per sample (pre - post), full_mask
    retain_drop: float
    safe: bool
    gate_margin: float = 0.0
    # mean number of (fact column, position) gate openings per scored retain fact: the
    # retain damage's mechanism, counted directly (0 without the gate)
    retain_gate_opens: float = 0.0
    # expected openings per retain fact of the population, estimated on the calibration
    # states by cross-fitting (`EditMemory.held_out_gate_opens` x the scored retain facts'
    # mean positions): what the gate budget is checked on
    expected_gate_opens: float = 0.0
    sites: str | None = None  # the edit-site rule (None: the base config's)
    retain_drop_se: float = 0.0  # standard error of retain_drop over the scored facts
    gate_span: bool | None = None  # the span gate (None: the base config's)
    gate_own_floor: bool | None = None  # thresholds floored by own states (None: the config's)

    @property
    def retain_drop_bound(self) -> float:
        """One-sided 95% upper bound of the mean retain drop (what `safe` compares)."""
        return self.retain_drop + RETAIN_Z * self.retain_drop_se

    @property
    def setting(self) -> tuple[float, float, float, float, str | None, bool | None,
                               bool | None]:
        return (self.alpha, self.lam, self.q, self.gate_margin, self.sites, self.gate_span,
                self.gate_own_floor)

    def overrides(self) -> dict[str, Any]:
        """The config keys this point sets (`TimeROMEConfig.with_overrides`): the method's
        tunable keys (its registry entry) the point has a value for."""
        return tuned_values(vars(self))


@dataclass
class Regime:
    """One validation fact count of a multi-count tuning (`tune_counts`): its grid."""

    facts: int
    grid: list[GridPoint]
    frontier: list[GridPoint] = field(default_factory=list)  # `frontier(grid)`
    groups: int = 1  # disjoint groups of `facts` validation facts pooled (`pool_groups`)


@dataclass
class TuningResult:
    chosen: GridPoint | None
    grid: list[GridPoint]
    max_retain_drop: float
    estimator: str
    validation_facts: list[str]
    retain_facts: list[str]
    base_config: dict[str, Any]
    backbone: dict[str, Any]
    seconds: float
    flagged: list[str] = field(default_factory=list)
    calibration_facts: list[str] = field(default_factory=list)  # the edit's retain statistics
    # Hyperparameters whose chosen value is the grid's "min" or "max" while the retain
    # constraint never bound beyond it: the optimum may lie outside the grid.
    grid_edge: dict[str, str] = field(default_factory=dict)
    # No point was utility-safe and the job was told to fall back (the tune job's
    # `on_no_safe_point: fallback_defaults`): `chosen` is None and the method runs untuned.
    fallback: bool = False
    fallback_reason: str | None = None
    # Multi-count tuning (`tune_counts`): the grid at each validation fact count; `grid` and
    # `chosen` are then the largest count's, `safe` meaning safe at every count.
    regimes: list[Regime] = field(default_factory=list)
    rule: str = "max forget drop with retain drop (95% upper bound) <= max_retain_drop"
    # Per fact-count regime (`tune_counts`): {str(n): the point a job editing up to n facts
    # applies} (`regime_point`); `chosen` is the regime of the most facts.
    chosen_by_facts: dict[str, GridPoint | None] = field(default_factory=dict)
    # `tune_counts`: nats of retain drop per gate opening (`damage_per_opening`) and the
    # gate budget the regimes were checked against (expected openings per retain fact)
    damage_per_opening: float | None = None
    gate_open_budget: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def edge_warning(self) -> str | None:
        if not self.grid_edge:
            return None
        where = ", ".join(f"{name} at the grid's {side}" for name, side in self.grid_edge.items())
        return (f"warning: the utility-safe point has {where}, and no grid point past it was "
                "unsafe; widen the grid to find the real operating point")

    def no_safe_point(self) -> str:
        """Why nothing was chosen: the retain budget and the grid point that came closest,
        and, when some point was within it, the gate budget that ruled the rest out."""
        text = f"no grid point keeps the mean retain drop <= {self.max_retain_drop} nats/sample"
        if self.grid:
            best = min(self.grid, key=lambda p: p.retain_drop_bound)
            text += (f" (smallest 95% upper bound: {best.retain_drop_bound:.4g} at "
                     f"alpha={best.alpha}, lam={best.lam}, q={best.q})")
            within = [p for p in self.grid if p.retain_drop_bound <= self.max_retain_drop]
            if within and self.gate_open_budget is not None:
                fewest = min(within, key=lambda p: p.expected_gate_opens)
                text = (f"no grid point is utility-safe at every regime: {len(within)} keep the "
                        f"retain drop's 95% upper bound within {self.max_retain_drop} "
                        f"nats/sample at the largest count, but the fewest expected gate "
                        f"openings among them, {fewest.expected_gate_opens:.4g} per retain fact "
                        f"(alpha={fewest.alpha}, gate_margin={fewest.gate_margin}), is over the "
                        f"gate budget of {self.gate_open_budget:.4g} (damage per opening "
                        f"{self.damage_per_opening:.3g} nats) once scaled to the most facts "
                        f"(rule: {self.rule})")
        return text

    def config(self) -> TimeROMEConfig:
        """The base config at the chosen operating point."""
        if self.chosen is None:
            raise ValueError("tuning found no utility-safe operating point")
        return TimeROMEConfig.from_dict(self.base_config).with_overrides(
            **self.chosen.overrides())


# With the gate on, which gates open depends on the states, the margin and the gate rules,
# not on alpha or q; where no gate opened on the retain facts, every state was the unedited
# one, so no gate opens at any other alpha or q of that setting either and the retain scores
# are the unedited ones: `tune` scores the retain facts again only where one opened.
REUSE_CLOSED_RETAIN = True


def tune(backbone: Backbone, validation: Sequence[Fact], retain: Sequence[Fact],
         base: TimeROMEConfig = TimeROMEConfig(), grid: TuningGrid = TuningGrid(),
         max_retain_drop: float = 1.0, batch_size: int = 32,
         trace: TraceResult | None = None,
         calibration: Sequence[Fact] | None = None,
         statistics: Mapping[str, Any] | None = None) -> TuningResult:
    """Grid search; `trace` (of `validation`, same tracing options) skips tracing;
    `statistics` (`TimeROMEEditor.backbone_statistics` of `calibration`) skips computing them.

    The retain drop is measured on `retain`; the retain statistics of the edit (key
    covariance, gate thresholds) come from `calibration`, which should be disjoint from
    `retain` (measured on the calibration facts themselves, a max-similarity gate never
    opens, and the retain drop is optimistic). None: `retain` (the old, in-sample way)."""
    start = time.monotonic()
    editor = TimeROMEEditor(backbone, base,
                            retain=retain if calibration is None else calibration,
                            statistics=statistics)
    if trace is None:
        encoded, trace = editor.trace(validation, grid.sites)
    else:
        encoded = encode_facts(backbone, validation)
        if trace.fact_keys != [f.key for f in validation]:
            raise ValueError("tune: the given trace is not of the validation facts")
    selected = editor.selected(trace)
    forget_pre = score_facts(backbone, validation, ESTIMATOR, batch_size).logp
    retain_pre = score_facts(backbone, retain, ESTIMATOR, batch_size).logp
    retain_positions = sum(len(e.prompt_ids) + len(e.answer_ids)
                           for e in encode_facts(backbone, retain)) / max(1, len(retain))
    points = []
    # (sites, span, own floor, margin) -> expected openings (the keys do not depend on lam)
    expected_by: dict[tuple[str, bool, bool, float], float] = {}
    unchanged = mean_and_se(torch.zeros(len(retain)))
    gates = gate_variants(grid, base)
    for (site_rule, lam) in [(r, lam) for r in (grid.sites or (base.sites,)) for lam in grid.lams]:
        editor.config = base.with_overrides(lam=lam, sites=site_rule)
        columns = editor.extract(encoded, trace, selected)  # the same trace, other sites
        memory = editor.new_memory()
        editor.solve(memory, columns)
        memory.attach(backbone)
        try:
            for (span, floor), margin in [(g, m) for g in gates for m in grid.gate_margins]:
                memory.set_operating_point(gate_margin=margin, gate_span=span,
                                           gate_own_floor=floor)
                if (site_rule, span, floor, margin) not in expected_by:
                    expected_by[site_rule, span, floor, margin] = \
                        memory.held_out_gate_opens() * retain_positions
                expected = expected_by[site_rule, span, floor, margin]
                closed = False  # no gate opened on the retain facts at this gate setting
                for alpha in grid.alphas:
                    for q in grid.qs:
                        memory.set_operating_point(alpha=alpha, q=q, gate_margin=margin)
                        f_drop = float((forget_pre - score_facts(
                            backbone, validation, ESTIMATOR, batch_size).logp).mean())
                        if closed and REUSE_CLOSED_RETAIN:
                            (r_drop, r_se), opens = unchanged, 0.0
                        else:
                            with memory.counting_gate_opens():
                                r_drops = retain_pre - score_facts(
                                    backbone, retain, ESTIMATOR, batch_size).logp
                            r_drop, r_se = mean_and_se(r_drops)
                            opens = memory.last_gate_opens / max(1, len(retain))
                            closed = base.gate and memory.last_gate_opens == 0
                        points.append(GridPoint(alpha, lam, q, f_drop, r_drop,
                                                r_drop + RETAIN_Z * r_se <= max_retain_drop,
                                                margin, opens, expected, site_rule, r_se,
                                                span if grid.gate_spans else None,
                                                floor if grid.gate_own_floors else None))
        finally:
            memory.detach()
    safe = [p for p in points if p.safe]
    chosen = max(safe, key=lambda p: (p.forget_drop, -p.alpha)) if safe else None
    return TuningResult(chosen=chosen, grid=points, max_retain_drop=max_retain_drop,
                        estimator=ESTIMATOR, validation_facts=[f.key for f in validation],
                        retain_facts=[f.key for f in retain], base_config=base.to_dict(),
                        backbone=backbone.identity(), seconds=time.monotonic() - start,
                        flagged=[trace.fact_keys[i] for i in range(len(trace.fact_keys))
                                 if bool(trace.flagged[i])],
                        calibration_facts=[f.key for f in editor.retain],
                        grid_edge=grid_edge(chosen, points, grid))


def regime_groups(n_validation: int, n_facts: int, groups: int) -> int:
    """How many disjoint groups of `n_facts` validation facts (validation[k n:(k + 1) n]) a
    regime of n facts is tuned on: `groups`, or as many as the split holds."""
    return max(1, min(groups, n_validation // n_facts))


def pool_groups(results: Sequence[TuningResult], grid: TuningGrid,
                max_retain_drop: float) -> TuningResult:
    """One regime's result from its groups' (`tune` on each group, the same grid in the same
    order). A point's forget drop and retain drop are their means over the groups (the
    retain drop's standard error pooled: sqrt(sum se^2) / G), its gate openings the mean
    counted and the largest expected; it is utility-safe only if it is safe on every
    group. One group of 10 facts is one author of the synthetic corpus, and authors differ
    more than points do (docs/measurements/memory_variants.md)."""
    if len(results) == 1:
        return results[0]
    points = []
    for group_points in zip(*(r.grid for r in results)):
        if len({p.setting for p in group_points}) != 1:
            raise ValueError("pool_groups: the groups' grids differ")
        g = len(group_points)
        points.append(GridPoint(**{
            **vars(group_points[0]),
            "forget_drop": sum(p.forget_drop for p in group_points) / g,
            "retain_drop": sum(p.retain_drop for p in group_points) / g,
            "retain_drop_se": math.sqrt(sum(p.retain_drop_se ** 2 for p in group_points)) / g,
            "retain_gate_opens": sum(p.retain_gate_opens for p in group_points) / g,
            "expected_gate_opens": max(p.expected_gate_opens for p in group_points),
            "safe": all(p.safe for p in group_points)}))
    safe = [p for p in points if p.safe]
    chosen = max(safe, key=lambda p: (p.forget_drop, -p.alpha)) if safe else None
    first = results[0]
    return TuningResult(chosen=chosen, grid=points, max_retain_drop=max_retain_drop,
                        estimator=first.estimator,
                        validation_facts=[k for r in results for k in r.validation_facts],
                        retain_facts=first.retain_facts, base_config=first.base_config,
                        backbone=first.backbone, seconds=sum(r.seconds for r in results),
                        flagged=sorted({k for r in results for k in r.flagged}),
                        calibration_facts=first.calibration_facts,
                        grid_edge=grid_edge(chosen, points, grid))


def gate_variants(grid: TuningGrid, base: TimeROMEConfig) -> list[tuple[bool, bool]]:
    """The (gate_span, gate_own_floor) pairs the grid tries: the own floor only with the
    span gate (on the per-token gate the floored thresholds open on retain tokens alone:
    TimeROMEConfig's gate_own_floor)."""
    return [(span, floor) for span in grid.gate_spans or (base.gate_span,)
            for floor in grid.gate_own_floors or (base.gate_own_floor,) if span or not floor]


def tune_counts(backbone: Backbone, validation: Sequence[Fact], retain: Sequence[Fact],
                counts: Sequence[int], base: TimeROMEConfig = TimeROMEConfig(),
                grid: TuningGrid = TuningGrid(), max_retain_drop: float = 1.0,
                batch_size: int = 32, calibration: Sequence[Fact] | None = None,
                extrapolate_to: int | None = None,
                max_gate_opens: float | None = None, groups: int = 1) -> TuningResult:
    """Operating points per fact-count regime: the grid is searched on n validation facts
    for each n in `counts` (a memory of more facts opens more gates on retain text, so a
    point safe at 10 facts may not be at 50): on `regime_groups` disjoint groups of n
    facts, the first n, the next n, ... (at most `groups`; 1: the first n alone), pooled
    by `pool_groups`.

    - Regime n (each count): the largest forget drop at n among the points safe at n; a job
      editing at most n facts (and more than the next smaller count) applies it.
    - Regime `extrapolate_to` (when the workflow puts more facts into one memory than the
      validation split holds, e.g. 400 in the scaling experiment): a point must be safe at
      every count and its retain drop at the largest count, scaled linearly to
      `extrapolate_to` facts, within the budget too (each fact's gate opens on about the same
      share of retain states, so the expected number of opened gates grows linearly with
      the facts); the largest forget drop at the largest count among those.

    A point is also unsafe for a regime when its gates are expected to open more than a
    budget per retain fact (`gate_open_budget`: the openings whose cost, at
    `damage_per_opening` of the largest count's grid, the most nats one opening cost there,
    stays within max_retain_drop at 95% on a sample of the scored size), or than
    `max_gate_opens` if smaller (`GridPoint.expected_gate_opens`,
    cross-fitted on the calibration states at n; at the largest count scaled linearly for
    the extrapolated regime: each fact column opens on about the same share of retain
    positions). The retain drop of a 50-fact memory does not predict a 400-fact one, nor
    does counting openings on the 40 scored retain facts (0 at 50 facts, 0.43 per fact at
    400 on the base twin); the cross-fitted expectation does
    (docs/measurements/memory_variants.md).

    `chosen_by_facts` maps each regime's count to its point (`regime_point` picks one for a
    job); `chosen` and `grid` are the most-facts regime's (its `safe` flags); `regimes` holds
    every count's grid."""
    counts = sorted({int(n) for n in counts})
    if not counts or counts[0] < 1 or counts[-1] > len(validation):
        raise ValueError(f"tuning fact counts {counts} must lie in 1..{len(validation)} "
                         "(the validation facts)")
    start = time.monotonic()
    # Each count's facts traced as an edit of that many facts traces them (`count_traces`)
    # and the retain statistics computed once: neither depends on the grid point.
    editor = TimeROMEEditor(backbone, base, retain=retain if calibration is None else calibration)
    sizes = {n: regime_groups(len(validation), n, groups) for n in counts}
    traces = count_traces(editor, validation, counts, grid.sites, sizes)
    statistics = editor.backbone_statistics()
    results = [pool_groups([tune(backbone, validation[k * n:(k + 1) * n], retain, base, grid,
                                 max_retain_drop=max_retain_drop, batch_size=batch_size,
                                 trace=traces[n, k], calibration=calibration,
                                 statistics=statistics) for k in range(sizes[n])],
                           grid, max_retain_drop) for n in counts]
    damage = damage_per_opening(results[-1].grid)
    budget = min(float("inf") if max_gate_opens is None else max_gate_opens,
                 float("inf") if damage is None
                 else gate_open_budget(max_retain_drop, damage, len(retain)))
    for r in results:  # each regime: safe at its own count
        for p in r.grid:
            p.safe = p.safe and p.expected_gate_opens <= budget
        safe_here = [p for p in r.grid if p.safe]
        r.chosen = max(safe_here, key=lambda p: (p.forget_drop, -p.alpha)) if safe_here else None
    unsafe = {p.setting for r in results for p in r.grid if not p.safe}
    largest = results[-1]
    scale = max(1.0, (extrapolate_to or 0) / counts[-1])
    unsafe |= {p.setting for p in largest.grid if p.retain_drop_bound * scale > max_retain_drop
               or p.expected_gate_opens * scale > budget}
    points = [GridPoint(**{**vars(p), "safe": p.setting not in unsafe}) for p in largest.grid]
    safe = [p for p in points if p.safe]
    chosen = max(safe, key=lambda p: (p.forget_drop, -p.alpha)) if safe else None
    largest.chosen_by_facts = {str(n): r.chosen for n, r in zip(counts, results)}
    if scale > 1:
        largest.chosen_by_facts[str(extrapolate_to)] = chosen
    else:
        largest.chosen_by_facts[str(counts[-1])] = chosen
    # each count's grid with its own safe flags (before the largest's grid becomes `points`,
    # flagged safe at every count and beyond)
    largest.regimes = [Regime(n, r.grid, frontier(r.grid), sizes[n])
                       for n, r in zip(counts, results)]
    largest.chosen, largest.grid = chosen, points
    largest.grid_edge = grid_edge(chosen, points, grid)
    pooled = {n: g for n, g in sizes.items() if g > 1}
    largest.rule = (f"per regime: up to n facts (n in {counts}), max forget drop at n among "
                    f"points with retain drop (one-sided 95% upper bound) <= {max_retain_drop} at n; "
                    + (", ".join(f"{n} facts: mean over {g} disjoint groups of {n} validation "
                                 "facts, safe on every group" for n, g in pooled.items())
                       + "; " if pooled else "")
                    + (f"more than {counts[-1]} (up to {extrapolate_to}) facts: safe at every "
                       f"count and at {counts[-1]} facts x {scale:g} (linear to "
                       f"{extrapolate_to} facts), max forget drop at {counts[-1]} facts"
                       if scale > 1 else f"the most facts: safe at every count")
                    + (f"; safe also means at most {budget:.4g} expected gate openings "
                       "per retain fact (cross-fitted on the calibration states at n; scaled "
                       "likewise beyond the largest count; budget = "
                       + (f"{max_retain_drop} nats at 95% over {len(retain)} retain facts, "
                          f"{damage:.3g} nats per opening"
                          if damage is not None and budget < (max_gate_opens or float("inf"))
                          else "tuning.max_retain_gate_opens") + ")"
                       if budget != float("inf") else ""))
    largest.damage_per_opening = damage
    largest.gate_open_budget = None if budget == float("inf") else budget
    largest.seconds = time.monotonic() - start
    largest.flagged = sorted({k for r in results for k in r.flagged})
    return largest


def count_traces(editor: TimeROMEEditor, validation: Sequence[Fact], counts: Sequence[int],
                 site_rules: Sequence[str] = (), groups: Mapping[int, int] | None = None
                 ) -> dict[tuple[int, int], TraceResult]:
    """{(n, k): the trace of group k of n validation facts (validation[k n:(k + 1) n]), as an
    edit of those n facts makes it}, for k below groups[n] (default 1: the first n). A
    fact's trace does not depend on the facts traced with it, so the groups share one
    trace, except where the config traces a sample (`tie_facts` not 0, below the facts of
    that shared trace): such a group is traced on its own, since which facts get restored
    runs, and the layer the others take, depend on the set."""
    groups = groups or {}
    wanted = [(n, k) for n in counts for k in range(groups.get(n, 1))]
    limit = editor.config.tie_facts  # 0: every fact at the backbone's profile layer
    shared = [(n, k) for n, k in wanted if limit is None or limit == 0 or (k + 1) * n <= limit]
    out: dict[tuple[int, int], TraceResult] = {}
    if shared:
        _, trace = editor.trace(validation[:max((k + 1) * n for n, k in shared)], site_rules)
        out.update({(n, k): trace.select(range(k * n, (k + 1) * n)) for n, k in shared})
    for n, k in wanted:
        if (n, k) not in out:
            out[n, k] = editor.trace(validation[k * n:(k + 1) * n], site_rules)[1]
    return out


def gate_open_budget(max_retain_drop: float, damage: float, n_scored: int) -> float:
    """The most expected gate openings per retain fact that keep the retain drop of a sample
    of `n_scored` facts within `max_retain_drop` at 95%: openings on the sample are about
    Poisson with mean x = budget x n_scored, each costing up to `damage` nats, so
    (x + z sqrt(x)) damage / n_scored <= max_retain_drop; solved for x (z = RETAIN_Z)."""
    if damage <= 0 or n_scored < 1:
        return float("inf")
    root = (-RETAIN_Z + math.sqrt(RETAIN_Z ** 2 + 4 * max_retain_drop * n_scored / damage)) / 2
    return root * root / n_scored


def damage_per_opening(points: Sequence[GridPoint]) -> float | None:
    """Nats of mean retain drop per gate opening per retain fact: the largest
    retain_drop / retain_gate_opens among points whose gates opened on the scored retain
    facts (None if none did). With it, an expected number of openings becomes an expected
    retain drop, so the gate budget follows from the retain budget: at most
    max_retain_drop / damage openings per retain fact."""
    ratios = [p.retain_drop / p.retain_gate_opens for p in points
              if p.retain_gate_opens > 0 and p.retain_drop > 0]
    return max(ratios) if ratios else None


def frontier(points: Sequence[GridPoint]) -> list[GridPoint]:
    """The grid's Pareto frontier: points no other point beats on both forget drop (larger)
    and retain drop (smaller), by increasing retain drop."""
    front = []
    for p in sorted(points, key=lambda p: (p.retain_drop, -p.forget_drop)):
        if not front or p.forget_drop > front[-1].forget_drop:
            front.append(p)
    return front


def grid_edge(chosen: GridPoint | None, points: Sequence[GridPoint],
              grid: TuningGrid) -> dict[str, str]:
    """{name: "min"|"max"} for alpha (larger = stronger), q (larger keeps more; q = 1 is its
    ceiling) and lambda (smaller = stronger) when the chosen value is the strongest end of a
    grid of >= 2 values and every point at that end is safe: the constraint did not stop
    the search there."""
    if chosen is None:
        return {}
    edges = {}
    for name, values, side in (("alpha", grid.alphas, "max"), ("q", grid.qs, "max"),
                               ("lam", grid.lams, "min")):
        if len(set(values)) < 2:
            continue
        end = max(values) if side == "max" else min(values)
        if name == "q" and end >= 1.0:  # q = 1 keeps everything: there is nothing past it
            continue
        at_end = [p for p in points if getattr(p, name) == end]
        if getattr(chosen, name) == end and all(p.safe for p in at_end):
            edges[name] = side
    return edges


def write_tuning(result: TuningResult, path: str | Path) -> Path:
    """Strict JSON: a NaN / infinity is an error naming the key path (nothing written)."""
    return write_json_atomic(path, result.to_dict())


def regime_point(by_facts: Mapping[str, Any], n_facts: int) -> Any:
    """The point of the regime a job editing `n_facts` facts applies: the smallest regime
    count >= n_facts, else the largest (`TuningResult.chosen_by_facts`)."""
    counts = sorted(int(k) for k in by_facts)
    pick = next((c for c in counts if c >= n_facts), counts[-1])
    return by_facts[str(pick)]


def read_chosen(path: str | Path, n_facts: int | None = None) -> dict[str, Any] | None:
    """The chosen grid point of a saved tuning ({alpha, lam, q, forget_drop, ...}), or None
    when the tuning found no utility-safe point (a fallback record). With `n_facts`, the
    point of that fact count's regime when the record has regimes (`regime_point`)."""
    import json

    record = json.loads(Path(path).read_text())
    by_facts = record.get("chosen_by_facts") or {}
    chosen = regime_point(by_facts, n_facts) if (n_facts is not None and by_facts) \
        else record.get("chosen")
    if chosen is not None and not isinstance(chosen, dict):
        raise ValueError(f"{path}: 'chosen' is not an object")
    return chosen


def apply_tuning(method_config: dict[str, Any], tuned_path: str | None,
                 keys: Sequence[str], n_facts: int | None = None
                 ) -> tuple[dict[str, Any], str | None]:
    """(`method_config` with the tuning record's chosen values of `keys` on top, a note);
    with `n_facts` (the facts the job puts into one memory), its regime's point.

    No record (`tuned_path` None): the config as it is. A record without a chosen point:
    the config untuned, and a note saying so (it goes into the job's record)."""
    if not tuned_path:
        return dict(method_config), None
    chosen = read_chosen(tuned_path, n_facts)
    if chosen is None:
        return dict(method_config), (f"{tuned_path}: tuning found no utility-safe point; "
                                     "config untuned")
    return {**method_config,
            **{k: chosen[k] for k in keys if chosen.get(k) is not None}}, None


def read_tuned_config(path: str | Path, base: TimeROMEConfig | None = None) -> TimeROMEConfig:
    """The config at a saved tuning's chosen point (on top of `base` if given)."""
    import json

    chosen = read_chosen(path)
    if chosen is None:
        raise ValueError(f"{path}: tuning found no utility-safe operating point")
    start = base if base is not None else TimeROMEConfig.from_dict(
        json.loads(Path(path).read_text())["base_config"])
    return start.with_overrides(**tuned_values(chosen))


def tuned_values(point: Mapping[str, Any]) -> dict[str, Any]:
    """{key: value} of TimeROME-DLM's tunable keys (`MethodInfo.tunable_keys`) that `point`
    (a grid point or a saved chosen point) sets; a key it leaves None keeps the config's."""
    from harness.methods.registry import method_info

    return {k: point[k] for k in method_info("timerome").tunable_keys
            if point.get(k) is not None}
