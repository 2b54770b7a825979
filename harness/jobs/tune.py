"""Tune TimeROME-DLM's (alpha, lambda, q) on the validation split of one backbone.

Writes `harness.timerome.tuning`'s result JSON (the `chosen` point is what the table and
transfer jobs apply unchanged to every backbone).
"""

from __future__ import annotations

import argparse
import json
import sys

from harness.data import load_split
from harness.jobs.selection import DEFAULT_RETAIN_TRAIN_SIZE
from harness.jobs.spec import job_argument, job_backbone, parse_job


def main(argv: list[str] | None = None) -> int:
    from harness.timerome.config import TimeROMEConfig
    from harness.timerome.tuning import TuningGrid, retain_sample, tune, write_tuning

    parser = argparse.ArgumentParser(prog="python -m harness.jobs.tune", description=__doc__)
    job_argument(parser)
    job = parse_job(parser.parse_args(argv).job)
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
    write_tuning(result, job["out"])
    print(json.dumps({"chosen": None if result.chosen is None else vars(result.chosen),
                      "seconds": round(result.seconds, 2), "points": len(result.grid)}))
    if result.chosen is None:
        print(f"error: no grid point keeps the retain drop <= {result.max_retain_drop} nats",
              file=sys.stderr)
    elif result.edge_warning():
        print(result.edge_warning(), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
