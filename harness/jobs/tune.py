"""Tune TimeROME-DLM's (alpha, lambda, q) on the validation split of one backbone.

Writes `harness.timerome.tuning`'s result JSON (the `chosen` point is what the table and
transfer jobs apply unchanged to every backbone).

When no grid point is utility-safe, the job key `on_no_safe_point` (config key
`tuning.on_no_safe_point`) decides: `fail` (the default, ON_NO_SAFE_POINT_DEFAULT) prints
an `error:` line, writes no record and exits 1, so the workflow stops instead of running
TimeROME-DLM untuned; `fallback_defaults` writes the record with `chosen: null`,
`fallback: true` and the reason, warns, and exits 0 (the method jobs then run with the
configured, untuned hyperparameters and say so in their records).
Exit status: 0 tuned (or fell back as configured); 1 no utility-safe point; 2 bad job.
"""

from __future__ import annotations

import argparse
import json
import sys

from harness.data import load_split
from harness.jobs.selection import DEFAULT_RETAIN_TRAIN_SIZE
from harness.jobs.spec import job_argument, job_backbone, parse_job

# `tuning.on_no_safe_point`: its default is stated here only (the workflow passes the
# config value, or nothing).
ON_NO_SAFE_POINT_DEFAULT = "fail"
ON_NO_SAFE_POINT_CHOICES = ("fail", "fallback_defaults")
EXIT_NO_SAFE_POINT, EXIT_BAD_JOB = 1, 2


def on_no_safe_point(job: dict) -> str | None:
    """The job's policy (absent or null: the default); None if it is not a known one."""
    value = job.get("on_no_safe_point")
    if value is None:
        return ON_NO_SAFE_POINT_DEFAULT
    return value if value in ON_NO_SAFE_POINT_CHOICES else None


def main(argv: list[str] | None = None) -> int:
    from harness.timerome.config import TimeROMEConfig
    from harness.timerome.tuning import TuningGrid, retain_sample, tune, write_tuning

    parser = argparse.ArgumentParser(prog="python -m harness.jobs.tune", description=__doc__)
    job_argument(parser)
    job = parse_job(parser.parse_args(argv).job)
    policy = on_no_safe_point(job)
    if policy is None:
        print(f"error: on_no_safe_point {job['on_no_safe_point']!r} is not one of "
              f"{', '.join(ON_NO_SAFE_POINT_CHOICES)} (config key tuning.on_no_safe_point)",
              file=sys.stderr)
        return EXIT_BAD_JOB
    backbone = job_backbone(job)
    validation = load_split(job["tofu_dir"], job["validation_split"])
    forget_authors = {f.author_id for f in load_split(job["tofu_dir"], job["forget_split"])}
    retain_pool = load_split(job["tofu_dir"], job["retain_split"])
    excluded = {f.author_id for f in validation} | forget_authors
    retain = retain_sample(retain_pool, int(job["retain_eval_size"]), exclude_authors=excluded)
    # Calibration facts for the edit's retain statistics, disjoint from the scored ones.
    eligible = len([f for f in retain_pool if f.author_id not in excluded]) - len(retain)
    wanted = int(job.get("retain_train_size", DEFAULT_RETAIN_TRAIN_SIZE))
    calibration = retain_sample(retain_pool, min(wanted, eligible), exclude_authors=excluded,
                                exclude=retain)
    grid = job.get("grid") or {}
    defaults = TuningGrid()
    grid = TuningGrid(alphas=tuple(grid.get("alpha", defaults.alphas)),
                      lams=tuple(grid.get("lam", defaults.lams)),
                      qs=tuple(grid.get("q", defaults.qs)))
    base = TimeROMEConfig.from_dict({**job.get("method_config", {}), "seed": job["seed"]})
    result = tune(backbone, validation, retain, base, grid,
                  max_retain_drop=float(job.get("max_retain_drop", 1.0)),
                  calibration=calibration)
    print(json.dumps({"chosen": None if result.chosen is None else vars(result.chosen),
                      "seconds": round(result.seconds, 2), "points": len(result.grid)}))
    if result.chosen is None:
        reason = result.no_safe_point()
        if policy == "fail":
            print(f"error: {reason}; no tuning record written. Widen tuning.grid or raise "
                  "tuning.max_retain_drop, or set tuning.on_no_safe_point: fallback_defaults "
                  "to run TimeROME-DLM untuned", file=sys.stderr)
            return EXIT_NO_SAFE_POINT
        result.fallback = True
        result.fallback_reason = (f"{reason}; tuning.on_no_safe_point is fallback_defaults: "
                                  "TimeROME-DLM runs with its default hyperparameters "
                                  "(method_config, untuned)")
        print(f"warning: {result.fallback_reason}", file=sys.stderr)
    elif result.edge_warning():
        print(result.edge_warning(), file=sys.stderr)
    write_tuning(result, job["out"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
