"""Run one unlearning method on one backbone and write its result record.

`python -m harness.jobs.run_method --job '{...MethodJob JSON...}'`

Phases (each timed and memory-measured by `harness.measure.Measurer`):
load -> score_before (inference) -> warm_up -> edit (the method) -> score_after -> generate
-> quality. `warm_up` pays process-wide first-call costs and, for a gradient method, one
lr-0 training step (the method's `warm_up`; results unchanged) outside the edit time.
The record is written only at the very end (atomically): an interrupted job leaves none.
An out-of-memory error (torch.OutOfMemoryError, MemoryError) is recorded as `status: oom`
with the phase it happened in (`error` starts with it; `details.oom_phase`, and the
training loop's own phase and step when it came from there), never as a collapse; the
cache is emptied before anything else runs. The record's `precision` is the run's
precision policy (harness/precision.py, docs/precision.md), the same for every method.
"""

from __future__ import annotations

import gc
import json
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch

from harness.backbone_statistics import BackboneStatistics
from harness.backbones.registry import load_backbone
from harness.data.fact import Fact
from harness.compute import ComputeCounter
from harness.evaluation.finite import finite_or_none
from harness.evaluation.mean_scores import mean_logp, rouge_recall
from harness.evaluation.tofu_quality import QualityInputs, forget_quality_and_utility
from harness.jobs.selection import FactSelection, last_n_selection, split_selection
from harness.jobs.spec import MethodJob, read_job, set_threads
from harness.measure import Measurer, MemorySummary, fingerprint, is_oom, warm_up
from harness.methods import EditRequest, MethodNotApplicable, get_method
from harness.methods.registry import method_info
from harness.precision import PrecisionPolicy, policy_for
from harness.results.record import SCHEMA_VERSION, Record
from harness.results.store import write_record

def tuned_method_config(job: MethodJob, n_facts: int | None = None
                        ) -> tuple[dict[str, Any], str | None]:
    """(the job's method config at the tuning job's chosen point for `n_facts` forget facts,
    a note): the method's tunable keys (its registry entry) read by
    harness.timerome.tuning.apply_tuning (n_facts None: the point of the most facts)."""
    if not job.tuned_config:  # (the tuning module is imported only when a job is tuned)
        return dict(job.method_config), None
    from harness.timerome.tuning import apply_tuning

    return apply_tuning(job.method_config, job.tuned_config,
                        method_info(job.method).tunable_keys, n_facts)


def matched_target(job: MethodJob) -> tuple[float | None, str | None]:
    """(target forget drop, note): the job's fixed target, or the forget drop achieved in
    `job.target_from_record` (matched efficacy). A record without a positive drop (failed,
    or nothing removed) gives no target: the run then stops on plateau or its step cap."""
    if not job.target_from_record:
        return job.target_forget_drop, None
    path = Path(job.target_from_record)
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: cannot read the record to match: {exc}") from None
    before, after = record.get("forget_logp_before"), record.get("forget_logp_after")
    if record.get("status") != "ok" or before is None or after is None:
        return None, f"{path}: status {record.get('status')}, no drop to match; plateau/cap"
    drop = float(before) - float(after)
    if not drop > 0:
        return None, f"{path}: {record.get('method')} removed nothing ({drop:.3f} nats); plateau/cap"
    return drop, f"matched {record.get('method')} forget drop {drop:.3f} nats from {path}"


def select(job: MethodJob) -> FactSelection:
    if job.n_facts is None:
        return split_selection(job.tofu_dir, job.forget_split, job.retain_split,
                               job.retain_eval_size, job.eval_seed, job.retain_train_size,
                               job.validation_split)
    return last_n_selection(job.tofu_dir, job.n_facts, job.max_n_facts or job.n_facts,
                            job.retain_eval_size, job.eval_seed, job.retain_train_size)


def load_statistics(job: MethodJob, weights_fingerprint: str, retain: Sequence[Fact]
                    ) -> BackboneStatistics | None:
    """The method's per-backbone statistics (rule backbone_statistics), checked to be of
    this backbone, retain set, seed and config; None when the job has no file."""
    if not job.statistics:
        return None
    from harness.jobs.backbone_statistics import provenance

    return BackboneStatistics.load(job.statistics,
                                   provenance(job, weights_fingerprint, retain))


