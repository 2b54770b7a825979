"""Robustness probes of one Table 1 row (issue 18): does forgotten knowledge stay forgotten?

`python -m harness.jobs.robustness --job '{...RobustnessJob JSON...}'`

The job makes the row's edited model again exactly as Table 1's job made it
(harness/jobs/edited_model.py; `method_job` is that job's description, a reference row's
too: "no_edit" scores the fine-tuned model, "retain_model" the retain model), scores the
trained phrasing as Table 1 does (forget log-prob, greedy forget ROUGE-L, retain log-prob)
and compares those with the Table 1 record (`table1_record`: the check that the model is
the one Table 1 scored), then runs the configured probes (harness.evaluation.probes;
those that change the model, relearning, last) and writes one record (`RobustnessRecord`,
strict JSON, atomically). Probe options are checked before any model is loaded. A method
that cannot run on the backbone is recorded as `not_applicable`, an out-of-memory error
(CUDA or host) as `oom` with the phase it happened in (`error` starts with it,
`notes.oom_phase`: edit, base or `probe <name>`), as Table 1 records them.

Exit status: 0 ok (a record written); 2 a job description that does not match the spec, an
unknown probe, a probe whose module is not present or an option it refuses (named, before
any work); anything else is a bug or a failed measurement (traceback, no record).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from harness.jobs.spec import EXIT_BAD_JOB, JobSpec, MethodJob, read_job

if TYPE_CHECKING:
    from harness.data.fact import Fact

SCHEMA = "robustness/1"
BASE_COLUMNS = ("forget_logp", "forget_rougeL", "retain_logp")  # the trained phrasing
# base column -> the Table 1 record field it must reproduce
TABLE1_FIELDS = {"forget_logp": "forget_logp_after", "forget_rougeL": "forget_rougeL_after",
                 "retain_logp": "retain_logp_after"}


@dataclass
class RobustnessJob(JobSpec):
    """The probes of one (backbone, method, seed) row of Table 1 (rule run_robustness)."""

    NESTED: ClassVar[dict[str, type[JobSpec]]] = {"method_job": MethodJob}

    method_job: MethodJob  # Table 1's job description of this row (nothing of it is written)
    table1_record: str | None  # its Table 1 record (the reproduction check); None: no check
    probes: list[str]  # in config order; relearning is moved last
    options: dict[str, Any]  # probe name -> its options (config robustness.options)
    out: str


@dataclass
class RobustnessRecord:
    """One row's probe record (results/robustness/<backbone>/<method>/seed<seed>.json)."""

    schema: str
    status: str  # ok | not_applicable | oom
    backbone: str
    method: str
    method_kind: str
    label: str  # the row's name in tables (a reference's label)
    seed: int
    estimator: str
    forget_split: str
    n_forget: int
    n_retain: int
    n_holdout: int
    base: dict[str, float | None]  # BASE_COLUMNS on the edited model, the trained phrasing
    table1: dict[str, Any] | None  # the Table 1 record's numbers and |difference|
    probes: dict[str, dict[str, float | None]]  # probe -> column -> value
    columns: list[tuple[str, list[str]]]  # (probe, its columns in the order returned), in
    # the order the probes ran (JSON objects are written with sorted keys)
    probe_seconds: dict[str, float]
    edit_seconds: float | None
    job_wall_s: float
    method_config: dict[str, Any]
    notes: dict[str, Any]
    config_hash: str
    error: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, payload: Mapping[str, Any], source: str = "<record>"
                  ) -> "RobustnessRecord":
        """A record read back; ValueError naming `source` and the field when it is not one."""
        if not isinstance(payload, Mapping) or payload.get("schema") != SCHEMA:
            raise ValueError(f"{source}: not a robustness record (schema "
                             f"{payload.get('schema') if isinstance(payload, Mapping) else None!r}"
                             f", expected {SCHEMA!r})")
        names = [f.name for f in fields(cls)]
        missing = [n for n in names if n not in payload]
        if missing:
            raise ValueError(f"{source}: missing field(s) {', '.join(missing)}")
        record = cls(**{n: payload[n] for n in names})
        if record.status == "ok":
            if not isinstance(record.probes, Mapping) or not all(
                    isinstance(v, Mapping) for v in record.probes.values()):
                raise ValueError(f"{source}: field 'probes' is not probe -> column -> value")
            for probe, columns in record.probes.items():
                for column, value in columns.items():
                    if value is not None and not isinstance(value, (int, float)):
                        raise ValueError(f"{source}: probes.{probe}.{column} is not a number "
                                         f"({value!r})")
            if not isinstance(record.columns, list) or not all(
                    isinstance(entry, (list, tuple)) and len(entry) == 2
                    and isinstance(entry[1], list) for entry in record.columns):
                raise ValueError(f"{source}: field 'columns' is not a list of "
                                 f"[probe, [column, ...]]")
        return record


