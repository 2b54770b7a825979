"""Tune TimeROME-DLM's (alpha, lambda, q) on the validation split of one backbone.

Writes `harness.timerome.tuning`'s result JSON (the `chosen` point is what the table and
transfer jobs apply unchanged to every backbone).

When no grid point is utility-safe, the job field `on_no_safe_point` (config key
`tuning.on_no_safe_point`, default in the config schema) decides: `fail` prints an `error:`
line, writes no record and exits 1, so the workflow stops instead of running TimeROME-DLM
untuned; `fallback_defaults` writes the record with `chosen: null`, `fallback: true` and
the reason, warns, and exits 0 (the method jobs then run with the configured, untuned
hyperparameters and say so in their records).
Exit status: 0 tuned (or fell back as configured); 1 no utility-safe point; 2 bad job.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from typing import Any

from harness.data import load_split
from harness.jobs.spec import EXIT_BAD_JOB, BackboneJob, read_job

ON_NO_SAFE_POINT_CHOICES = ("fail", "fallback_defaults")
EXIT_NO_SAFE_POINT = 1


@dataclass
class TuneJob(BackboneJob):
    """One tuning job (rule tune_timerome): the grid searched on `validation_split`, the
    retain drop measured on `retain_eval_size` retain facts, the edit's retain statistics
    from up to `retain_train_size` others; both samples are blocks of the permutation
    (`eval_seed`) that gives Table 1 its scored retain facts, and disjoint from those
    (`harness.jobs.selection.tuning_retain`)."""

    tofu_dir: str
    validation_split: str
    forget_split: str
    retain_split: str
    retain_eval_size: int
    retain_train_size: int
    eval_seed: int  # config data.eval_seed: the seed of Table 1's retain samples
    seed: int
    grid: dict[str, list[float]]  # config tuning.grid; a key left out: TuningGrid's default
    max_retain_drop: float
    on_no_safe_point: str  # one of ON_NO_SAFE_POINT_CHOICES
    # config tuning.groups: each count's grid on up to this many disjoint groups of that many
    # validation facts, pooled (harness.timerome.tuning.pool_groups)
    groups: int
    method_config: dict[str, Any]
    out: str
    # config tuning.fact_counts: the grid runs on the first n validation facts for each n; a
    # point must be safe at every n (harness.timerome.tuning.tune_counts). Empty: all of them.
    fact_counts: list[int] = field(default_factory=list)
    # the most facts the workflow puts into one memory (scaling, sequential; the job adds
    # the forget split's size, Table 1's memory): a point's retain drop at the largest count,
    # scaled linearly to it, must be safe too. None: the forget split's size alone.
    extrapolate_to: int | None = None
    # config tuning.max_retain_gate_opens (tune_counts' max_gate_opens); None: the budget
    # follows from max_retain_drop and the damage per opening alone
    max_retain_gate_opens: float | None = None


def main(argv: list[str] | None = None) -> int:
    from harness.timerome.config import TimeROMEConfig
    from harness.jobs.selection import tuning_retain
    from harness.timerome.tuning import TuningGrid, tune_counts, write_tuning

    job = read_job(TuneJob, argv, "python -m harness.jobs.tune", __doc__)
    if job.on_no_safe_point not in ON_NO_SAFE_POINT_CHOICES:
        print(f"error: on_no_safe_point {job.on_no_safe_point!r} is not one of "
              f"{', '.join(ON_NO_SAFE_POINT_CHOICES)} (config key tuning.on_no_safe_point)",
              file=sys.stderr)
        return EXIT_BAD_JOB
    if isinstance(job.groups, bool) or not isinstance(job.groups, int) or job.groups < 1:
        print(f"error: groups {job.groups!r} is not a whole number >= 1 (config key "
              "tuning.groups: validation groups per fact-count regime)", file=sys.stderr)
        return EXIT_BAD_JOB
    # Scored retain facts, and calibration facts for the edit's retain statistics (disjoint
    # from each other and from Table 1's scored retain facts), before the model loads.
    try:
        retain, calibration = tuning_retain(job.tofu_dir, job.forget_split, job.retain_split,
                                            job.retain_eval_size, job.eval_seed,
                                            job.retain_train_size, job.validation_split)
    except ValueError as exc:
        print(f"error: tuning: {exc} (config data.retain_eval_size: Table 1's scored sample "
              "and the tuning's)", file=sys.stderr)
        return EXIT_BAD_JOB
    if not calibration:
        print(f"error: tuning: no retain facts left for the edit's retain statistics after "
              f"Table 1's and the tuning's scored samples (2 x {job.retain_eval_size}); "
              "use more retain authors or a smaller data.retain_eval_size", file=sys.stderr)
        return EXIT_BAD_JOB
    try:
        grid = TuningGrid.from_config(job.grid)
    except ValueError as exc:
        print(f"error: config {exc}", file=sys.stderr)
        return EXIT_BAD_JOB
    # Table 1 puts the whole forget split into one memory (40 facts on real TOFU's forget01,
    # 10 on the synthetic corpus): the extrapolated regime must reach it too.
    extrapolate_to = max(job.extrapolate_to or 0, len(load_split(job.tofu_dir, job.forget_split)))
    backbone = job.load()
    validation = load_split(job.tofu_dir, job.validation_split)
    base = TimeROMEConfig.from_dict({**job.method_config, "seed": job.seed})
    counts = [n for n in job.fact_counts if n <= len(validation)] or [len(validation)]
    if len(counts) < len(job.fact_counts):
        print(f"warning: tuning.fact_counts {job.fact_counts}: counts above the "
              f"{len(validation)} validation facts are left out", file=sys.stderr)
    result = tune_counts(backbone, validation, retain, counts, base, grid,
                         max_retain_drop=float(job.max_retain_drop), calibration=calibration,
                         extrapolate_to=extrapolate_to,
                         max_gate_opens=job.max_retain_gate_opens, groups=job.groups)
    print(json.dumps({"chosen": None if result.chosen is None else vars(result.chosen),
                      "seconds": round(result.seconds, 2), "points": len(result.grid)}))
    if result.chosen is None:
        reason = result.no_safe_point()
        if job.on_no_safe_point == "fail":
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
    write_tuning(result, job.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
