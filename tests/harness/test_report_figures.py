"""Figures: PNG + PDF written, log-log wall-clock axes labelled with units, legend present."""

from __future__ import annotations

from harness_records import make_record

from harness.reports.figures import scaling_figures, sequential_figure, wallclock_figure
from harness.results.aggregate import runs_frame


def scaling_runs():
    return runs_frame([make_record(method=m, n_facts=n, wall=w * n ** p, experiment="scaling")
                       for m, w, p in (("timerome", 0.5, 0.5), ("gradient_ascent", 2.0, 1.0))
                       for n in (1, 10, 100)])


def test_wallclock_figure_is_log_log_with_units_and_linear_reference():
    fig = wallclock_figure(scaling_runs())
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert ax.get_ylabel() == "edit wall-clock (s)"
    assert ax.get_xlabel() == "facts forgotten (count)"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert {"timerome", "gradient_ascent", "linear scaling"} <= set(labels)


def test_scaling_figures_write_png_and_pdf(tmp_path):
    paths = scaling_figures(scaling_runs(), tmp_path)
    names = sorted(p.name for p in paths)
    assert names == sorted(f"{n}.{e}" for n in ("scaling_delta", "scaling_memory",
                                                  "scaling_wallclock") for e in ("png", "pdf"))
    assert all(p.stat().st_size > 1000 for p in paths)


def test_sequential_figure_has_retain_budget_line():
    rec = make_record(experiment="sequential")
    rec["curve"] = [{"n_inserted": i, "retain_delta": -0.01 * i, "forget_delta": -5.0 * i,
                     "insert_s": 0.1} for i in range(1, 6)]
    fig = sequential_figure([rec])
    retain_ax = fig.axes[0]
    assert any(line.get_ydata()[0] == -1.0 for line in retain_ax.get_lines())
    assert "nats/sample" in retain_ax.get_ylabel()