def with_perturbed(facts: Sequence["Fact"], tofu_dir: str, forget_split: str) -> list["Fact"]:
    """`facts` with the paraphrased question/answer and perturbed answers of the same record
    (same question and answer) in the forget split's perturbed file; unchanged where it has
    none or the corpus has no such file."""
    from harness.data import available_splits, load_split, perturbed_split_for

    try:
        split = perturbed_split_for(forget_split)
    except ValueError:  # not a forgetXX split: no perturbed file named after it
        return list(facts)
    if split not in available_splits(tofu_dir):
        return list(facts)
    known = {(f.question, f.answer): f for f in load_split(tofu_dir, split)}
    out = []
    for fact in facts:
        match = known.get((fact.question, fact.answer))
        out.append(fact if match is None else replace(
            fact, paraphrased_question=match.paraphrased_question,
            paraphrased_answer=match.paraphrased_answer,
            perturbed_answers=match.perturbed_answers))
    return out


def holdout_facts(tofu_dir: str, forget_split: str) -> list["Fact"]:
    """The never-trained facts of the corpus's holdout split for `forget_split`; [] when the
    corpus has none (real TOFU ships no holdout split)."""
    from harness.data import available_splits, holdout_split_for, load_split

    try:
        split = holdout_split_for(forget_split)
    except ValueError:
        return []
    return load_split(tofu_dir, split) if split in available_splits(tofu_dir) else []


def table1_comparison(path: str | None, base: Mapping[str, float | None]
                      ) -> dict[str, Any] | None:
    """The Table 1 record's numbers next to ours: {record, <field>: value, max_abs_diff}."""
    if not path:
        return None
    try:
        record = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: cannot read the Table 1 record: {exc}") from None
    out: dict[str, Any] = {"record": path, "status": record.get("status")}
    diffs = []
    for column, key in TABLE1_FIELDS.items():
        value = record.get(key)
        out[key] = value
        if value is not None and base.get(column) is not None:
            diffs.append(abs(float(value) - float(base[column])))
    out["forget_logp_before"] = record.get("forget_logp_before")
    out["max_abs_diff"] = max(diffs) if diffs else None
    return out


def check_probes(job: RobustnessJob) -> list[str]:
    """The probes to run, in run order; every name and its options checked (ProbeError)."""
    from harness.evaluation.probes import (check_probe_names, probe_order,
                                           validate_probe_options)

    names = probe_order(check_probe_names(job.probes))
    for name in names:
        validate_probe_options(name, job.options.get(name) or {})
    return names


def base_scores(backbone: Any, forget: Sequence["Fact"], retain: Sequence["Fact"],
                job: MethodJob) -> dict[str, float | None]:
    """The trained phrasing, scored as Table 1 scores the edited model."""
    from harness.evaluation.mean_scores import mean_logp, rouge_recall

    ev = job.evaluation
    return {"forget_logp": mean_logp(backbone, forget, job.estimator, ev.batch_size, job.seed),
            "forget_rougeL": rouge_recall(backbone, forget, ev.gen_steps, ev.batch_size,
                                          job.seed),
            "retain_logp": mean_logp(backbone, retain, job.estimator, ev.batch_size, job.seed)}


def row_label(method: str) -> tuple[str, str]:
    """(kind, table label) of a method from the registry."""
    from harness.methods.registry import method_info

    info = method_info(method)
    return info.kind, getattr(info, "row_label", None) or method


