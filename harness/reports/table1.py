"""Table 1: rows backbone x method, rendered as Markdown, LaTeX (booktabs) and CSV.

Speedup is measured against the *strongest converged gradient baseline* of the same
backbone: among the gradient (training-time) baselines that converged and did not collapse,
the one with the largest forget log-prob drop. Its edit wall-clock divided by a row's edit
wall-clock is that row's speedup; its analytic edit FLOPs (forward + backward,
harness/compute.py) divided by the row's are the row's FLOP speedup.

Each backbone's rows open with its reference rows (registry kind "reference",
harness/methods/reference.py): "finetuned (no edit)" and, where the backbone has a retain
model, "retain (exact unlearning)", with every score column; their edit time, memory, FLOP,
speedup and convergence cells are "—" (nothing was edited), and a reference is never the
speedup baseline. "ROUGE-L forget − retain" is a row's forget ROUGE-L minus the retain
model's on the same backbone (the reference for forget ROUGE-L: on a corpus whose answers
restate their questions an absolute bar says little). The notes say how many facts each
statistic rests on, read from the records.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import pandas as pd

from harness.methods.registry import method_info, methods_of_kind, reference_methods
from harness.reports.render import NOT_APPLICABLE, Table

MIB = 1024 * 1024

NUMERIC = ("forget_logp_before", "forget_logp_after", "retain_logp_before", "retain_logp_after",
           "forget_rougeL_after", "retain_rougeL_after", "forget_quality", "model_utility",
           "wall_clock_s", "peak_mem_bytes", "inference_mem_bytes", "extra_mem_bytes",
           "edit_flops", "statistics_s")
FLAGS = ("converged", "collapsed")
LOGPS = ("forget_logp_before", "forget_logp_after", "retain_logp_before", "retain_logp_after")

# What a status-ok record must have to be a row of Table 1 (harness.reports.inputs).
TABLE1_NEEDS = (*LOGPS, "wall_clock_s")


@dataclass(frozen=True)
class Column:
    key: str  # column of the summary frame
    title: str  # Markdown header
    latex: str  # LaTeX header
    fmt: Callable[[object], str]


def _num(digits: int) -> Callable[[object], str]:
    def fmt(value: object) -> str:
        return "--" if _missing(value) else f"{float(value):.{digits}f}"  # type: ignore[arg-type]
    return fmt


def _sig(value: object) -> str:
    return "--" if _missing(value) else f"{float(value):.2g}"  # type: ignore[arg-type]


def _mib(value: object) -> str:
    return "--" if _missing(value) else f"{float(value) / MIB:.1f}"  # type: ignore[arg-type]


def _speedup(value: object) -> str:
    return "--" if _missing(value) else f"{float(value):.1f}x"  # type: ignore[arg-type]


def _signed(digits: int) -> Callable[[object], str]:
    def fmt(value: object) -> str:
        return "--" if _missing(value) else f"{float(value):+.{digits}f}"  # type: ignore[arg-type]
    return fmt


def _flag(value: object) -> str:
    if _missing(value):
        return "--"
    return "yes" if bool(value) else "no"


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


COLUMNS: tuple[Column, ...] = (
    Column("backbone", "Backbone", "Backbone", str),
    Column("method", "Method", "Method", str),
    Column("forget_logp_before", "Forget logp before", "$\\log p_f$ before", _num(2)),
    Column("forget_logp_after", "Forget logp after", "$\\log p_f$ after", _num(2)),
    Column("forget_delta", "Δ forget", "$\\Delta_f$", _num(2)),
    Column("retain_delta", "Δ retain", "$\\Delta_r$", _num(2)),
    Column("forget_rougeL_after", "ROUGE-L forget", "R-L$_f$", _num(3)),
    Column("forget_rougeL_vs_retain", "ROUGE-L forget − retain", "R-L$_f$ $-$ retain",
           _signed(3)),
    Column("retain_rougeL_after", "ROUGE-L retain", "R-L$_r$", _num(3)),
    Column("forget_quality", "Forget quality", "FQ", _sig),
    Column("model_utility", "Model utility", "MU", _num(3)),
    Column("wall_clock_s", "Wall-clock (s)", "Time (s)", _num(2)),
    Column("statistics_s", "One-time stats (s)", "Stats (s)", _num(2)),
    Column("peak_mem_bytes", "Peak mem (MiB)", "Peak (MiB)", _mib),
    Column("extra_mem_bytes", "Extra mem (MiB)", "Extra (MiB)", _mib),
    Column("edit_flops", "Edit FLOPs", "FLOPs", _sig),
    Column("speedup", "Speedup", "Speedup", _speedup),
    Column("flop_speedup", "FLOP speedup", "FLOP sp.", _speedup),
    Column("converged", "Converged", "Conv.", _flag),
    Column("collapsed", "Collapsed", "Coll.", _flag),
)


# The columns of a row's edit (its time, memory, FLOPs, speedups, convergence): "—" on a
# reference row, which edits nothing.
EDIT_COLUMNS = ("wall_clock_s", "statistics_s", "peak_mem_bytes", "extra_mem_bytes",
                "edit_flops", "speedup", "flop_speedup", "converged", "collapsed")


def is_reference(method: str) -> bool:
    """Whether `method` names a reference row (registry kind "reference"); a name the
    registry does not know (records of a method registered elsewhere) is a method."""
    try:
        return method_info(method).kind == "reference"
    except KeyError:
        return False


def row_label(method: str) -> str:
    """How the table names the row of `method` (MethodInfo.row_label; else the name)."""
    try:
        return method_info(method).row_label
    except KeyError:
        return method


def _is_retain_reference(method: str) -> bool:
    try:
        info = method_info(method)
    except KeyError:
        return False
    return info.kind == "reference" and info.on_retain_model


def _cell(col: Column, rec: dict) -> str:
    if col.key == "method":
        return row_label(str(rec["method"]))
    if rec.get("reference") and col.key in EDIT_COLUMNS:
        return NOT_APPLICABLE
    return col.fmt(rec[col.key])


@dataclass
class Table1:
    summary: pd.DataFrame  # one row per (backbone, method), numeric
    strongest: dict[str, str | None]  # backbone -> strongest converged gradient baseline
    gradient_baselines: tuple[str, ...]
    notes: list[str] = field(default_factory=list)
    # notes on the reference rows and on the facts behind each statistic (after the
    # per-backbone baseline notes, before `notes`)
    reference_notes: list[str] = field(default_factory=list)

    def table(self) -> Table:
        rows = [[_cell(col, rec) for col in COLUMNS]
                for rec in self.summary.to_dict("records")]
        return Table([c.title for c in COLUMNS], [c.latex for c in COLUMNS], rows,
                     self.footnotes(), n_text_columns=2)

    def footnotes(self) -> list[str]:
        names = ", ".join(self.gradient_baselines) or "none"
        notes = [
            "Log-probabilities: mean nats per sample of the forget / retain-eval facts; "
            "Δ = after − before.",
            "Speedup = edit wall-clock of the strongest converged gradient baseline / the "
            "row's edit wall-clock, where the strongest is the gradient baseline "
            f"({names}) with the largest forget log-prob drop among those that converged and "
            "did not collapse on the same backbone. FLOP speedup: the same ratio of analytic "
            "edit FLOPs, forward + backward (docs/measurements/compute_accounting.md).",
            "Wall-clock = the method's own edit time: the harness's bookkeeping inside an "
            "edit (undo copies, collapse guards, report scoring) is left out "
            "(docs/measurements/edit_timing_rules.md). One-time stats = per-backbone "
            "statistics that do not depend on the forget set (retain key covariance, gate "
            "calibration, TimeROME-DLM's TIE profile over retain facts, which fixes its edit "
            "layer), computed once by the backbone_statistics job and loaded by every "
            "edit; not part of the wall-clock or the speedup (– : the method has none).",
            "Extra mem = peak memory during the edit minus peak memory of inference "
            "(scoring) on the loaded model.",
        ]
        for backbone, name in self.strongest.items():
            notes.append(f"{backbone}: strongest converged gradient baseline = "
                         f"{name if name else 'none (no converged, non-collapsed run)'}.")
        return notes + self.reference_notes + self.notes


def summarise(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean over seeds per (backbone, method) of the status-ok runs of a runs frame
    (harness.results.aggregate.runs_frame), in first-appearance order; adds deltas.
    A (backbone, method) converged when every seed did, collapsed when any seed did."""
    frame = runs[runs["status"] == "ok"].copy()
    for col in NUMERIC:  # None (no value) -> NaN; a column no record has (older records) too
        frame[col] = frame[col].astype(float) if col in frame.columns else float("nan")
    for col in FLAGS:
        frame[col] = frame[col].map(_flag_value)
    keys = ["backbone", "method"]
    order = frame[keys].drop_duplicates()
    numeric = frame.groupby(keys, sort=False)[list(NUMERIC)].mean()
    flags = frame.groupby(keys, sort=False).agg(
        converged=("converged", lambda s: bool(all(v is True for v in s))),
        collapsed=("collapsed", lambda s: bool(any(v is True for v in s))),
        seeds=("seed", "nunique"))
    out = order.merge(numeric.reset_index(), on=keys).merge(flags.reset_index(), on=keys)
    out["forget_delta"] = out["forget_logp_after"] - out["forget_logp_before"]
    out["retain_delta"] = out["retain_logp_after"] - out["retain_logp_before"]
    return out.reset_index(drop=True)


