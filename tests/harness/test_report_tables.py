"""Table 1 renderer: golden Markdown / LaTeX on a known small input; speedup definition."""

from __future__ import annotations

import math

import pytest
from harness_records import make_record, typed

from harness.reports.table1 import build_table1, table1_csv
from harness.results.aggregate import runs_frame

GOLDEN_ROWS_MD = """\
| Backbone | Method | Forget logp before | Forget logp after | Δ forget | Δ retain | ROUGE-L forget | ROUGE-L forget − retain | ROUGE-L retain | Forget quality | Model utility | Wall-clock (s) | One-time stats (s) | Peak mem (MiB) | Extra mem (MiB) | Edit FLOPs | Speedup | FLOP speedup | Converged | Collapsed |
| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |
| bb | timerome | -10.00 | -60.00 | -50.00 | -0.50 | 0.250 | -- | 0.800 | 0.012 | 0.500 | 2.00 | 0.75 | 101.0 | 1.0 | 1e+09 | 8.0x | 30.0x | yes | no |
| bb | graddiff | -10.00 | -50.00 | -40.00 | -0.50 | 0.250 | -- | 0.800 | 0.012 | 0.500 | 16.00 | -- | 250.0 | 150.0 | 3e+10 | 1.0x | 1.0x | yes | no |
| bb | npo | -10.00 | -30.00 | -20.00 | -0.50 | 0.250 | -- | 0.800 | 0.012 | 0.500 | 8.00 | -- | 240.0 | 140.0 | -- | 2.0x | -- | yes | yes |
"""

GOLDEN_LATEX_BODY = """\
\\begin{tabular}{llrrrrrrrrrrrrrrrrrr}
\\toprule
Backbone & Method & $\\log p_f$ before & $\\log p_f$ after & $\\Delta_f$ & $\\Delta_r$ & R-L$_f$ & R-L$_f$ $-$ retain & R-L$_r$ & FQ & MU & Time (s) & Stats (s) & Peak (MiB) & Extra (MiB) & FLOPs & Speedup & FLOP sp. & Conv. & Coll. \\\\
\\midrule
bb & timerome & -10.00 & -60.00 & -50.00 & -0.50 & 0.250 & -- & 0.800 & 0.012 & 0.500 & 2.00 & 0.75 & 101.0 & 1.0 & 1e+09 & 8.0x & 30.0x & yes & no \\\\
bb & graddiff & -10.00 & -50.00 & -40.00 & -0.50 & 0.250 & -- & 0.800 & 0.012 & 0.500 & 16.00 & -- & 250.0 & 150.0 & 3e+10 & 1.0x & 1.0x & yes & no \\\\
bb & npo & -10.00 & -30.00 & -20.00 & -0.50 & 0.250 & -- & 0.800 & 0.012 & 0.500 & 8.00 & -- & 240.0 & 140.0 & -- & 2.0x & -- & yes & yes \\\\
\\bottomrule
\\end{tabular}
"""


def small_table():
    records = [
        {**make_record(method="timerome", wall=2.0, forget=(-10.0, -60.0), peak=101 * 2**20),
         "edit_flops": 1e9, "statistics_s": 0.75},
        {**make_record(method="graddiff", wall=16.0, forget=(-10.0, -50.0), peak=250 * 2**20),
         "edit_flops": 3e10},
        # npo collapsed: it may not be the reference even though it is a gradient baseline.
        # It has no FLOP count (a record written before compute accounting): "--".
        make_record(method="npo", wall=8.0, forget=(-10.0, -30.0), peak=240 * 2**20,
                    collapsed=True),
    ]
    return build_table1(runs_frame(typed(records)), methods=["timerome", "graddiff", "npo"])


def test_markdown_matches_golden():
    md = small_table().table().markdown()
    assert md.startswith(GOLDEN_ROWS_MD)
    assert "5. bb: strongest converged gradient baseline = graddiff." in md
    assert "largest forget log-prob drop among those that converged and did not collapse" in md


def test_latex_matches_golden_booktabs():
    tex = small_table().table().latex()
    assert tex.startswith(GOLDEN_LATEX_BODY)
    # the registry's gradient methods (no list given), escaped for LaTeX
    assert "graddiff, gradient\\_ascent, npo" in tex


def test_strongest_is_largest_converged_non_collapsed_drop(planted_records):
    table = build_table1(runs_frame(typed(planted_records)))
    # gradient_ascent has the largest drop but collapsed; graddiff is the strongest.
    assert table.strongest == {"bb": "graddiff"}
    speed = dict(zip(table.summary["method"], table.summary["speedup"]))
    assert math.isclose(speed["timerome"], 16.0 / 2.0)
    assert math.isclose(speed["rome"], 16.0 / 4.0)


def test_flop_speedup_uses_the_speedup_reference_and_its_flops():
    """FLOP speedup = the strongest converged baseline's FLOPs / the row's, with the same
    reference as the wall-clock speedup (here graddiff, not the faster-converging npo)."""
    records = [{**make_record(method="timerome", wall=2.0), "edit_flops": 4e8},
               {**make_record(method="graddiff", wall=16.0, forget=(-10.0, -50.0)),
                "edit_flops": 2e10},
               {**make_record(method="npo", wall=1.0, forget=(-10.0, -20.0)),
                "edit_flops": 1e8}]
    table = build_table1(runs_frame(typed(records)))
    assert table.strongest == {"bb": "graddiff"}
    flop = dict(zip(table.summary["method"], table.summary["flop_speedup"]))
    assert flop == pytest.approx({"timerome": 50.0, "graddiff": 1.0, "npo": 200.0})
    assert "edit_flops" in table1_csv(table).splitlines()[0].split(",")


def test_no_converged_baseline_gives_no_speedup():
    records = [make_record(method="timerome", wall=2.0),
               make_record(method="npo", wall=8.0, converged=False)]
    table = build_table1(runs_frame(typed(records)))
    assert table.strongest == {"bb": None}
    assert table.summary["speedup"].isna().all()
    assert "none (no converged, non-collapsed run)" in table.table().markdown()


def test_seeds_are_averaged_and_csv_has_numbers():
    records = [make_record(method="timerome", wall=1.0, seed=0),
               make_record(method="timerome", wall=3.0, seed=1)]
    table = build_table1(runs_frame(typed(records)))
    assert len(table.summary) == 1
    assert math.isclose(table.summary.loc[0, "wall_clock_s"], 2.0)
    csv = table1_csv(table)
    assert csv.splitlines()[0].startswith("backbone,method,forget_logp_before")
    assert ",2.0," in csv.splitlines()[1]


def test_run_left_out_of_the_table_is_named_in_a_footnote():
    skipped = {**make_record(method="rome"), "status": "not_applicable",
               "error": "MethodNotApplicable: bb: layer 0 has no 2-D weight",
               "forget_logp_after": None, "retain_logp_after": None}
    table = build_table1(runs_frame(typed([make_record(method="timerome"), skipped])))
    assert list(table.summary["method"]) == ["timerome"]
    md = table.table().markdown()
    assert "bb / rome: not in the table, run status 'not_applicable': " \
           "MethodNotApplicable: bb: layer 0 has no 2-D weight" in md


def test_flags_are_never_read_from_text(planted_records):
    # A runs frame holds the records' own booleans; text (as a CSV reader sees it) is a bug.
    frame = runs_frame(typed(planted_records))
    frame["converged"] = frame["converged"].map(str)
    with pytest.raises(TypeError, match="not a record flag"):
        build_table1(frame)
