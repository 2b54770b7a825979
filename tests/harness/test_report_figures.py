"""Figures: PNG + PDF written, log-log wall-clock axes labelled with units, legend present."""

from __future__ import annotations

import matplotlib.image as mpimg
import numpy as np
from harness_records import make_record, typed

from harness.reports.figures import (SCALING_FIGURES, scaling_figures, sequential_figure,
                                     wallclock_figure)
from harness.results.aggregate import runs_frame


def scaling_runs():
    methods = (("timerome", 0.5, 0.5), ("gradient_ascent", 2.0, 1.0))
    return runs_frame(typed([make_record(method=m, n_facts=n, wall=w * n ** p,
                                         experiment="scaling")
                             for m, w, p in methods for n in (1, 10, 100)]))


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
    for path in paths:
        if path.suffix == ".pdf":
            assert path.read_bytes()[:5] == b"%PDF-"
            continue
        pixels = mpimg.imread(path)
        assert pixels.shape[0] > 200 and pixels.shape[1] > 300  # a drawn page, not a stub
        assert float(np.ptp(pixels[..., :3])) > 0.5  # ink on white: something was drawn


def distinct_runs():
    """Two methods whose memory and log-prob changes differ, so each curve is identifiable."""
    mib = 2**20
    return runs_frame(typed([make_record(method=m, n_facts=n, wall=1.0,
                                         peak=(100 + 10 * i + n) * mib, inference=100 * mib,
                                         forget=(-10.0, -10.0 - (i + 1) * n),
                                         retain=(-8.0, -8.0 - 0.1 * (i + 1)),
                                         experiment="scaling")
                             for i, m in enumerate(("timerome", "gradient_ascent"))
                             for n in (1, 10, 100)]))


def curves(ax) -> set[tuple[tuple[float, ...], tuple[float, ...]]]:
    """The (x, y) data of every drawn line with points (legend proxies have none)."""
    return {(tuple(float(x) for x in line.get_xdata()),
             tuple(round(float(y), 6) for y in line.get_ydata()))
            for line in ax.get_lines() if len(line.get_xdata()) == 3}


def test_scaling_figures_plot_each_methods_values():
    runs, n = distinct_runs(), (1.0, 10.0, 100.0)
    memory = SCALING_FIGURES["scaling_memory"](runs)
    peak, extra = memory.axes
    assert curves(peak) == {(n, (101.0, 110.0, 200.0)), (n, (111.0, 120.0, 210.0))}
    assert curves(extra) == {(n, (1.0, 10.0, 100.0)), (n, (11.0, 20.0, 110.0))}
    assert peak.get_ylabel() == "peak memory (MiB)"
    delta = SCALING_FIGURES["scaling_delta"](runs)
    forget_ax, retain_ax = delta.axes
    assert curves(forget_ax) == {(n, (-1.0, -10.0, -100.0)), (n, (-2.0, -20.0, -200.0))}
    assert curves(retain_ax) == {(n, (-0.1,) * 3), (n, (-0.2,) * 3)}
    assert forget_ax.get_xscale() == "log" and "nats/sample" in forget_ax.get_ylabel()


def test_sequential_figure_has_retain_budget_line():
    rec = make_record(experiment="sequential")
    rec["curve"] = [{"n_inserted": i, "retain_delta": -0.01 * i, "forget_delta": -5.0 * i,
                     "insert_s": 0.1} for i in range(1, 6)]
    fig = sequential_figure(typed([rec]))
    retain_ax = fig.axes[0]
    assert any(line.get_ydata()[0] == -1.0 for line in retain_ax.get_lines())
    assert "nats/sample" in retain_ax.get_ylabel()
