"""Figures: scaling with fact count and the sequential-insertion retain curve (PNG + PDF)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from matplotlib.ticker import NullFormatter, ScalarFormatter  # noqa: E402

import jsonschema

from harness.reports.inputs import InputError, ok_rows
from harness.reports.table1 import LOGPS
from harness.results.record import Record

MIB = 1024 * 1024

# What a status-ok record must have to be plotted (harness.reports.inputs).
SCALING_NEEDS = (*LOGPS, "wall_clock_s")
PLOTTED = ("wall_clock_s", "peak_mem_bytes", "extra_mem_bytes", *LOGPS)


def _plain_log_x(*axes: plt.Axes) -> None:
    """Log x axis labelled with plain fact counts (1, 10, 100) instead of 10^k."""
    for ax in axes:
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())


def save(fig: plt.Figure, stem: str | Path) -> list[Path]:
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".png"), stem.with_suffix(".pdf")]
    for path in paths:
        tmp = path.with_name(f".{path.name}.tmp{path.suffix}")
        fig.savefig(tmp, dpi=150, bbox_inches="tight")
        tmp.replace(path)
    plt.close(fig)
    return paths


def _ok(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean of the plotted measurements of the status-ok runs per (method, n_facts)."""
    frame = ok_rows(runs).astype({name: float for name in PLOTTED})  # None -> NaN
    return frame.groupby(["method", "n_facts"], as_index=False)[list(PLOTTED)].mean()


def wallclock_figure(runs: pd.DataFrame) -> plt.Figure:
    data = _ok(runs)
    fig, ax = plt.subplots(figsize=(6, 4))
    sns.lineplot(data=data, x="n_facts", y="wall_clock_s", hue="method", marker="o", ax=ax)
    if not data.empty:
        n = np.array(sorted(data["n_facts"].unique()), dtype=float)
        first = data[data["n_facts"] == n[0]]["wall_clock_s"].median()
        ax.plot(n, first * n / n[0], "k--", lw=1, label="linear scaling")
    ax.set(xscale="log", yscale="log", xlabel="facts forgotten (count)",
           ylabel="edit wall-clock (s)", title="Edit time vs number of facts")
    _plain_log_x(ax)
    ax.legend(title="method")
    return fig


def memory_figure(runs: pd.DataFrame) -> plt.Figure:
    data = _ok(runs).assign(peak_mib=lambda d: d["peak_mem_bytes"] / MIB,
                            extra_mib=lambda d: d["extra_mem_bytes"] / MIB)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    sns.lineplot(data=data, x="n_facts", y="peak_mib", hue="method", marker="o", ax=axes[0])
    sns.lineplot(data=data, x="n_facts", y="extra_mib", hue="method", marker="o", ax=axes[1])
    axes[0].set(xscale="log", xlabel="facts forgotten (count)", ylabel="peak memory (MiB)",
                title="Peak memory during the edit")
    axes[1].set(xscale="log", xlabel="facts forgotten (count)",
                ylabel="extra memory over inference (MiB)", title="Extra memory over inference")
    _plain_log_x(*axes)
    return fig


def delta_figure(runs: pd.DataFrame) -> plt.Figure:
    data = _ok(runs).assign(
        forget_delta=lambda d: d["forget_logp_after"] - d["forget_logp_before"],
        retain_delta=lambda d: d["retain_logp_after"] - d["retain_logp_before"])
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    sns.lineplot(data=data, x="n_facts", y="forget_delta", hue="method", marker="o", ax=axes[0])
    sns.lineplot(data=data, x="n_facts", y="retain_delta", hue="method", marker="o", ax=axes[1])
    axes[0].set(xscale="log", xlabel="facts forgotten (count)",
                ylabel="Δ forget log-prob (nats/sample)", title="Forget set")
    axes[1].set(xscale="log", xlabel="facts forgotten (count)",
                ylabel="Δ retain log-prob (nats/sample)", title="Retain sample")
    axes[1].axhline(-1.0, color="grey", ls=":", lw=1, label="−1 nat")
    axes[1].legend(title="method")
    _plain_log_x(*axes)
    return fig


SCALING_FIGURES = {"scaling_wallclock": wallclock_figure, "scaling_memory": memory_figure,
                   "scaling_delta": delta_figure}


def scaling_figures(runs: pd.DataFrame, out_dir: str | Path) -> list[Path]:
    paths: list[Path] = []
    for name, make in SCALING_FIGURES.items():
        paths += save(make(runs), Path(out_dir) / name)
    return paths


CURVE_SCHEMA = {
    "type": "array", "minItems": 1,
    "items": {"type": "object", "required": ["n_inserted", "retain_delta", "forget_delta"],
              "properties": {"n_inserted": {"type": "integer", "minimum": 1},
                             "retain_delta": {"type": "number"},
                             "forget_delta": {"type": "number"}}},
}


def check_sequential(record: Record, source: str) -> None:
    """InputError naming `source` unless `record` has a usable insertion curve (records are
    read by harness.results.store.load_record, so the rest of it is schema-valid and finite)."""
    if record.curve is None:
        raise InputError(f"{source}: no 'curve' (a sequential record has one)")
    errors = sorted(jsonschema.Draft202012Validator(CURVE_SCHEMA).iter_errors(record.curve),
                    key=lambda e: list(e.path))
    if errors:
        where = "/".join(["curve", *(str(p) for p in errors[0].path)])
        raise InputError(f"{source}: invalid sequential record at '{where}': "
                         f"{errors[0].message}")


def sequential_figure(curves: Sequence[Record]) -> plt.Figure:
    """`curves`: sequential records (each with a `curve` list of per-insertion points).
    Left: retain log-prob change (with the 1-nat budget); right: forget log-prob change
    of the facts inserted so far."""
    from matplotlib.ticker import MaxNLocator

    fig, (ax_r, ax_f) = plt.subplots(1, 2, figsize=(10, 4))
    for rec in curves:
        points = pd.DataFrame(rec.curve)
        label = f"{rec.backbone} (seed {rec.seed})"
        ax_r.plot(points["n_inserted"], points["retain_delta"], marker=".", label=label)
        ax_f.plot(points["n_inserted"], points["forget_delta"], marker=".", label=label)
    ax_r.axhline(-1.0, color="grey", ls=":", lw=1, label="−1 nat budget")
    ax_r.set(xlabel="facts inserted one at a time (count)",
             ylabel="Δ retain log-prob vs unedited (nats/sample)",
             title="Sequential insertion: retain sample")
    ax_f.set(xlabel="facts inserted one at a time (count)",
             ylabel="Δ forget log-prob of inserted facts (nats/sample)",
             title="Sequential insertion: facts inserted so far")
    for ax in (ax_r, ax_f):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend()
    return fig
