"""CLI: `python -m harness.reports {table1,transfer,scaling,sequential} ...`

Every input is a job record (a JSON file, or a directory of them), read and typed once
(harness.reports.inputs) and validated before anything is rendered or written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.reports.inputs import (InputError, describe, load_runs, ok_rows, record_paths,
                                    require_ok_runs)
from harness.results.store import RecordError, load_record

EXIT_STATUS = """\
exit status: 0 ok; 2 bad input: a malformed record (not valid against the record schema,
a NaN or infinity, or a status-ok record without a measurement the output needs) or tuning
file, reported on one line as `error: <file>: <what is wrong>` naming the field, before
anything is rendered or written. A crash (a bug) prints a traceback."""


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def cmd_table1(args: argparse.Namespace) -> int:
    from harness.reports.table1 import TABLE1_NEEDS, build_table1, table1_csv

    runs = load_runs(args.records, TABLE1_NEEDS)
    require_ok_runs(runs, describe(args.records), "tabulate")
    baselines = None if args.gradient_baselines is None else [
        b for b in args.gradient_baselines if b != "none"]
    table = build_table1(runs, baselines, args.backbones, args.methods)
    out = Path(args.out)
    rendered = table.table()
    _write(out.with_suffix(".md"), rendered.markdown())
    _write(out.with_suffix(".tex"), rendered.latex())
    _write(out.with_suffix(".csv"), table1_csv(table))
    print(rendered.markdown())
    return 0


def cmd_transfer(args: argparse.Namespace) -> int:
    from harness.reports.transfer import build_transfer, transferred_method, tuned_params

    runs = load_runs(args.records)
    tuned = tuned_params(args.tuned)
    method = transferred_method()
    if not (ok_rows(runs)["method"] == method).any():
        raise InputError(f"--records ({len(args.records)} files): no {method} run with "
                         "status ok: nothing to tabulate")
    table, summary = build_transfer(runs, args.source, tuned)
    out = Path(args.out)
    _write(out.with_suffix(".md"), table.markdown())
    _write(out.with_suffix(".tex"), table.latex())
    _write(out.with_suffix(".csv"), summary.to_csv(index=False))
    print(table.markdown())
    return 0


def cmd_scaling(args: argparse.Namespace) -> int:
    from harness.reports.figures import SCALING_NEEDS, scaling_figures

    runs = load_runs(args.records, SCALING_NEEDS)
    require_ok_runs(runs, describe(args.records), "plot")
    for path in scaling_figures(runs, args.out):
        print(path)
    return 0


def cmd_sequential(args: argparse.Namespace) -> int:
    from harness.reports.figures import check_sequential, save, sequential_figure

    records = []
    for p in record_paths(args.records):
        records.append(load_record(p))
        check_sequential(records[-1], str(p))
    for path in save(sequential_figure(records), args.out):
        print(path)
    return 0


RECORDS_HELP = "record JSON files, or directories searched for them"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m harness.reports", description=__doc__,
                                epilog=EXIT_STATUS,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    def add(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, description=help, epilog=EXIT_STATUS,
                              formatter_class=argparse.RawDescriptionHelpFormatter)

    t = add("table1", "Table 1 (.md, .tex, .csv) from job records")
    t.add_argument("--records", nargs="+", required=True, help=RECORDS_HELP)
    t.add_argument("--out", required=True, help="output stem, e.g. reports/table1")
    t.add_argument("--gradient-baselines", nargs="+", default=None,
                   help="methods the speedup is measured against ('none': no speedup); "
                        "default: every registered method of kind gradient")
    t.add_argument("--backbones", nargs="*", default=None, help="row order of backbones")
    t.add_argument("--methods", nargs="*", default=None, help="row order of methods")
    t.set_defaults(func=cmd_table1)
    tr = add("transfer", "transfer table from timerome records")
    tr.add_argument("--records", nargs="+", required=True, help=RECORDS_HELP)
    tr.add_argument("--out", required=True)
    tr.add_argument("--source", required=True, help="backbone the config was tuned on")
    tr.add_argument("--tuned", default=None, help="tuning output JSON")
    tr.set_defaults(func=cmd_transfer)
    s = add("scaling", "scaling figures from job records")
    s.add_argument("--records", nargs="+", required=True, help=RECORDS_HELP)
    s.add_argument("--out", required=True, help="output directory")
    s.set_defaults(func=cmd_scaling)
    q = add("sequential", "sequential-insertion retain curve")
    q.add_argument("--records", nargs="+", required=True, help=RECORDS_HELP)
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
