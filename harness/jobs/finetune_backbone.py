"""Fine-tune one configured backbone (or its retain-only model) into a checkpoint dir.

`python -m harness.jobs.finetune_backbone --job '{"backbone": ..., "backbone_entry": {...},
"tofu_dir": ..., "out": ..., "exclude_splits": [...], "threads": 1}'` (a FinetuneJob).
Exit status: 0 trained; 2 bad job (a field, or the entry's `finetune` config, named).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import Any

from harness.jobs.spec import EXIT_BAD_JOB, JobSpec, backbone_spec, read_job, set_threads


@dataclass
class FinetuneJob(JobSpec):
    """One fine-tuning job (rules finetune_backbone and retain_model)."""

    backbone: str
    backbone_entry: dict[str, Any]  # the config entry without the keys that do not train
    tofu_dir: str
    out: str  # checkpoint directory
    exclude_splits: list[str]  # splits left out of training (the retain model: the forget split)
    threads: int


def main(argv: list[str] | None = None) -> int:
    from harness.finetune import FinetuneConfig, train_backbone

    job = read_job(FinetuneJob, argv, "python -m harness.jobs.finetune_backbone", __doc__)
    set_threads(job.threads)
    spec = backbone_spec(job.backbone, job.backbone_entry, None)
    try:
        cfg = FinetuneConfig(**(job.backbone_entry.get("finetune") or {}))
    except TypeError as exc:
        print(f"error: backbone '{job.backbone}': bad finetune config: {exc}", file=sys.stderr)
        return EXIT_BAD_JOB
    report = train_backbone(spec, job.tofu_dir, job.out, cfg, tuple(job.exclude_splits),
                            progress=False)
    print(json.dumps({"backbone": job.backbone, "checkpoint": report.checkpoint_dir,
                      "seconds": round(report.seconds, 1), "final_loss": report.final_loss}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
