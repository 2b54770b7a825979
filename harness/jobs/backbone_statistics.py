"""Job: the per-backbone statistics of the methods that declare them, computed once
(rule backbone_statistics).

For each method it takes the same job description as the method's edit jobs (`MethodJob`;
`out` is the statistics file), so it picks exactly the retain facts, seed and config those
jobs use, and writes `Method.backbone_statistics` of the fine-tuned backbone with its
provenance and its wall-clock seconds (harness.backbone_statistics). The backbone is loaded
once for all methods. Every edit job of that backbone and method loads the file instead of
recomputing the statistics inside its timed edit.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Any

import torch

from harness.backbone_statistics import BackboneStatistics, Provenance
from harness.backbones.base import Backbone
from harness.jobs.spec import JobSpec, JobSpecError, MethodJob, read_job
from harness.methods.registry import get_method, method_info


def statistics_config(job: MethodJob) -> dict[str, Any]:
    """The method config the statistics depend on: the job's, less the keys the tune job
    chooses (no statistic depends on them, so one file serves every tuned point)."""
    tuned = set(method_info(job.method).tunable_keys)
    return {k: v for k, v in job.method_config.items() if k not in tuned}


def provenance(job: MethodJob, weights_fingerprint: str, retain) -> Provenance:
    return Provenance.of(job.method, weights_fingerprint, retain, job.seed,
                         statistics_config(job))


@dataclass
class StatisticsJob(JobSpec):
    """The statistics of one backbone: one MethodJob per method (same backbone and seed)."""

    methods: list[MethodJob]

    @classmethod
    def from_dict(cls, payload: Any) -> "StatisticsJob":
        if not isinstance(payload, dict) or set(payload) != {"methods"} \
                or not isinstance(payload["methods"], list) or not payload["methods"]:
            raise JobSpecError("StatisticsJob job description must be {\"methods\": "
                               "[MethodJob, ...]} with at least one method")
        jobs = []
        for i, entry in enumerate(payload["methods"]):
            try:
                jobs.append(MethodJob.from_dict(entry))
            except JobSpecError as exc:
                raise JobSpecError(f"StatisticsJob.methods[{i}]: {exc}") from None
        if len({(j.backbone, j.backbone_path, j.seed) for j in jobs}) != 1:
            raise JobSpecError("StatisticsJob: every method's job must name the same backbone, "
                               "checkpoint and seed")
        return cls(jobs)


def compute(job: MethodJob, backbone: Backbone) -> BackboneStatistics:
    """`job.method`'s statistics of `backbone` (its retain facts: the edit jobs' selection)."""
    from harness.jobs.run_method import select

    torch.manual_seed(job.seed)
    retain = select(job).retain_train
    method = get_method(job.method, statistics_config(job))
    start = time.perf_counter()
    tensors = method.backbone_statistics(backbone, retain, job.seed)
    seconds = time.perf_counter() - start
    return BackboneStatistics(tensors, provenance(job, backbone.identity()["weights_fingerprint"],
                                                  retain), seconds)


def main(argv: list[str] | None = None) -> int:
    job = read_job(StatisticsJob, argv, "harness.jobs.backbone_statistics", __doc__)
    lacking = [j.method for j in job.methods if not method_info(j.method).backbone_statistics]
    if lacking:
        print(f"error: method(s) {', '.join(lacking)} declare no per-backbone statistics",
              file=sys.stderr)
        return 2
    backbone = job.methods[0].load()
    for method_job in job.methods:
        stats = compute(method_job, backbone)
        stats.save(method_job.out)
        print(f"{method_job.backbone}/{method_job.method}: {len(stats.tensors)} tensors in "
              f"{stats.seconds:.3f} s -> {method_job.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
