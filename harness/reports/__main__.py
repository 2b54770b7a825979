"""CLI: `python -m harness.reports {table1,transfer,scaling,sequential} ...`"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from harness.results.aggregate import aggregate
from harness.results.store import read_record


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def cmd_table1(args: argparse.Namespace) -> int:
    from harness.reports.table1 import build_table1, table1_csv

    baselines = [b for b in args.gradient_baselines if b != "none"]
    table = build_table1(pd.read_csv(args.runs), baselines, args.backbones, args.methods)
    out = Path(args.out)
    rendered = table.table()
    _write(out.with_suffix(".md"), rendered.markdown())
    _write(out.with_suffix(".tex"), rendered.latex())
    _write(out.with_suffix(".csv"), table1_csv(table))
    print(rendered.markdown())
    return 0


def cmd_transfer(args: argparse.Namespace) -> int:
    from harness.reports.transfer import build_transfer, tuned_params

    table, summary = build_transfer(aggregate(args.records), args.source, tuned_params(args.tuned))
    out = Path(args.out)
    _write(out.with_suffix(".md"), table.markdown())
    _write(out.with_suffix(".tex"), table.latex())
    _write(out.with_suffix(".csv"), summary.to_csv(index=False))
    print(table.markdown())
    return 0


def cmd_scaling(args: argparse.Namespace) -> int:
    from harness.reports.figures import scaling_figures

    for path in scaling_figures(pd.read_csv(args.runs), args.out):
        print(path)
    return 0


def cmd_sequential(args: argparse.Namespace) -> int:
    from harness.reports.figures import save, sequential_figure

    for path in save(sequential_figure([read_record(p) for p in args.records]), args.out):
        print(path)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m harness.reports", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("table1", help="Table 1 (.md, .tex, .csv) from a runs CSV")
    t.add_argument("--runs", required=True)
    t.add_argument("--out", required=True, help="output stem, e.g. reports/table1")
    t.add_argument("--gradient-baselines", nargs="+",
                   default=["gradient_ascent", "graddiff", "npo"])
    t.add_argument("--backbones", nargs="*", default=None, help="row order of backbones")
    t.add_argument("--methods", nargs="*", default=None, help="row order of methods")
    t.set_defaults(func=cmd_table1)
    tr = sub.add_parser("transfer", help="transfer table from timerome records")
    tr.add_argument("--records", nargs="+", required=True)
    tr.add_argument("--out", required=True)
    tr.add_argument("--source", required=True, help="backbone the config was tuned on")
    tr.add_argument("--tuned", default=None, help="tuning output JSON")
    tr.set_defaults(func=cmd_transfer)
    s = sub.add_parser("scaling", help="scaling figures from a runs CSV")
    s.add_argument("--runs", required=True)
    s.add_argument("--out", required=True, help="output directory")
    s.set_defaults(func=cmd_scaling)
    q = sub.add_parser("sequential", help="sequential-insertion retain curve")
    q.add_argument("--records", nargs="+", required=True)
    q.add_argument("--out", required=True, help="output stem")
    q.set_defaults(func=cmd_sequential)
    args = p.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
