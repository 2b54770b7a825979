"""Fine-tune one configured backbone (or its retain-only model) into a checkpoint dir.

`python -m harness.jobs.finetune_backbone --job '{"backbone": ..., "backbone_entry": {...},
"tofu_dir": ..., "out": ..., "exclude_splits": [...], "threads": 1}'`
"""

from __future__ import annotations

import argparse
import json
import sys

from harness.finetune import FinetuneConfig, train_backbone
from harness.jobs.spec import backbone_spec, job_argument, parse_job, set_threads


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.jobs.finetune_backbone",
                                     description=__doc__)
    job_argument(parser)
    job = parse_job(parser.parse_args(argv).job)
    set_threads(job.get("threads", 1))
    entry = job["backbone_entry"]
    spec = backbone_spec(job["backbone"], entry, None)
    try:
        cfg = FinetuneConfig(**(entry.get("finetune") or {}))
    except TypeError as exc:
        raise SystemExit(f"backbone '{job['backbone']}': bad finetune config: {exc}") from None
    report = train_backbone(spec, job["tofu_dir"], job["out"], cfg,
                            tuple(job.get("exclude_splits") or ()), progress=False)
    print(json.dumps({"backbone": job["backbone"], "checkpoint": report.checkpoint_dir,
                      "seconds": round(report.seconds, 1), "final_loss": report.final_loss}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
