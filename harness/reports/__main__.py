"""CLI: `python -m harness.reports {table1,transfer,scaling,sequential} ...`

Every input is validated before anything is rendered or written (harness.reports.inputs).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.reports.inputs import InputError, ok_rows, read_runs_csv, require_ok_runs
from harness.results.aggregate import aggregate
from harness.results.store import RecordError, read_record

EXIT_STATUS = """\
exit status: 0 ok; 2 bad input: a malformed runs CSV, record or tuning file, reported on
one line as `error: <file>: <what is wrong> (row N, column C)` before anything is rendered
or written (row N counts data rows from 1; the line named with it is the file line, the
header being line 1). A crash (a bug) prints a traceback."""


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def cmd_table1(args: argparse.Namespace) -> int:
    from harness.reports.table1 import TABLE1_RUNS, build_table1, table1_csv

    runs = read_runs_csv(args.runs, TABLE1_RUNS)
    require_ok_runs(runs, args.runs, "tabulate")
    baselines = [b for b in args.gradient_baselines if b != "none"]
    table = build_table1(runs, baselines, args.backbones, args.methods)
    out = Path(args.out)
    rendered = table.table()
    _write(out.with_suffix(".md"), rendered.markdown())
    _write(out.with_suffix(".tex"), rendered.latex())
    _write(out.with_suffix(".csv"), table1_csv(table))
    print(rendered.markdown())
    return 0


def cmd_transfer(args: argparse.Namespace) -> int:
    from harness.reports.transfer import build_transfer, tuned_params

    runs = aggregate(args.records)
    tuned = tuned_params(args.tuned)
    if not (ok_rows(runs)["method"] == "timerome").any():
        raise InputError(f"--records ({len(args.records)} files): no timerome run with "
                         "status ok: nothing to tabulate")
    table, summary = build_transfer(runs, args.source, tuned)
    out = Path(args.out)
    _write(out.with_suffix(".md"), table.markdown())
    _write(out.with_suffix(".tex"), table.latex())
    _write(out.with_suffix(".csv"), summary.to_csv(index=False))
    print(table.markdown())
    return 0


def cmd_scaling(args: argparse.Namespace) -> int:
    from harness.reports.figures import SCALING_RUNS, scaling_figures

    runs = read_runs_csv(args.runs, SCALING_RUNS)
    require_ok_runs(runs, args.runs, "plot")
    for path in scaling_figures(runs, args.out):
        print(path)
    return 0


def cmd_sequential(args: argparse.Namespace) -> int:
    from harness.reports.figures import check_sequential, save, sequential_figure

    records = []
    for p in args.records:
        records.append(read_record(p))
        check_sequential(records[-1], str(p))
    for path in save(sequential_figure(records), args.out):
        print(path)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m harness.reports", description=__doc__,
                                epilog=EXIT_STATUS,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    def add(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, description=help, epilog=EXIT_STATUS,
                              formatter_class=argparse.RawDescriptionHelpFormatter)

    t = add("table1", "Table 1 (.md, .tex, .csv) from a runs CSV")
    t.add_argument("--runs", required=True)
    t.add_argument("--out", required=True, help="output stem, e.g. reports/table1")
    t.add_argument("--gradient-baselines", nargs="+",
                   default=["gradient_ascent", "graddiff", "npo"])
    t.add_argument("--backbones", nargs="*", default=None, help="row order of backbones")
    t.add_argument("--methods", nargs="*", default=None, help="row order of methods")
    t.set_defaults(func=cmd_table1)
    tr = add("transfer", "transfer table from timerome records")
    tr.add_argument("--records", nargs="+", required=True)
    tr.add_argument("--out", required=True)
    tr.add_argument("--source", required=True, help="backbone the config was tuned on")
    tr.add_argument("--tuned", default=None, help="tuning output JSON")
    tr.set_defaults(func=cmd_transfer)
    s = add("scaling", "scaling figures from a runs CSV")
    s.add_argument("--runs", required=True)
    s.add_argument("--out", required=True, help="output directory")
    s.set_defaults(func=cmd_scaling)
    q = add("sequential", "sequential-insertion retain curve")
    q.add_argument("--records", nargs="+", required=True)
    q.add_argument("--out", required=True, help="output stem")
    q.set_defaults(func=cmd_sequential)
    args = p.parse_args(argv)
    try:
        return args.func(args)
    except (InputError, RecordError) as exc:  # bad input; anything else is a bug: traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