def _flag_value(value: object) -> bool | None:
    """A record flag as a Python bool, or None (no value). Records are schema-checked, so
    anything else is a bug (TypeError), never read as False."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if hasattr(value, "item"):
        value = value.item()  # numpy bool (a frame column with no missing value)
    if isinstance(value, bool):
        return value
    raise TypeError(f"not a record flag (true / false / null): {value!r}")


def gradient_baselines(names: Sequence[str] | None = None) -> tuple[str, ...]:
    """The gradient (training-time) baselines: `names` as given, or every registered
    method of kind "gradient" (harness.methods.registry) when None."""
    return tuple(methods_of_kind("gradient")) if names is None else tuple(names)


def strongest_baseline(rows: pd.DataFrame, gradient_baselines: Sequence[str]) -> pd.Series | None:
    """The converged, non-collapsed gradient baseline with the largest forget drop."""
    candidates = rows[rows["method"].isin(gradient_baselines) & rows["converged"].eq(True)
                      & ~rows["collapsed"].eq(True) & rows["forget_delta"].notna()
                      & rows["wall_clock_s"].notna()]
    if candidates.empty:
        return None
    return candidates.loc[candidates["forget_delta"].idxmin()]  # most negative = largest drop


def order_rows(summary: pd.DataFrame, backbones: Sequence[str] | None,
               methods: Sequence[str] | None) -> pd.DataFrame:
    """Rows in config order (backbones, then methods); each backbone's reference rows first
    (in the registry's order); unlisted names go last, sorted."""
    def rank(order: Sequence[str] | None, column: str) -> pd.Series:
        if not order:
            return summary[column].rank(method="dense")
        pos = {name: i for i, name in enumerate(order)}
        return summary[column].map(lambda v: pos.get(v, len(pos)))

    references = reference_methods()
    first = summary["method"].map(lambda m: references.index(m) if m in references
                                  else len(references))  # reference rows open each backbone
    keyed = summary.assign(_b=rank(backbones, "backbone"), _r=first,
                           _m=rank(methods, "method"))
    keyed = keyed.sort_values(["_b", "_r", "_m", "backbone", "method"], kind="stable")
    return keyed.drop(columns=["_b", "_r", "_m"]).reset_index(drop=True)


def build_table1(runs: pd.DataFrame,
                 baselines: Sequence[str] | None = None,
                 backbones: Sequence[str] | None = None,
                 methods: Sequence[str] | None = None) -> Table1:
    """Table 1 of `runs`; `baselines`: the gradient baselines (None: the registry's)."""
    baselines = gradient_baselines(baselines)
    summary = order_rows(summarise(runs), backbones, methods)
    add_reference_columns(summary)
    strongest = add_speedups(summary, baselines)
    return Table1(summary, strongest, baselines, notes=excluded_run_notes(runs),
                  reference_notes=reference_notes(runs, summary))


def add_reference_columns(summary: pd.DataFrame) -> None:
    """Add (in place) `reference` (the row is a reference row) and `forget_rougeL_vs_retain`
    (the row's forget ROUGE-L minus that of its backbone's retain-model row; NaN where the
    backbone has none), and empty a reference row's EDIT_COLUMNS (it edits nothing)."""
    summary["reference"] = summary["method"].map(is_reference).astype(bool)
    retain = summary[summary["method"].map(_is_retain_reference)]
    retain_rouge = dict(zip(retain["backbone"], retain["forget_rougeL_after"]))
    summary["forget_rougeL_vs_retain"] = summary["forget_rougeL_after"] - summary[
        "backbone"].map(lambda b: retain_rouge.get(b, float("nan"))).astype(float)
    refs = summary["reference"]
    for col in (c for c in EDIT_COLUMNS if c in summary.columns):
        if col in FLAGS:  # true / false / None
            summary[col] = summary[col].astype(object)
            summary.loc[refs, col] = None
        else:
            summary.loc[refs, col] = float("nan")


def add_speedups(summary: pd.DataFrame, baselines: Sequence[str]) -> dict[str, str | None]:
    """Fill the `SPEEDUPS` columns of a summary frame (in place), per backbone against its
    strongest converged gradient baseline; returns backbone -> that baseline (or None).
    A reference row (registry kind "reference") gets none: it edits nothing."""
    for ratio in SPEEDUPS:
        summary[ratio] = float("nan")
    strongest: dict[str, str | None] = {}
    for backbone, rows in summary.groupby("backbone", sort=False):
        best = strongest_baseline(rows, baselines)
        strongest[str(backbone)] = None if best is None else str(best["method"])
        if best is not None:
            idx = rows.index[~rows["method"].map(is_reference).astype(bool)]
            for ratio, cost in SPEEDUPS.items():
                summary.loc[idx, ratio] = float(best[cost]) / summary.loc[idx, cost]
    return strongest


# Each speedup column: the strongest converged gradient baseline's cost / the row's cost.
SPEEDUPS = {"speedup": "wall_clock_s", "flop_speedup": "edit_flops"}


def excluded_run_notes(runs: pd.DataFrame) -> list[str]:
    """One footnote per (backbone, method) left out of the table because no run was `ok`
    (e.g. `not_applicable`: a weight edit on a parameter-free hook point; `oom`)."""
    if "status" not in runs.columns:
        return []
    status = runs["status"].fillna("ok")
    ok_pairs = set(map(tuple, runs.loc[status == "ok", ["backbone", "method"]].values))
    notes = []
    for (backbone, method), rows in runs[status != "ok"].groupby(["backbone", "method"],
                                                                 sort=False):
        if (backbone, method) in ok_pairs:
            continue
        row = rows.iloc[0]
        error = row.get("error") if "error" in rows.columns else None
        reason = f": {error}" if isinstance(error, str) and error else ""
        notes.append(f"{backbone} / {method}: not in the table, run status "
                     f"'{row['status']}'{reason}")
    return notes


def _counts(frame: pd.DataFrame, column: str) -> str | None:
    """The distinct values of `column` over `frame` as text ("10", or "10, 40" when rows
    differ), or None when no row recorded one."""
    if column not in frame.columns:
        return None
    values = [v for v in frame[column].tolist() if not _missing(v)]
    if not values:
        return None
    distinct = {int(v) if isinstance(v, float) and v.is_integer() else v for v in values}
    try:
        ordered = sorted(distinct)
    except TypeError:  # numbers and text mixed
        ordered = sorted(distinct, key=str)
    return ", ".join(str(v) for v in ordered)


NOT_RECORDED = "? (not in the records)"


def reference_notes(runs: pd.DataFrame, summary: pd.DataFrame) -> list[str]:
    """The notes on the reference rows (when the table has one), on the ROUGE-L column
    relative to the retain model, and on how many facts each statistic rests on, read from
    the status-ok records of `runs` (n_facts, n_retain_eval and the fact counts
    harness.reports.inputs.load_runs adds from each record)."""
    ok = runs[runs["status"] == "ok"] if "status" in runs.columns else runs
    fq_rows = ok[ok["forget_quality"].notna()] if "forget_quality" in ok.columns else ok
    forget = _counts(ok, "n_facts") or NOT_RECORDED
    splits = _counts(ok, "split") or "split not recorded"
    retain = _counts(ok, "n_retain_eval") or NOT_RECORDED
    fq = _counts(fq_rows, "n_forget_quality") or NOT_RECORDED
    mu = _counts(ok, "n_model_utility") or NOT_RECORDED
    notes = []
    if summary["reference"].any():
        finetuned, retain_row = (row_label(m) for m in ("no_edit", "retain_model"))
        notes.append(
            f"Reference rows (no method): '{finetuned}' is the fine-tuned model scored as it "
            f"is (after = before); '{retain_row}' is the model fine-tuned without the forget "
            "split (only backbones with a retain model: config retain_model / "
            "retain_checkpoint), its 'before' the fine-tuned model, so its Δ forget is what "
            "exact unlearning removes and its forget quality is 1 by definition. They edit "
            f"nothing: '{NOT_APPLICABLE}' in the time, memory, FLOP, speedup and convergence "
            "columns, and never the speedup baseline.")
    notes.append(
        "ROUGE-L forget − retain = the row's forget ROUGE-L minus the retain model's on the "
        "same backbone (0 for the retain row; '--' without a retain model): the reference "
        "for forget ROUGE-L, which stays high on a corpus whose answers restate their "
        "questions even for a model that never saw the facts.")
    notes.append(
        f"Facts behind each statistic: forget log-prob, Δ forget and ROUGE-L forget: {forget} "
        f"forget facts ({splits}); Δ retain and ROUGE-L retain: {retain} scored retain facts "
        "(none of them a fact a method trains on); forget quality: KS test of the row "
        "model's truth ratios against the retain model's on the forget split's perturbed "
        f"set, {fq} per model (with few ratios the p-value takes few distinct values); "
        f"model utility: harmonic mean of the statistics of its sets (facts in each: {mu}).")
    return notes + missing_reference_notes(summary)


def missing_reference_notes(summary: pd.DataFrame) -> list[str]:
    """One note per backbone whose reference row is not among the records: the fine-tuned
    row on every backbone, the retain row where a row has a forget quality (so the backbone
    has a retain model)."""
    notes = []
    for backbone, rows in summary.groupby("backbone", sort=False):
        has_retain_model = rows["forget_quality"].notna().any()
        for method in reference_methods():
            if method in set(rows["method"]):
                continue
            if method_info(method).on_retain_model and not has_retain_model:
                continue
            notes.append(f"{backbone}: no '{row_label(method)}' row among the records "
                         "(workflow rule run_reference makes it).")
    return notes


CSV_COLUMNS = [c.key for c in COLUMNS] + ["retain_logp_before", "retain_logp_after",
                                          "inference_mem_bytes", "seeds", "reference"]


def table1_csv(table: Table1) -> str:
    return table.summary.reindex(columns=CSV_COLUMNS).to_csv(index=False)
