"""Speed / memory regression check of job records against recorded baselines.

    python -m harness.regress results/runs --baseline reports/baseline_speedups.json \
        --repeats 3 --out results/regression.txt

(record JSON files, or directories searched for them; each read and validated once by
harness.results.store, like every table).

Baselines are keyed by the measuring environment -- GPU name (the record's device class),
NVIDIA driver, torch, CUDA and the weights' dtype -- and by experiment, backbone, method and
fact count: a timing taken under another driver, torch, CUDA or dtype is no baseline for
this one (a driver or dtype change moves timings more than the tolerance). For every
baseline entry of an environment the current runs were measured in, the current value is
compared with the recorded one:
- speedup (edit wall-clock of the strongest converged gradient baseline / the method's)
  regresses when current < baseline x (1 - tolerance);
- peak-memory ratio (peak edit memory / inference memory) regresses when
  current > baseline x (1 + tolerance).
The current value is the median over the repeats (seeds) of the per-repeat values, so one
slow repeat does not flag a regression; `--repeats N` requires N of them per entry. The
tolerance is the baseline file's `tolerance` (the baselines were recorded with it); `--tolerance`
applies only to a file without one (and is written into a new file).
An environment of the current runs without baseline entries gets them: its current values are
recorded there (entries of other environments are kept), the report names the file and the
key that differs from the nearest recorded environment, and the exit status says "no
baseline" (4). Both inputs are validated before anything is checked or written: every record
must be valid against the record schema (strict JSON, a known status), have a non-empty
device class, and an ok run must have its edit time and forget log-probs; the baseline file
must match BASELINE_SCHEMA (strict JSON, one entry per key). A garbage record or entry is an
error naming its file, never silently dropped. `--write-baseline` records the current values
instead (other environments are kept).
`--out` gets the report in every outcome (ok, regression, no baseline, bad input, internal
error), written atomically; its last line is `outcome: <outcome> (exit <status>)`.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import traceback
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import jsonschema
import pandas as pd

from harness.atomic import non_finite_paths, write_text_atomic
from harness.evaluation.finite import finite_or_none
from harness.reports.inputs import InputError, check_ok_record, describe, record_paths
from harness.reports.table1 import add_speedups, gradient_baselines, is_reference, summarise
from harness.results.aggregate import flatten
from harness.results.record import Record
from harness.results.store import RecordError, load_record

# Where the current runs were measured: a baseline taken elsewhere is not compared.
ENV_KEY = ("device_class", "driver", "torch", "cuda", "dtype")
RUN_KEY = ("experiment", "backbone", "method", "n_facts")
# One baseline entry per KEY (the order messages name it in).
KEY = ("device_class", *RUN_KEY, "driver", "torch", "cuda", "dtype")
# The record's `precision` field (harness/precision.py) names the weights' dtype here.
DTYPE_FIELD = "weight_dtype"
METRICS = {"speedup": "higher", "peak_mem_ratio": "lower"}
# What a status-ok record must have to be checked (harness.reports.inputs).
RUNS_NEEDS = ("wall_clock_s", "forget_logp_before", "forget_logp_after")
DEFAULT_TOLERANCE = 0.15
_TEXT = {"type": "string", "minLength": 1}
_ENV_TEXT = {"type": ["string", "null"], "minLength": 1}
_RATIO = {"type": ["number", "null"], "exclusiveMinimum": 0}
BASELINE_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["entries"],
    "properties": {
        # 1: entries keyed by device class only (read with driver/torch/cuda/dtype null)
        "schema": {"enum": [1, 2]},
        "tolerance": {"type": "number", "minimum": 0, "exclusiveMaximum": 1},
        "note": {"type": "string"},
        "entries": {"type": "array", "items": {
            "type": "object",
            "required": ["device_class", *RUN_KEY],
            "properties": {"device_class": _TEXT, "experiment": _TEXT, "backbone": _TEXT,
                           "method": _TEXT, "n_facts": {"type": "integer", "minimum": 1},
                           "driver": _ENV_TEXT, "torch": _ENV_TEXT, "cuda": _ENV_TEXT,
                           "dtype": _ENV_TEXT, "repeats": {"type": "integer", "minimum": 1},
                           "speedup": _RATIO, "peak_mem_ratio": _RATIO},
        }},
    },
}
EXIT_OK, EXIT_REGRESSED, EXIT_BAD_INPUT, EXIT_BUG, EXIT_NO_BASELINE = 0, 1, 2, 3, 4
OUTCOMES = {EXIT_OK: "ok", EXIT_REGRESSED: "regression", EXIT_BAD_INPUT: "bad input",
            EXIT_BUG: "internal error", EXIT_NO_BASELINE: "no baseline"}
EXIT_STATUS = """\
exit status: 0 all within tolerance (or --write-baseline done); 1 regression found (or a
baseline entry with no current run, unless --allow-missing); 2 bad input: a malformed
record (not valid against the record schema, an empty device class, a status-ok record
without its edit time or forget log-probs, fewer than --repeats repeats) or baseline file (or
a bad option), reported on one line as `error: <file>: <what is wrong>` naming the field or
entry, before anything is checked or written; 3 internal error (a bug, not a regression:
traceback printed); 4 no baseline: an environment (GPU, driver, torch, CUDA, dtype) of the
current runs had no baseline entry, and its current values were recorded as its baseline
(the other environments were checked; a regression among them exits 1)."""


@dataclass(frozen=True)
class Environment:
    """What a timing depends on besides the code: baselines are compared within one."""

    device_class: str
    driver: str | None
    torch: str | None
    cuda: str | None
    dtype: str | None

    @classmethod
    def of(cls, entry: dict[str, Any]) -> Environment:
        """The environment of a baseline or current entry (a key it lacks is None)."""
        return cls(**{name: _text(entry.get(name)) for name in ENV_KEY})

    def describe(self) -> str:
        parts = [f"{name} {getattr(self, name) or 'none'}" for name in ENV_KEY[1:]]
        return f"{self.device_class} ({', '.join(parts)})"

    def differences(self, baseline: Environment) -> list[str]:
        """`key (baseline X, now Y)` for each environment key on which the two differ."""
        return [f"{f.name} (baseline {getattr(baseline, f.name) or 'none'}, now "
                f"{getattr(self, f.name) or 'none'})"
                for f in fields(self) if getattr(self, f.name) != getattr(baseline, f.name)]


def _text(value: Any) -> str | None:
    """An environment value as text; None (not recorded) stays None, and so does NaN (a
    frame cell of a column some records lack)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return str(value)


