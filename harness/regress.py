"""Speed / memory regression check of job records against recorded baselines.

    python -m harness.regress results/runs --baseline reports/baseline_speedups.json \
        --tolerance 0.15

(record JSON files, or directories searched for them; read and typed once by
harness.reports.inputs, like every table).

For every baseline entry on the device class of the current runs, the current value is
compared with the recorded one:
- speedup (edit wall-clock of the strongest converged gradient baseline / the method's)
  regresses when current < baseline x (1 - tolerance);
- peak-memory ratio (peak edit memory / inference memory) regresses when
  current > baseline x (1 + tolerance).
A device class of the current runs with no entry in the baseline file gets one: its current
values are recorded there as its new baseline (entries of other device classes are kept) and
the check passes, saying so (device class and file named). Both inputs are validated
before anything is checked or written: every record must be valid against the record
schema (strict JSON: numbers finite, converged / collapsed true, false or null, a known
status) and an ok run must have its edit time and forget log-probs (harness.reports.inputs);
the baseline file must match BASELINE_SCHEMA (strict JSON, one entry per key): a garbage
record or entry is an error naming it, never silently dropped or read as something else.
`--write-baseline` records the current values instead (other device classes are kept).
`--out` gets the report in every outcome (pass, regression, new baseline, bad input),
written atomically.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import jsonschema
import pandas as pd

from harness.atomic import non_finite_paths, write_text_atomic
from harness.evaluation.finite import finite_or_none
from harness.reports.inputs import InputError, describe, load_runs
from harness.reports.table1 import add_speedups, gradient_baselines, is_reference, summarise
from harness.results.store import RecordError

KEY = ("device_class", "experiment", "backbone", "method", "n_facts")
METRICS = {"speedup": "higher", "peak_mem_ratio": "lower"}
# What a status-ok record must have to be checked (harness.reports.inputs).
RUNS_NEEDS = ("wall_clock_s", "forget_logp_before", "forget_logp_after")
_TEXT = {"type": "string", "minLength": 1}
_RATIO = {"type": ["number", "null"], "exclusiveMinimum": 0}
BASELINE_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["entries"],
    "properties": {
        "schema": {"const": 1},
        "tolerance": {"type": "number", "minimum": 0, "exclusiveMaximum": 1},
        "note": {"type": "string"},
        "entries": {"type": "array", "items": {
            "type": "object",
            "required": list(KEY),
            "properties": {"device_class": _TEXT, "experiment": _TEXT, "backbone": _TEXT,
                           "method": _TEXT, "n_facts": {"type": "integer", "minimum": 1},
                           "speedup": _RATIO, "peak_mem_ratio": _RATIO},
        }},
    },
}
EXIT_OK, EXIT_REGRESSED, EXIT_BAD_INPUT, EXIT_BUG = 0, 1, 2, 3
EXIT_STATUS = """\
exit status: 0 all within tolerance (or a new baseline recorded); 1 regression found (or a
baseline entry with no current run, unless --allow-missing); 2 bad input: a malformed
record (not valid against the record schema, or a status-ok record without its edit time or
forget log-probs) or baseline file (or a bad option), reported on one line as
`error: <file>: <what is wrong>` naming the field or entry, before anything is checked or
written; 3 internal error (a bug, not a regression: traceback printed)."""


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


def current_metrics(runs: pd.DataFrame, baselines: Sequence[str] | None = None
                    ) -> list[dict[str, Any]]:
    """One entry per (device class, experiment, backbone, method, n_facts) of a runs frame
    (harness.reports.inputs.load_runs) with its metrics; speedups against the strongest of
    `baselines` (None: the registry's gradient methods). Reference rows (registry kind
    "reference": no edit, so no speed or memory to regress) are left out."""
    baselines = gradient_baselines(baselines)
    if runs.empty:
        return []
    entries: list[dict[str, Any]] = []
    for (dev, exp, n), group in runs.groupby(["device_class", "experiment", "n_facts"], sort=True):
        summary = summarise(group).sort_values("backbone", kind="stable")
        add_speedups(summary, baselines)  # Table 1's rule
        for backbone, rows in summary.groupby("backbone", sort=True):
            for rec in rows.to_dict("records"):
                if is_reference(str(rec["method"])):
                    continue
                speedup = rec["speedup"]
                ratio = (rec["peak_mem_bytes"] / rec["inference_mem_bytes"]
                         if rec["inference_mem_bytes"] else None)
                entries.append({"device_class": str(dev), "experiment": str(exp),
                                "backbone": str(backbone), "method": str(rec["method"]),
                                "n_facts": int(n), "speedup": _finite(speedup),
                                "peak_mem_ratio": _finite(ratio)})
    return entries


def _finite(value: Any) -> float | None:
    """The value rounded to 6 digits, or None when it is missing or not finite."""
    value = finite_or_none(value)
    return None if value is None else round(value, 6)


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


def read_baseline(path: Path) -> dict[str, Any]:
    """The baseline file, validated (strict JSON, BASELINE_SCHEMA, one entry per key);
    InputError naming the file and the offending entry otherwise."""
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not valid JSON ({exc})") from None
    errors = sorted(jsonschema.Draft202012Validator(BASELINE_SCHEMA).iter_errors(payload),
                    key=lambda e: list(map(str, e.path)))
    if errors:
        where = "/".join(str(p) for p in errors[0].path) or "(top level)"
        raise InputError(f"{path}: invalid baseline at '{where}': {errors[0].message}")
    bad = non_finite_paths(payload)
    if bad:
        raise InputError(f"{path}: invalid baseline at '{bad[0][0]}': non-finite number "
                         f"{bad[0][1]!r} (JSON has no NaN or Infinity)")
    seen: dict[tuple, int] = {}
    for j, entry in enumerate(payload["entries"]):
        key = tuple(entry[k] for k in KEY)
        if key in seen:
            raise InputError(f"{path}: invalid baseline at 'entries/{j}': same key as entry "
                             f"{seen[key]} ({', '.join(map(str, key))})")
        seen[key] = j
    return payload


def write_baseline(path: Path, current: list[dict[str, Any]], tolerance: float) -> None:
    """Record `current` as the baseline of its device classes (entries of other device
    classes, and the file's other top-level fields, are kept; a malformed existing file is
    an InputError and is left as it is)."""
    devices = {e["device_class"] for e in current}
    previous: dict[str, Any] = read_baseline(path) if path.is_file() else {}
    kept = [e for e in previous.get("entries", []) if e["device_class"] not in devices]
    payload = {**previous, "schema": 1, "tolerance": tolerance,
               "note": previous.get("note", NOTE),
               "entries": sorted(kept + current, key=lambda e: tuple(str(e[k]) for k in KEY))}
    write_text_atomic(path, json.dumps(payload, indent=2, allow_nan=False) + "\n")


def baseline_devices(baseline: dict[str, Any]) -> set[str]:
    return {str(e["device_class"]) for e in baseline.get("entries", [])}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m harness.regress", description=__doc__,
                                epilog=EXIT_STATUS,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("records", nargs="+",
                   help="job records: JSON files, or directories searched for them (results/runs)")
    p.add_argument("--baseline", required=True, help="baseline JSON (reports/baseline_speedups.json)")
    p.add_argument("--tolerance", type=float, default=0.15)
    p.add_argument("--gradient-baselines", nargs="+", default=None,
                   help="methods speedups are measured against ('none': no speedups); "
                        "default: every registered method of kind gradient")
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
        return EXIT_BAD_INPUT

    if not 0 <= args.tolerance < 1:
        return error(f"--tolerance must be in [0, 1), got {args.tolerance}")
    try:
        return _check(args)
    except (InputError, RecordError) as exc:  # bad input; anything else is a bug (exit 3)
        return error(str(exc))


def _check(args: argparse.Namespace) -> int:
    # Both inputs are validated before anything is checked or written.
    runs = load_runs(args.records, RUNS_NEEDS)
    baseline_path = Path(args.baseline)
    baseline = read_baseline(baseline_path) if (
        baseline_path.is_file() or not args.write_baseline) else {}
    current = current_metrics(runs, None if args.gradient_baselines is None else [
        b for b in args.gradient_baselines if b != "none"])
    if args.write_baseline:
        write_baseline(baseline_path, current, args.tolerance)
        text = f"{baseline_path}: recorded {len(current)} entries\n"
        print(text, end="")
        if args.out:
            write_text_atomic(args.out, text)
        return EXIT_OK
    if not current:
        raise InputError(f"{describe(args.records)}: no completed runs to check")
    known = baseline_devices(baseline)
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
    return EXIT_REGRESSED if failed else EXIT_OK


def cli(argv: list[str] | None = None) -> int:
    """`main`, with a crash (a bug) reported as exit 3 and its traceback, never as exit 1
    (which means "regression found")."""
    try:
        return main(argv)
    except Exception:  # noqa: BLE001 - any bug: keep the traceback, change only the status
        traceback.print_exc()
        print("error: internal error in harness.regress (a bug, not a regression; "
              "traceback above)", file=sys.stderr)
        return EXIT_BUG


if __name__ == "__main__":
    sys.exit(cli())
