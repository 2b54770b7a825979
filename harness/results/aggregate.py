"""The runs frame: typed job records as one DataFrame, one row per record; written as a CSV
for people to read (`results/runs.csv`, `results/table1.csv`, `results/scaling.csv`).

Every table (Table 1, transfer, scaling figures, the regression check) is built from
`runs_frame` of `Record`s read by `harness.results.store.load_record`; no table is rebuilt
from one of these CSV files. Values keep their JSON types: numbers stay numbers, booleans
stay True / False / None.

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

from harness.atomic import write_text_atomic
from harness.results.record import Record
from harness.results.store import load_record

# Nested fields flattened into prefixed columns.
FLATTENED = {"phase_seconds": "phase_{}_s", "method_phase_seconds": "method_phase_{}_s",
             "subject_source": "subject_source_{}"}
NESTED = {"fingerprint", "method_config", "details", "curve"} | set(FLATTENED)
LEADING = ("backbone", "method", "split", "n_facts", "seed", "estimator",
           "forget_logp_before", "forget_logp_after", "retain_logp_before", "retain_logp_after",
           "forget_rougeL_after", "retain_rougeL_after", "wall_clock_s", "peak_mem_bytes",
           "inference_mem_bytes", "extra_mem_bytes", "edit_flops", "edit_forward_tokens",
           "edit_backward_tokens", "optimizer_state_bytes", "statistics_s", "converged", "collapsed", "device",
           "git_commit")
ORDER = ["experiment", "backbone", "method", "n_facts", "seed"]  # row order of the frame


def flatten(record: Record) -> dict[str, Any]:
    """One row: the record's scalar fields, nested timings and subject counts as prefixed
    columns, and the fingerprint's software versions."""
    data = record.to_dict()
    row = {k: v for k, v in data.items() if k not in NESTED}
    for key, pattern in FLATTENED.items():
        for name, value in (data.get(key) or {}).items():
            row[pattern.format(name)] = value
    fp = data.get("fingerprint") or {}
    for key in ("device_name", "driver", "torch", "transformers", "config_hash"):
        row[key] = fp.get(key)
    return row


def runs_frame(records: Iterable[Record]) -> pd.DataFrame:
    """The records as one frame (LEADING columns first, the rest sorted), rows ordered by
    experiment, backbone, method, n_facts, seed (stable)."""
    rows = [flatten(r) for r in records]
    frame = pd.DataFrame(rows)
    leading = [c for c in LEADING if c in frame.columns] if rows else list(LEADING)
    rest = sorted(c for c in frame.columns if c not in leading)
    frame = frame.reindex(columns=leading + rest)
    if rows:
        frame = frame.sort_values(ORDER, kind="stable").reset_index(drop=True)
    return frame


def find_records(root: str | os.PathLike) -> list[Path]:
    """The record files under `root` (sorted; hidden files, e.g. temporaries, left out)."""
    return sorted(p for p in Path(root).rglob("*.json") if not p.name.startswith("."))


def aggregate(paths: Sequence[str | os.PathLike]) -> pd.DataFrame:
    """The runs frame of the record files at `paths` (each read and validated once)."""
    return runs_frame(load_record(p) for p in paths)


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