@dataclass
class Check:
    environment: Environment
    experiment: str
    backbone: str
    method: str
    n_facts: int
    metric: str
    baseline: float
    current: float | None
    repeats: int | None
    status: str  # ok | improved | REGRESSED | missing

    @property
    def change(self) -> float | None:
        if self.current is None or self.baseline == 0:
            return None
        return self.current / self.baseline - 1.0


@dataclass(frozen=True)
class NewBaseline:
    """An environment of the current runs that had no baseline entry, and why."""

    environment: Environment
    reason: str  # the nearest recorded environment's differing keys, or no entry on the GPU


@dataclass(frozen=True)
class Comparison:
    """What `compare` found: the checks, and the environments with no baseline."""

    checks: list[Check]
    new: list[NewBaseline]


# ---- the current runs

def record_environment(record: Record, source: str | Path) -> dict[str, str | None]:
    """The ENV_KEY values of a record; InputError naming `source` when its device class is
    empty (the baselines are keyed by it: such a run cannot be checked, and is never
    dropped silently)."""
    if not record.device_class.strip():
        raise InputError(f"{source}: invalid result record at 'device_class': empty (the "
                         "regression baselines are keyed by the device class)")
    fp = record.fingerprint or {}
    precision = record.precision or {}
    return {"device_class": record.device_class, "driver": _text(fp.get("driver")),
            "torch": _text(fp.get("torch")), "cuda": _text(fp.get("cuda")),
            "dtype": _text(precision.get(DTYPE_FIELD))}


def load_checked_runs(inputs: Sequence[str | Path]) -> pd.DataFrame:
    """The runs frame of the records named by `inputs` (harness.reports.inputs.record_paths),
    each validated (schema, RUNS_NEEDS, device class) before any is used, with the ENV_KEY
    columns."""
    rows = []
    for path in record_paths(inputs):
        record = load_record(path)
        check_ok_record(record, RUNS_NEEDS, path)
        rows.append({**flatten(record), **record_environment(record, path)})
    return pd.DataFrame(rows)


