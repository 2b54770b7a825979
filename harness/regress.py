"""Speed / memory regression check of a results CSV against recorded baselines.

    python -m harness.regress results/runs.csv --baseline reports/baseline_speedups.json \
        --tolerance 0.15

For every baseline entry on the device class of the current runs, the current value is
compared with the recorded one:
- speedup (edit wall-clock of the strongest converged gradient baseline / the method's)
  regresses when current < baseline x (1 - tolerance);
- peak-memory ratio (peak edit memory / inference memory) regresses when
  current > baseline x (1 + tolerance).
A device class of the current runs with no entry in the baseline file gets one: its current
values are recorded there as its new baseline (entries of other device classes are kept) and
the check passes, saying so (device class and file named). Every row of the runs CSV must be
well formed (key columns present, n_facts a whole number, numbers numeric, a known status):
a garbage line is an error naming its line, never silently dropped.
Exit status: 0 all within tolerance (or a new baseline recorded); 1 a regression (or a
baseline entry with no current run, unless --allow-missing); 2 bad input.
`--write-baseline` records the current values instead (other device classes are kept).
`--out` gets the report in every outcome (pass, regression, new baseline), written atomically.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from harness.atomic import write_text_atomic
from harness.reports.table1 import DEFAULT_GRADIENT_BASELINES, strongest_baseline, summarise

KEY = ("device_class", "experiment", "backbone", "method", "n_facts")
METRICS = {"speedup": "higher", "peak_mem_ratio": "lower"}
REQUIRED = ("device_class", "backbone", "method", "n_facts", "wall_clock_s", "peak_mem_bytes",
            "inference_mem_bytes")
NUMBERS = ("wall_clock_s", "peak_mem_bytes", "inference_mem_bytes")
STATUSES = ("ok", "oom", "not_applicable")


@dataclass
class Check:
    device_class: str
    experiment: str
    backbone: str
    method: str
    n_facts: int
    metric: str
    baseline: float
    current: float | None
    status: str  # ok | improved | REGRESSED | missing

    @property
    def change(self) -> float | None:
        if self.current is None or self.baseline == 0:
            return None
        return self.current / self.baseline - 1.0


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or \
        (isinstance(value, str) and not value.strip())


def validate_runs(runs: pd.DataFrame) -> None:
    """Raise ValueError naming the first malformed row ('line N', 1 = the header) and what is
    wrong with it: a missing key, a non-integer n_facts, a non-numeric measurement, an
    unknown status, or an ok run without an edit time."""
    missing = [c for c in REQUIRED if c not in runs.columns]
    if missing:
        raise ValueError(f"runs CSV lacks column(s): {', '.join(missing)}")
    keys = ["device_class", "backbone", "method"] + \
        (["experiment"] if "experiment" in runs.columns else [])
    for i, row in enumerate(runs.to_dict("records")):
        line = i + 2
        problems = [f"{k} is empty" for k in keys if _blank(row[k])]
        try:
            n = float(row["n_facts"])
            if not (math.isfinite(n) and n == int(n) and n >= 1):
                raise ValueError
        except (TypeError, ValueError):
            problems.append(f"n_facts {row['n_facts']!r} is not a whole number >= 1")
        for col in NUMBERS:
            value = row[col]
            if _blank(value):
                continue
            try:
                if not math.isfinite(float(value)):
                    raise ValueError
            except (TypeError, ValueError):
                problems.append(f"{col} {value!r} is not a finite number")
        status = row.get("status", "ok")
        status = "ok" if _blank(status) else str(status)
        if status not in STATUSES:
            problems.append(f"status {status!r} is not one of {', '.join(STATUSES)}")
        elif status == "ok" and _blank(row["wall_clock_s"]):
            problems.append("status ok but no wall_clock_s")
        if problems:
            raise ValueError(f"line {line}: malformed run row ({'; '.join(problems)})")


def current_metrics(runs: pd.DataFrame,
                    gradient_baselines: Sequence[str] = DEFAULT_GRADIENT_BASELINES
                    ) -> list[dict[str, Any]]:
    """One entry per (device class, experiment, backbone, method, n_facts) with its metrics."""
    if runs.empty:
        return []
    validate_runs(runs)
    runs = runs.copy()
    if "experiment" not in runs.columns:
        runs["experiment"] = "table1"
    entries: list[dict[str, Any]] = []
    for (dev, exp, n), group in runs.groupby(["device_class", "experiment", "n_facts"], sort=True):
        summary = summarise(group)
        for backbone, rows in summary.groupby("backbone", sort=True):
            best = strongest_baseline(rows, gradient_baselines)
            for rec in rows.to_dict("records"):
                speedup = (float(best["wall_clock_s"]) / rec["wall_clock_s"]
                           if best is not None and rec["wall_clock_s"] else None)
                ratio = (rec["peak_mem_bytes"] / rec["inference_mem_bytes"]
                         if rec["inference_mem_bytes"] else None)
                entries.append({"device_class": str(dev), "experiment": str(exp),
                                "backbone": str(backbone), "method": str(rec["method"]),
                                "n_facts": int(n), "speedup": _finite(speedup),
                                "peak_mem_ratio": _finite(ratio)})
    return entries


def _finite(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return round(value, 6) if math.isfinite(value) else None


def compare(baseline: dict[str, Any], current: list[dict[str, Any]], tolerance: float
            ) -> tuple[list[Check], int]:
    """(checks on the current device classes, number of baseline entries on other devices)."""
    now = {tuple(e[k] for k in KEY): e for e in current}
    devices = {e["device_class"] for e in current}
    checks: list[Check] = []
    other = 0
    for entry in baseline.get("entries", []):
        if entry["device_class"] not in devices:
            other += 1
            continue
        key = tuple(entry[k] for k in KEY)
        found = now.get(key)
        for metric, better in METRICS.items():
            base = entry.get(metric)
            if base is None:
                continue
            value = None if found is None else found.get(metric)
            if value is None:
                status = "missing"
            elif better == "higher":
                status = ("REGRESSED" if value < base * (1 - tolerance)
                          else "improved" if value > base * (1 + tolerance) else "ok")
            else:
                status = ("REGRESSED" if value > base * (1 + tolerance)
                          else "improved" if value < base * (1 - tolerance) else "ok")
            checks.append(Check(entry["device_class"], entry["experiment"], entry["backbone"],
                                entry["method"], int(entry["n_facts"]), metric, float(base),
                                value, status))
    return checks, other


def render(checks: list[Check], tolerance: float) -> str:
    headers = ["device", "experiment", "backbone", "method", "n", "metric", "baseline",
               "current", "change", "status"]
    rows = [[c.device_class, c.experiment, c.backbone, c.method, str(c.n_facts), c.metric,
             f"{c.baseline:.3f}", "--" if c.current is None else f"{c.current:.3f}",
             "--" if c.change is None else f"{c.change:+.1%}", c.status] for c in checks]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths))  # noqa: E731
    out = [line(headers), line(["-" * w for w in widths])] + [line(r) for r in rows]
    bad = sum(c.status == "REGRESSED" for c in checks)
    out.append(f"\n{len(checks)} checks, {bad} regressed (tolerance {tolerance:.0%}; speedup "
               f"must stay >= baseline x {1 - tolerance:.2f}, peak-memory ratio <= baseline x "
               f"{1 + tolerance:.2f})")
    return "\n".join(out) + "\n"


NOTE = ("speedup = strongest converged gradient baseline edit time / method edit time; "
        "peak_mem_ratio = peak edit memory / inference memory")


def write_baseline(path: Path, current: list[dict[str, Any]], tolerance: float) -> None:
    """Record `current` as the baseline of its device classes (entries of other device
    classes, and the file's other top-level fields, are kept)."""
    devices = {e["device_class"] for e in current}
    previous: dict[str, Any] = {}
    if path.is_file():
        previous = json.loads(path.read_text())
    kept = [e for e in previous.get("entries", []) if e["device_class"] not in devices]
    payload = {**previous, "schema": 1, "tolerance": tolerance,
               "note": previous.get("note", NOTE),
               "entries": sorted(kept + current, key=lambda e: tuple(str(e[k]) for k in KEY))}
    write_text_atomic(path, json.dumps(payload, indent=2) + "\n")


def baseline_devices(baseline: dict[str, Any]) -> set[str]:
    return {str(e["device_class"]) for e in baseline.get("entries", [])}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m harness.regress", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", help="aggregated runs CSV (results/runs.csv)")
    p.add_argument("--baseline", required=True, help="baseline JSON (reports/baseline_speedups.json)")
    p.add_argument("--tolerance", type=float, default=0.15)
    p.add_argument("--gradient-baselines", nargs="+", default=list(DEFAULT_GRADIENT_BASELINES))
    p.add_argument("--allow-missing", action="store_true",
                   help="a baseline entry without a current run is not a failure")
    p.add_argument("--write-baseline", action="store_true",
                   help="record the current values into --baseline and exit")
    p.add_argument("--out", help="also write the report here, in every outcome (atomically)")
    args = p.parse_args(argv)

    def error(message: str) -> int:
        print(f"error: {message}", file=sys.stderr)
        if args.out:
            write_text_atomic(args.out, f"error: {message}\n")
        return 2

    if not 0 <= args.tolerance < 1:
        return error(f"--tolerance must be in [0, 1), got {args.tolerance}")
    try:
        current = current_metrics(pd.read_csv(args.runs),
                                  [b for b in args.gradient_baselines if b != "none"])
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        return error(f"{args.runs}: {exc}")
    baseline_path = Path(args.baseline)
    if args.write_baseline:
        write_baseline(baseline_path, current, args.tolerance)
        text = f"{baseline_path}: recorded {len(current)} entries\n"
        print(text, end="")
        if args.out:
            write_text_atomic(args.out, text)
        return 0
    try:
        baseline = json.loads(baseline_path.read_text())
        if not isinstance(baseline, dict) or not isinstance(baseline.get("entries", []), list):
            raise ValueError("not a baseline object with an 'entries' list")
        known = baseline_devices(baseline)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return error(f"{baseline_path}: {exc}")
    if not current:
        return error(f"{args.runs}: no completed runs to check")
    messages = []
    new_devices = sorted({e["device_class"] for e in current} - known)
    if new_devices:
        fresh = [e for e in current if e["device_class"] in new_devices]
        write_baseline(baseline_path, fresh, baseline.get("tolerance", args.tolerance))
        for device in new_devices:
            n = sum(e["device_class"] == device for e in fresh)
            messages.append(f"no baseline entry for device class {device} in {baseline_path}: "
                            f"recorded the current values ({n} entries) as its new baseline")
    checks, _ = compare(baseline, current, args.tolerance)
    text = "\n".join(messages) + "\n" if messages else ""
    if checks:
        text += ("\n" if messages else "") + render(checks, args.tolerance)
    print(text, end="")
    failed = any(c.status == "REGRESSED" or (c.status == "missing" and not args.allow_missing)
                 for c in checks)
    if args.out:
        write_text_atomic(args.out, text)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())