def fact_counts(job: MethodJob, selection: FactSelection, scores: dict[str, Any]
                ) -> dict[str, Any]:
    """How many facts each score of the record rests on (the tables' notes read it): the
    forget and scored retain facts, the truth ratios of the forget quality's KS test (one
    per fact of the forget split's perturbed set, each model) and the facts of each model
    utility set (the samples harness.evaluation.tofu_quality draws)."""
    counts: dict[str, Any] = {"forget": len(selection.forget),
                              "retain_eval": len(selection.retain_eval)}
    if scores.get("forget_quality") is None and scores.get("model_utility") is None:
        return counts
    from harness.data import load_split
    from harness.data.splits import perturbed_split_for
    from harness.evaluation.retain_sample import seeded_subset
    from harness.evaluation.tofu_quality import UTILITY_SPLITS

    if scores.get("forget_quality") is not None:
        counts["forget_quality"] = len(load_split(job.tofu_dir,
                                                  perturbed_split_for(job.forget_split)))
    if scores.get("model_utility") is not None:
        counts["model_utility"] = {
            split: len(seeded_subset(load_split(job.tofu_dir, split),
                                     job.evaluation.utility_size, job.eval_seed,
                                     may_be_short=True))
            for split in UTILITY_SPLITS}
    return counts


def empty_scores() -> dict[str, Any]:
    keys = ("forget_logp_before", "forget_logp_after", "retain_logp_before", "retain_logp_after",
            "forget_rougeL_before", "forget_rougeL_after", "retain_rougeL_after",
            "forget_quality", "model_utility")
    return dict.fromkeys(keys)


@dataclass
class JobPhases:
    """The job's `Measurer` phases, remembering which one is running (or last ran) so that
    an out-of-memory error can be recorded with its phase."""

    measurer: Measurer
    current: str = "setup"

    @contextmanager
    def phase(self, name: str, kind: str, **measure: Any) -> Iterator[None]:
        """`Measurer.phase(name, kind, **measure)` (e.g. its `rows`), remembered."""
        self.current = name
        with self.measurer.phase(name, kind, **measure):
            yield
        self.current = f"after {name}"  # not reached when the body raises


def oom_report(exc: BaseException, phase: str) -> tuple[str, dict[str, Any]]:
    """(the record's `error`, its `details` entries) for an out-of-memory error raised in
    job phase `phase`; the training loop's own phase and step when it tagged the error
    (baselines.training.tag_oom)."""
    where: dict[str, Any] = {"oom_phase": phase}
    inner = getattr(exc, "oom_phase", None)
    label = phase
    if inner is not None:
        where["oom_method_phase"] = inner
        where["oom_step"] = getattr(exc, "oom_step", None)
        label = f"{phase}/{inner} (step {where['oom_step']})"
    return f"out of memory in phase {label}: {type(exc).__name__}: {exc}"[:2000], where


