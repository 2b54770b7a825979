"""Aggregate job records into one CSV (`results/runs.csv`).

`python -m harness.results.aggregate --out results/runs.csv RECORD.json ... | --root results/runs`
"""

from __future__ import annotations

import argparse
import io
import os
import sys
from pathlib import Path
from typing import Any, Iterable, Sequence

import pandas as pd

from harness.results.store import read_record
from harness.atomic import write_text_atomic

# Nested fields flattened into prefixed columns.
FLATTENED = {"phase_seconds": "phase_{}_s", "method_phase_seconds": "method_phase_{}_s",
             "subject_source": "subject_source_{}"}
SCALAR_EXTRAS = ("status", "experiment", "collapse_reason", "n_retain_eval",
                 "forget_rougeL_before", "nvml_peak_bytes", "error")
NESTED = {"fingerprint", "method_config", "details", "curve"} | set(FLATTENED)
LEADING = ("backbone", "method", "split", "n_facts", "seed", "estimator",
           "forget_logp_before", "forget_logp_after", "retain_logp_before", "retain_logp_after",
           "forget_rougeL_after", "retain_rougeL_after", "wall_clock_s", "peak_mem_bytes",
           "inference_mem_bytes", "extra_mem_bytes", "converged", "collapsed", "device",
           "git_commit")


def flatten(record: dict[str, Any]) -> dict[str, Any]:
    row = {k: v for k, v in record.items() if k not in NESTED}
    for key, pattern in FLATTENED.items():
        for name, value in (record.get(key) or {}).items():
            row[pattern.format(name)] = value
    fp = record.get("fingerprint") or {}
    for key in ("device_name", "driver", "torch", "transformers", "config_hash"):
        row[key] = fp.get(key)
    return row


def runs_frame(records: Iterable[dict[str, Any]]) -> pd.DataFrame:
    rows = [flatten(r) for r in records]
    frame = pd.DataFrame(rows)
    leading = [c for c in LEADING if c in frame.columns] if rows else list(LEADING)
    rest = sorted(c for c in frame.columns if c not in leading)
    frame = frame.reindex(columns=leading + rest)
    if rows:
        frame = frame.sort_values(["experiment", "backbone", "method", "n_facts", "seed"],
                                  kind="stable").reset_index(drop=True)
    return frame


def find_records(root: str | os.PathLike) -> list[Path]:
    return sorted(p for p in Path(root).rglob("*.json") if not p.name.startswith("."))


def aggregate(paths: Sequence[str | os.PathLike]) -> pd.DataFrame:
    return runs_frame(read_record(p) for p in paths)


def write_csv_atomic(frame: pd.DataFrame, out: str | os.PathLike) -> Path:
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False)
    return write_text_atomic(out, buffer.getvalue())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m harness.results.aggregate", description=__doc__)
    p.add_argument("records", nargs="*", help="record JSON files")
    p.add_argument("--root", help="aggregate every record under this directory")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    paths = list(args.records) + (find_records(args.root) if args.root else [])
    write_csv_atomic(aggregate(paths), args.out)
    print(f"{args.out}: {len(paths)} records")
    return 0


if __name__ == "__main__":
    sys.exit(main())