def run(job: RobustnessJob) -> dict[str, Any]:
    """Do the job; return its record (not yet written)."""
    from harness.evaluation.finite import json_safe
    from harness.evaluation.probes import GenerationSettings, ProbeContext, run_probe
    from harness.jobs.edited_model import edited_model
    from harness.jobs.run_method import check_finite_scores, oom_report, release_device_memory
    from harness.measure import is_oom
    from harness.methods import MethodNotApplicable

    start = time.perf_counter()
    names = check_probes(job)  # before any model work
    mj = job.method_job
    kind, label = row_label(mj.method)
    status, error = "ok", None
    base: dict[str, float | None] = dict.fromkeys(BASE_COLUMNS)
    probes: dict[str, dict[str, float | None]] = {}
    seconds: dict[str, float] = {}
    counts = {"n_forget": 0, "n_retain": 0, "n_holdout": 0}
    edit_seconds, method_config, notes = None, dict(mj.method_config), {}
    phase = "edit"  # what is running: an out-of-memory error is recorded with it
    try:
        edited = edited_model(mj)
        edit_seconds, method_config, notes = edited.edit_seconds, edited.method_config, \
            dict(edited.notes)
        selection = edited.selection
        forget = with_perturbed(selection.forget, mj.tofu_dir, mj.forget_split)
        holdout = holdout_facts(mj.tofu_dir, mj.forget_split)
        counts = {"n_forget": len(forget), "n_retain": len(selection.retain_eval),
                  "n_holdout": len(holdout)}
        phase = "base"
        t0 = time.perf_counter()
        base = base_scores(edited.backbone, forget, selection.retain_eval, mj)
        check_finite_scores(mj, base)  # non-finite: the job fails, no record
        seconds["base"] = time.perf_counter() - t0
        for name in names:
            ctx = ProbeContext(
                backbone=edited.backbone, method=mj.method, method_kind=kind,
                forget=tuple(forget), retain=tuple(selection.retain_eval),
                retain_train=tuple(selection.retain_train), holdout=tuple(holdout),
                estimator=mj.estimator, batch_size=mj.evaluation.batch_size, seed=mj.seed,
                generation=GenerationSettings(steps=mj.evaluation.gen_steps),
                options=dict(job.options.get(name) or {}), tofu_dir=mj.tofu_dir,
                forget_split=mj.forget_split)
            phase = f"probe {name}"
            t0 = time.perf_counter()
            probes[name] = run_probe(name, ctx)
            seconds[name] = time.perf_counter() - t0
            print(json.dumps({"probe": name, "seconds": round(seconds[name], 3)}), flush=True)
    except MethodNotApplicable as exc:  # recorded; the DAG goes on
        status, error = "not_applicable", f"{type(exc).__name__}: {exc}"[:2000]
    except BaseException as exc:  # noqa: BLE001 - only OOM is recorded, the rest re-raised
        if not is_oom(exc):
            raise
        status = "oom"
        error, where = oom_report(exc, phase)
        notes = {**notes, **where}
    if status == "oom":
        release_device_memory()  # `exc` and its traceback (the failed step's tensors) gone
    table1 = table1_comparison(job.table1_record, base) if status == "ok" else None
    if table1 and table1["max_abs_diff"] is not None and table1["max_abs_diff"] > 1e-4:
        notes["table1_mismatch"] = (f"the re-made model's trained-phrasing scores differ from "
                                    f"{job.table1_record} by up to {table1['max_abs_diff']:.3g}")
    record = RobustnessRecord(
        schema=SCHEMA, status=status, backbone=mj.backbone, method=mj.method,
        method_kind=kind, label=label, seed=mj.seed, estimator=mj.estimator,
        forget_split=mj.forget_split, **counts, base=base, table1=table1, probes=probes,
        columns=[(name, list(values)) for name, values in probes.items()],
        probe_seconds=seconds, edit_seconds=edit_seconds,
        job_wall_s=time.perf_counter() - start, method_config=method_config, notes=notes,
        config_hash=mj.config_hash, error=error)
    return json_safe(json.loads(json.dumps(record.to_dict(), default=str)))


def main(argv: list[str] | None = None) -> int:
    from harness.atomic import write_json_atomic
    from harness.evaluation.probes import ProbeError

    job = read_job(RobustnessJob, argv, "python -m harness.jobs.robustness", __doc__)
    try:
        check_probes(job)
    except ProbeError as exc:  # a bad probe name or option: exit 2 before any work
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_JOB
    record = run(job)
    write_json_atomic(job.out, record, allow_nan=False)
    print(json.dumps({k: record[k] for k in ("backbone", "method", "status", "base")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
