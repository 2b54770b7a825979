"""Sequential insertion: the last `n_facts` records of `full` edited in one at a time by
the job's `method` (one whose registry entry says it inserts facts one at a time,
`MethodInfo.sequential`; a method that does not is a bad job, exit 2).

After each insertion (every `eval_every`), the retain sample and the facts inserted so far
are scored; the record's `curve` holds one point per evaluation:
{n_inserted, insert_s, retain_delta, forget_delta} (mean nats per sample vs unedited).
An out-of-memory error is recorded as `status: oom` with the phase it happened in and the
insertion it reached (`error`, `details.oom_phase`, `details.oom_at_insertion`; the curve
up to there), as Table 1 records it.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from typing import Any

import torch

from harness.backbones.registry import load_backbone
from harness.evaluation.mean_scores import mean_logp
from harness.jobs.selection import last_n_selection
from harness.jobs.spec import EXIT_BAD_JOB, BackboneJob, read_job, set_threads
from harness.jobs.run_method import JobPhases, oom_report, release_device_memory
from harness.measure import Measurer, fingerprint, is_oom
from harness.methods.registry import get_method, method_info, sequential_methods
from harness.results.record import SCHEMA_VERSION, Record
from harness.results.store import write_record


@dataclass
class SequentialJob(BackboneJob):
    """One sequential-insertion job (rule run_sequential)."""

    method: str  # config sequential.method (default: the registry's sequential method)
    tofu_dir: str
    n_facts: int  # the last n records of `full`, inserted one at a time
    eval_every: int  # score after every `eval_every` insertions (and after the last)
    retain_eval_size: int
    retain_train_size: int
    eval_seed: int
    seed: int
    estimator: str
    batch_size: int  # scoring batch (config evaluation.batch_size)
    method_config: dict[str, Any]
    tuned_config: str | None  # tuning record whose chosen point is applied
    out: str
    config_hash: str


def not_sequential(method: str) -> str | None:
    """Why `method` cannot run this job (unknown, or it does not insert facts one at a
    time), or None."""
    try:
        if method_info(method).sequential:
            return None
    except KeyError as exc:
        return str(exc.args[0])
    return (f"method '{method}' does not insert facts one at a time (MethodInfo.sequential); "
            f"methods that do: {', '.join(sequential_methods()) or 'none'}")


def run(job: SequentialJob) -> dict[str, Any]:
    from harness.timerome.tuning import apply_tuning

    start = time.perf_counter()
    set_threads(job.threads)
    n, every, estimator, seed, batch = (job.n_facts, job.eval_every, job.estimator, job.seed,
                                        job.batch_size)
    sel = last_n_selection(job.tofu_dir, n, n, job.retain_eval_size, job.eval_seed,
                           job.retain_train_size)
    spec = job.spec()
    method_config, note = apply_tuning(job.method_config, job.tuned_config,
                                       method_info(job.method).tunable_keys, n)
    method = get_method(job.method, method_config)
    measurer = Measurer(torch.device(spec.device))
    phases = JobPhases(measurer)
    status, error, oom_details = "ok", None, {}
    forget_before: list[float] = []
    retain_before: float | None = None
    curve: list[dict[str, Any]] = []
    insert_total = 0.0
    inserted = 0
    statistics_s: float | None = None
    try:
        with phases.phase("load", "load"):
            backbone = load_backbone(spec)
        with phases.phase("score_before", "inference"):
            forget_before = [mean_logp(backbone, [f], estimator, batch, seed) for f in sel.forget]
            retain_before = mean_logp(backbone, sel.retain_eval, estimator, batch, seed)
        statistics = None  # per-backbone, computed once: in no insertion's time
        if method_info(job.method).backbone_statistics:
            with phases.phase("statistics", "other"):
                t0 = time.perf_counter()
                statistics = method.backbone_statistics(backbone, sel.retain_train, seed)
                statistics_s = time.perf_counter() - t0
        editor = method.sequential_editor(backbone, sel.retain_train, seed, statistics)
        for i, fact in enumerate(sel.forget, 1):
            t0 = time.perf_counter()
            with phases.phase("edit", "edit"):
                editor.insert(fact)
            inserted = i
            insert_s = time.perf_counter() - t0
            insert_total += insert_s
            if i % every == 0 or i == n:
                with phases.phase("score_after", "eval"):
                    retain_now = mean_logp(backbone, sel.retain_eval, estimator, batch, seed)
                    forget_now = mean_logp(backbone, sel.forget[:i], estimator, batch, seed)
                curve.append({"n_inserted": i, "insert_s": insert_s,
                              "retain_logp": retain_now,
                              "retain_delta": retain_now - retain_before,
                              "forget_delta": forget_now - sum(forget_before[:i]) / i})
    except BaseException as exc:  # noqa: BLE001 - only OOM is recorded, the rest re-raised
        if not is_oom(exc):
            raise
        status = "oom"
        error, oom_details = oom_report(exc, phases.current)
        oom_details["oom_at_insertion"] = inserted + 1 if phases.current == "edit" else inserted
    finally:
        if status == "oom":
            release_device_memory()  # `exc` and its traceback are gone here
        measurer.close()
    memory = measurer.summary()
    fp = fingerprint(spec.device, job.config_hash, measurer.driver)
    details: dict[str, Any] = {"notes": {"tuning": note}} if note else {}
    if status == "oom":
        return oom_record(job, sel, forget_before, retain_before, curve, memory, fp,
                          measurer.seconds(), method_config, {**details, **oom_details}, error,
                          time.perf_counter() - start)
    last = curve[-1]
    return Record(
        schema_version=SCHEMA_VERSION, status="ok", experiment="sequential",
        backbone=job.backbone, method=job.method, split=sel.split, n_facts=n, seed=seed,
        estimator=estimator, n_retain_eval=len(sel.retain_eval),
        forget_logp_before=sum(forget_before) / n,
        forget_logp_after=sum(forget_before) / n + last["forget_delta"],
        retain_logp_before=retain_before, retain_logp_after=last["retain_logp"],
        forget_rougeL_after=None, retain_rougeL_after=None,
        forget_quality=None, model_utility=None,
        wall_clock_s=insert_total, job_wall_s=time.perf_counter() - start,
        statistics_s=statistics_s,
        phase_seconds=measurer.seconds(), method_phase_seconds={},
        **memory_columns(memory),
        converged=True, collapsed=False, collapse_reason=None, steps=None,
        device=fp["device"], device_class=fp["device_class"], git_commit=fp["git_commit"],
        subject_source=sel.subject_source(), fingerprint=fp,
        method_config=method_config, details=details, curve=curve, error=None,
    ).to_dict()


def memory_columns(memory: Any) -> dict[str, Any]:
    """The record's memory fields from the job's `MemorySummary`."""
    return {"peak_mem_bytes": memory.peak_mem_bytes,
            "inference_mem_bytes": memory.inference_mem_bytes,
            "extra_mem_bytes": memory.extra_mem_bytes, "model_mem_bytes": memory.model_mem_bytes,
            "nvml_peak_bytes": memory.nvml_peak_bytes, "memory_source": memory.memory_source,
            **memory.record_fields()}


def oom_record(job: SequentialJob, sel: Any, forget_before: list[float],
               retain_before: float | None, curve: list[dict[str, Any]], memory: Any,
               fp: dict[str, Any], phase_seconds: dict[str, float],
               method_config: dict[str, Any], details: dict[str, Any], error: str | None,
               job_wall_s: float) -> dict[str, Any]:
    """The record of a run stopped by an out-of-memory error: the scores before (when they
    were computed), the curve up to the last evaluation, no after-scores, no edit time."""
    n = job.n_facts
    complete = len(forget_before) == n
    return Record(
        schema_version=SCHEMA_VERSION, status="oom", experiment="sequential",
        backbone=job.backbone, method=job.method, split=sel.split, n_facts=n, seed=job.seed,
        estimator=job.estimator, n_retain_eval=len(sel.retain_eval),
        forget_logp_before=sum(forget_before) / n if complete else None,
        forget_logp_after=None, retain_logp_before=retain_before, retain_logp_after=None,
        forget_rougeL_after=None, retain_rougeL_after=None,
        forget_quality=None, model_utility=None,
        wall_clock_s=None, job_wall_s=job_wall_s,
        phase_seconds=phase_seconds, method_phase_seconds={},
        **memory_columns(memory),
        converged=None, collapsed=None, collapse_reason=None, steps=None,
        device=fp["device"], device_class=fp["device_class"], git_commit=fp["git_commit"],
        subject_source=sel.subject_source(), fingerprint=fp,
        method_config=method_config, details=details, curve=curve, error=error,
    ).to_dict()


def main(argv: list[str] | None = None) -> int:
    job = read_job(SequentialJob, argv, "python -m harness.jobs.sequential", __doc__)
    problem = not_sequential(job.method)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return EXIT_BAD_JOB
    record = run(job)
    write_record(job.out, record)
    print(json.dumps({"n_facts": record["n_facts"], "retain_delta":
                      record["retain_logp_after"] - record["retain_logp_before"],
                      "wall_clock_s": record["wall_clock_s"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