def current_metrics(runs: pd.DataFrame, baselines: Sequence[str] | None = None
                    ) -> list[dict[str, Any]]:
    """One entry per (environment, experiment, backbone, method, n_facts) of a runs frame
    with its metrics: the median over repeats (seeds) of each repeat's value, and how many
    repeats gave one (`repeats`). A repeat's speedup is against the strongest of
    `baselines` (None: the registry's gradient methods) in that repeat (Table 1's rule).
    Reference rows (registry kind "reference": no edit, so no speed or memory to regress)
    are left out."""
    baselines = gradient_baselines(baselines)
    if runs.empty:
        return []
    runs = runs.copy()
    runs["_env"] = [Environment.of(row) for row in runs.to_dict("records")]
    envs = list(dict.fromkeys(runs["_env"]))
    runs["_env_id"] = runs["_env"].map(envs.index)
    repeats: dict[tuple, _Repeats] = {}
    for (env_id, exp, n, _seed), group in runs.groupby(
            ["_env_id", "experiment", "n_facts", "seed"], sort=True):
        for rec in repeat_metrics(group, baselines):
            key = (env_id, str(exp), rec["backbone"], rec["method"], int(n))
            repeats.setdefault(key, _Repeats()).add(rec)
    return [{**asdict(envs[env_id]), "experiment": exp, "backbone": backbone, "method": method,
             "n_facts": n, "repeats": found.count,
             **{metric: _median(found.values[metric]) for metric in METRICS}}
            for (env_id, exp, backbone, method, n), found in sorted(
                repeats.items(), key=lambda item: tuple(map(str, item[0])))]


@dataclass
class _Repeats:
    """The repeats (seeds) of one entry: how many gave a result, and each metric's values
    (a repeat without a value for a metric, e.g. no converged gradient baseline, adds none)."""

    count: int = 0
    values: dict[str, list[float]] = field(default_factory=lambda: {m: [] for m in METRICS})

    def add(self, metrics: dict[str, Any]) -> None:
        self.count += 1
        for metric in METRICS:
            if metrics[metric] is not None:
                self.values[metric].append(metrics[metric])


def repeat_metrics(group: pd.DataFrame, baselines: Sequence[str]) -> list[dict[str, Any]]:
    """The metrics of each (backbone, method) in the runs of one repeat (one environment,
    experiment, fact count and seed)."""
    summary = summarise(group).sort_values("backbone", kind="stable")
    add_speedups(summary, baselines)  # Table 1's rule
    out = []
    for rec in summary.to_dict("records"):
        if is_reference(str(rec["method"])):
            continue
        ratio = (rec["peak_mem_bytes"] / rec["inference_mem_bytes"]
                 if rec["inference_mem_bytes"] else None)
        out.append({"backbone": str(rec["backbone"]), "method": str(rec["method"]),
                    "speedup": finite_or_none(rec["speedup"]),
                    "peak_mem_ratio": finite_or_none(ratio)})
    return out


def _median(values: list[float]) -> float | None:
    """The median rounded to 6 digits, or None when no repeat gave a value."""
    return round(statistics.median(values), 6) if values else None


def check_repeats(current: list[dict[str, Any]], repeats: int, source: str) -> None:
    """InputError naming the first entry that rests on fewer than `repeats` repeats."""
    for entry in current:
        if entry["repeats"] < repeats:
            raise InputError(
                f"{source}: {_key_text(entry)}: {entry['repeats']} repeat(s) with a result, "
                f"--repeats asks for {repeats} (config `seeds`, regression.repeats)")


def _key_text(entry: dict[str, Any]) -> str:
    """An entry's key as messages name it: its recorded (non-null) KEY values."""
    return ", ".join(str(entry[k]) for k in KEY if entry.get(k) is not None)


# ---- comparison

def compare(baseline: dict[str, Any], current: list[dict[str, Any]], tolerance: float
            ) -> Comparison:
    """Checks of every baseline entry of an environment the current runs were measured in,
    and the current environments without any entry (with the reason)."""
    now = {_full_key(e): e for e in current}
    by_env: dict[Environment, list[dict[str, Any]]] = {}
    for entry in baseline.get("entries", []):
        by_env.setdefault(Environment.of(entry), []).append(entry)
    checks: list[Check] = []
    new: list[NewBaseline] = []
    for env in dict.fromkeys(Environment.of(e) for e in current):
        if env not in by_env:
            new.append(NewBaseline(env, missing_reason(env, list(by_env))))
            continue
        for entry in by_env[env]:
            found = now.get(_full_key(entry))
            checks += [_metric_check(env, entry, found, metric, better, tolerance)
                       for metric, better in METRICS.items() if entry.get(metric) is not None]
    return Comparison(checks, new)