def release_device_memory() -> None:
    """Return what an out-of-memory error left cached to the device (after the error and
    its traceback, which hold the failed step's tensors, are gone)."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def precision_policy(job: MethodJob, weight_dtype: torch.dtype, device: torch.device
                     ) -> PrecisionPolicy:
    """The job's precision policy: one for every method (docs/precision.md); gradient
    methods add fp32 master weights and optimizer states."""
    return policy_for(weight_dtype, device, gradient=method_info(job.method).kind == "gradient")


def run(job: MethodJob) -> dict[str, Any]:
    """Do the job; return its record (not yet written)."""
    start = time.perf_counter()
    set_threads(job.threads)
    torch.manual_seed(job.seed)
    selection = select(job)
    spec = job.spec()
    method_config, tuning_note = tuned_method_config(job, len(selection.forget))
    target_drop, target_note = matched_target(job)
    method = get_method(job.method, method_config)
    ev = job.evaluation
    scores = empty_scores()
    outcome, compute = None, None
    status, error = "ok", None
    quality_notes: dict[str, Any] = {}
    measurer = Measurer(torch.device(spec.device))
    phases = JobPhases(measurer)
    weights: dict[str, Any] | None = None
    statistics: BackboneStatistics | None = None
    policy: PrecisionPolicy | None = None
    oom_details: dict[str, Any] = {}
    try:
        with phases.phase("load", "load"):
            backbone = load_backbone(spec)
            policy = precision_policy(job, backbone.dtype, backbone.device)
            policy.apply_tf32()
            weights = backbone.identity()
            statistics = load_statistics(job, weights["weights_fingerprint"],
                                         selection.retain_train)
        with phases.phase("score_before", "inference"):
            scores["forget_logp_before"] = mean_logp(backbone, selection.forget, job.estimator,
                                                     ev.batch_size, job.seed)
            scores["retain_logp_before"] = mean_logp(backbone, selection.retain_eval,
                                                     job.estimator, ev.batch_size, job.seed)
            if ev.rouge:
                scores["forget_rougeL_before"] = rouge_recall(backbone, selection.forget,
                                                              ev.gen_steps, ev.batch_size, job.seed)
        request = EditRequest(backbone=backbone, forget=selection.forget,
                              retain=selection.retain_train, config=method_config,
                              seed=job.seed, target_forget_drop=target_drop,
                              statistics=statistics.tensors if statistics else None)
        with phases.phase("warm_up", "other"):  # first-call costs stay out of every edit
            warm_up(backbone.device)
            method_warm_up = getattr(method, "warm_up", None)
            if method_warm_up is not None:  # gradient methods: one lr-0 training step
                method_warm_up(request)
        compute = ComputeCounter(backbone)  # token passes and FLOPs of the edit only
        with phases.phase("edit", "edit"), compute:
            outcome = method.apply(request)
        edited = outcome.backbone
        with phases.phase("score_after", "eval"):
            scores["forget_logp_after"] = mean_logp(edited, selection.forget, job.estimator,
                                                    ev.batch_size, job.seed)
            scores["retain_logp_after"] = mean_logp(edited, selection.retain_eval,
                                                    job.estimator, ev.batch_size, job.seed)
        if ev.rouge:
            with phases.phase("generate", "eval"):
                scores["forget_rougeL_after"] = rouge_recall(edited, selection.forget,
                                                             ev.gen_steps, ev.batch_size, job.seed)
                scores["retain_rougeL_after"] = rouge_recall(edited, selection.retain_eval,
                                                             ev.gen_steps, ev.batch_size, job.seed)
        if ev.forget_quality or ev.model_utility:
            with phases.phase("quality", "eval"):
                inputs = QualityInputs(job.tofu_dir, job.forget_split, job.estimator,
                                       ev.utility_size, ev.gen_steps, ev.batch_size,
                                       job.eval_seed)
                load_retain = (lambda: load_backbone(replace(spec, path=job.retain_model_path))) \
                    if job.retain_model_path else None
                fq, mu, quality_notes = forget_quality_and_utility(
                    edited, load_retain, inputs, ev.forget_quality, ev.model_utility)
                scores["forget_quality"], scores["model_utility"] = fq, mu
    except MethodNotApplicable as exc:  # recorded; the DAG goes on
        status, error = "not_applicable", f"{type(exc).__name__}: {exc}"[:2000]
    except BaseException as exc:  # noqa: BLE001 - only OOM is recorded, the rest re-raised
        if not is_oom(exc):
            raise
        status = "oom"
        error, oom_details = oom_report(exc, phases.current)
    finally:
        if status == "oom":
            release_device_memory()  # `exc` and its traceback are gone here
        measurer.close()
    if status == "ok":
        check_finite_scores(job, scores)
    memory = measurer.summary()
    edit_seconds = measurer.seconds().get("edit") if status == "ok" else None
    if edit_seconds is not None:  # the harness's bookkeeping inside the edit is not its time
        edit_seconds -= sum(outcome.phase_seconds.get(p, 0.0) for p in outcome.excluded_phases)
    fp = fingerprint(spec.device, job.config_hash, measurer.driver)
    if tuning_note:
        quality_notes = {**quality_notes, "tuning": tuning_note}
    if statistics is not None:
        quality_notes = {**quality_notes, "statistics": job.statistics}
    if target_note:
        quality_notes = {**quality_notes, "target": target_note}
    if status == "ok":
        quality_notes = {**quality_notes, "fact_counts": fact_counts(job, selection, scores)}
    return build_record(job, selection, scores, memory, measurer.seconds(), edit_seconds,
                        outcome, status, error, fp, method_config, quality_notes,
                        time.perf_counter() - start, weights, compute,
                        statistics.seconds if statistics is not None else None,
                        policy, oom_details)


class NonFiniteScores(RuntimeError):
    """A method left the model producing NaN or infinite scores: no `ok` record."""


def check_finite_scores(job: MethodJob, scores: dict[str, Any]) -> None:
    """Fail the job (no record is written) when a computed score is NaN or infinite."""
    bad = {k: v for k, v in scores.items()
           if isinstance(v, (int, float)) and finite_or_none(v) is None}
    if bad:
        raise NonFiniteScores(
            f"{job.backbone} / {job.method} (seed {job.seed}): non-finite score(s) "
            f"{', '.join(f'{k}={v}' for k, v in sorted(bad.items()))}; check the method's "
            f"config ({json.dumps(job.method_config, default=str)})")


def build_record(job: MethodJob, selection: FactSelection, scores: dict[str, Any],
                 memory: MemorySummary, phases: dict[str, float], edit_seconds: float | None,
                 outcome: Any, status: str, error: str | None, fp: dict[str, Any],
                 method_config: dict[str, Any], notes: dict[str, Any],
                 job_wall_s: float, weights: dict[str, Any] | None = None,
                 compute: ComputeCounter | None = None,
                 statistics_seconds: float | None = None,
                 precision: PrecisionPolicy | None = None,
                 oom_details: dict[str, Any] | None = None) -> dict[str, Any]:
    details = dict(getattr(outcome, "details", None) or {})
    details.update(oom_details or {})
    details.pop("tie", None)  # large; the TIE figure job has its own output
    if getattr(outcome, "excluded_phases", ()):
        details["excluded_phases"] = list(outcome.excluded_phases)
    if notes:
        details["notes"] = notes
    cost = compute.summary() if compute is not None and status == "ok" else {}
    if cost:  # the breakdown behind the edit_* fields (harness.compute.project_to reads it)
        details["compute"] = {k: cost[k] for k in ("forward_flops", "backward_flops",
                                                   "counts", "shape")}
    return Record(
        schema_version=SCHEMA_VERSION, status=status, experiment=job.experiment,
        backbone=job.backbone, method=job.method, split=selection.split,
        n_facts=len(selection.forget), seed=job.seed, estimator=job.estimator,
        n_retain_eval=len(selection.retain_eval),
        **{k: finite_or_none(v) for k, v in scores.items()},
        wall_clock_s=edit_seconds, job_wall_s=job_wall_s, phase_seconds=phases,
        edit_forward_tokens=cost.get("forward_tokens"),
        edit_backward_tokens=cost.get("backward_tokens"), edit_flops=cost.get("flops"),
        optimizer_state_bytes=cost.get("optimizer_state_bytes"),
        statistics_s=statistics_seconds,
        method_phase_seconds=dict(getattr(outcome, "phase_seconds", None) or {}),
        peak_mem_bytes=memory.peak_mem_bytes, inference_mem_bytes=memory.inference_mem_bytes,
        extra_mem_bytes=memory.extra_mem_bytes, model_mem_bytes=memory.model_mem_bytes,
        nvml_peak_bytes=memory.nvml_peak_bytes, memory_source=memory.memory_source,
        converged=getattr(outcome, "converged", None),
        collapsed=getattr(outcome, "collapsed", None),
        collapse_reason=getattr(outcome, "collapse_reason", None),
        steps=getattr(outcome, "steps", None),
        device=fp["device"], device_class=fp["device_class"], git_commit=fp["git_commit"],
        subject_source=selection.subject_source(), fingerprint=fp, weights=weights,
        method_config=method_config, details=json.loads(json.dumps(details, default=str)),
        error=error, precision=precision.to_record() if precision is not None else None,
        **memory.record_fields(),
    ).to_dict()


def main(argv: list[str] | None = None) -> int:
    job = read_job(MethodJob, argv, "python -m harness.jobs.run_method", __doc__)
    record = run(job)
    write_record(job.out, record)
    print(json.dumps({k: record[k] for k in ("backbone", "method", "status", "n_facts",
                                             "forget_logp_before", "forget_logp_after",
                                             "wall_clock_s")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