def _full_key(entry: dict[str, Any]) -> tuple:
    return tuple(_text(entry.get(k)) if k in ENV_KEY else entry[k] for k in KEY)


def _metric_check(env: Environment, entry: dict[str, Any], found: dict[str, Any] | None,
                  metric: str, better: str, tolerance: float) -> Check:
    base = float(entry[metric])
    value = None if found is None else found.get(metric)
    if value is None:
        status = "missing"
    elif better == "higher":
        status = ("REGRESSED" if value < base * (1 - tolerance)
                  else "improved" if value > base * (1 + tolerance) else "ok")
    else:
        status = ("REGRESSED" if value > base * (1 + tolerance)
                  else "improved" if value < base * (1 - tolerance) else "ok")
    return Check(env, entry["experiment"], entry["backbone"], entry["method"],
                 int(entry["n_facts"]), metric, base, value,
                 None if found is None else found.get("repeats"), status)


def missing_reason(env: Environment, recorded: list[Environment]) -> str:
    """Why `env` has no baseline: the keys on which the nearest environment recorded on the
    same GPU differs, or that the GPU has none."""
    same_gpu = [r for r in recorded if r.device_class == env.device_class]
    if not same_gpu:
        return f"no entry for device class {env.device_class}"
    nearest = min(same_gpu, key=lambda r: len(env.differences(r)))
    return ("the entries recorded on this device class differ in "
            + ", ".join(env.differences(nearest)))


def render(checks: list[Check], tolerance: float, tolerance_source: str) -> str:
    headers = ["device", "experiment", "backbone", "method", "n", "metric", "baseline",
               "current", "repeats", "change", "status"]
    rows = [[c.environment.device_class, c.experiment, c.backbone, c.method, str(c.n_facts),
             c.metric, f"{c.baseline:.3f}", "--" if c.current is None else f"{c.current:.3f}",
             "--" if c.repeats is None else str(c.repeats),
             "--" if c.change is None else f"{c.change:+.1%}", c.status] for c in checks]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths))  # noqa: E731
    envs = dict.fromkeys(c.environment for c in checks)
    out = [f"environment: {env.describe()}" for env in envs]
    out += [line(headers), line(["-" * w for w in widths])] + [line(r) for r in rows]
    bad = sum(c.status == "REGRESSED" for c in checks)
    out.append(f"\n{len(checks)} checks, {bad} regressed (median over repeats; tolerance "
               f"{tolerance:.0%} {tolerance_source}; speedup must stay >= baseline x "
               f"{1 - tolerance:.2f}, peak-memory ratio <= baseline x {1 + tolerance:.2f})")
    return "\n".join(out) + "\n"


NOTE = ("speedup = strongest converged gradient baseline edit time / method edit time; "
        "peak_mem_ratio = peak edit memory / inference memory; each the median over the "
        "entry's repeats (seeds); entries keyed by GPU (device class), driver, torch, CUDA "
        "and dtype")


# ---- the baseline file

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
        key = _full_key(entry)
        if key in seen:
            raise InputError(f"{path}: invalid baseline at 'entries/{j}': same key as entry "
                             f"{seen[key]} ({_key_text(entry)})")
        seen[key] = j
    return payload


def write_baseline(path: Path, current: list[dict[str, Any]], tolerance: float) -> None:
    """Record `current` as the baseline of its environments (entries of other environments,
    and the file's other top-level fields, are kept; a malformed existing file is an
    InputError and is left as it is)."""
    envs = {Environment.of(e) for e in current}
    previous: dict[str, Any] = read_baseline(path) if path.is_file() else {}
    kept = [e for e in previous.get("entries", []) if Environment.of(e) not in envs]
    payload = {**previous, "schema": 2, "tolerance": tolerance,
               "note": previous.get("note", NOTE),
               "entries": sorted(kept + current, key=lambda e: tuple(map(str, _full_key(e))))}
    write_text_atomic(path, json.dumps(payload, indent=2, allow_nan=False) + "\n")


def baseline_tolerance(baseline: dict[str, Any], path: Path, given: float | None
                       ) -> tuple[float, str]:
    """(tolerance, where it came from): the file's, else --tolerance, else the default."""
    if "tolerance" in baseline:
        note = f"from {path}"
        if given is not None and given != baseline["tolerance"]:
            note += f"; --tolerance {given:g} applies only to a file without one"
        return float(baseline["tolerance"]), note
    if given is not None:
        return given, "from --tolerance"
    return DEFAULT_TOLERANCE, "(default)"


# ---- command line

def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m harness.regress", description=__doc__,
                                epilog=EXIT_STATUS,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("records", nargs="+",
                   help="job records: JSON files, or directories searched for them (results/runs)")
    p.add_argument("--baseline", required=True, help="baseline JSON (reports/baseline_speedups.json)")
    p.add_argument("--tolerance", type=float, default=None,
                   help=f"used only when the baseline file has no `tolerance` (and written "
                        f"into a new one); default {DEFAULT_TOLERANCE}")
    p.add_argument("--repeats", type=int, default=1,
                   help="repeats (seeds) each checked entry must have; the median is compared")
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
        _write_out(args.out, f"error: {message}\n", EXIT_BAD_INPUT)
        return EXIT_BAD_INPUT

    if args.tolerance is not None and not 0 <= args.tolerance < 1:
        return error(f"--tolerance must be in [0, 1), got {args.tolerance}")
    if args.repeats < 1:
        return error(f"--repeats must be at least 1, got {args.repeats}")
    try:
        return _check(args)
    except (InputError, RecordError) as exc:  # bad input; anything else is a bug (exit 3)
        return error(str(exc))
    except Exception:
        _write_out(args.out, "error: internal error in harness.regress (a bug, not a "
                             "regression; traceback on stderr)\n", EXIT_BUG)
        raise


def _write_out(out: str | None, text: str, status: int) -> None:
    """The report, ending with its outcome line, into --out (atomically), if given."""
    if out:
        write_text_atomic(out, f"{text}outcome: {OUTCOMES[status]} (exit {status})\n")


def _check(args: argparse.Namespace) -> int:
    # Both inputs are validated before anything is checked or written.
    runs = load_checked_runs(args.records)
    baseline_path = Path(args.baseline)
    baseline = read_baseline(baseline_path) if (
        baseline_path.is_file() or not args.write_baseline) else {}
    tolerance, tolerance_source = baseline_tolerance(baseline, baseline_path, args.tolerance)
    current = current_metrics(runs, None if args.gradient_baselines is None else [
        b for b in args.gradient_baselines if b != "none"])
    if not current:
        raise InputError(f"{describe(args.records)}: no completed runs to check")
    check_repeats(current, args.repeats, describe(args.records))
    if args.write_baseline:  # an explicit --tolerance is recorded with the new values
        write_baseline(baseline_path, current,
                       tolerance if args.tolerance is None else args.tolerance)
        return _report(args.out, f"{baseline_path}: recorded {len(current)} entries\n",
                       EXIT_OK)
    result = compare(baseline, current, tolerance)
    messages = record_new_baselines(baseline_path, result.new, current, tolerance)
    text = "\n".join(messages) + "\n" if messages else ""
    if result.checks:
        text += ("\n" if messages else "") + render(result.checks, tolerance, tolerance_source)
    failed = any(c.status == "REGRESSED" or (c.status == "missing" and not args.allow_missing)
                 for c in result.checks)
    status = EXIT_REGRESSED if failed else EXIT_NO_BASELINE if result.new else EXIT_OK
    return _report(args.out, text, status)


def record_new_baselines(path: Path, new: list[NewBaseline], current: list[dict[str, Any]],
                         tolerance: float) -> list[str]:
    """Write the current values of each environment without a baseline into the file; one
    message each, naming the file and why there was none."""
    if not new:
        return []
    envs = {n.environment for n in new}
    fresh = [e for e in current if Environment.of(e) in envs]
    write_baseline(path, fresh, tolerance)
    return [f"no baseline for {n.environment.describe()} in {path} ({n.reason}): recorded "
            f"the current values ({sum(Environment.of(e) == n.environment for e in fresh)} "
            f"entries) as its new baseline" for n in new]


def _report(out: str | None, text: str, status: int) -> int:
    print(text + f"outcome: {OUTCOMES[status]} (exit {status})")
    _write_out(out, text, status)
    return status


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
