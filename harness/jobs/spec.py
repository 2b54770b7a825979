"""The job description passed from a Snakemake rule to a runner, as one JSON argument."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import Any, ClassVar, Self, TypeVar

import torch

from harness.backbones.base import Backbone, BackboneSpec

SPEC_FIELDS = {f.name for f in fields(BackboneSpec)}
JobSpecT = TypeVar("JobSpecT", bound="JobSpec")


def backbone_spec(name: str, entry: dict[str, Any], path: str | None) -> BackboneSpec:
    """BackboneSpec from a config `backbones:` entry (config-only keys are dropped)."""
    kwargs = {k: v for k, v in entry.items() if k in SPEC_FIELDS and v is not None}
    return BackboneSpec(name=name, path=path, **kwargs)


EXIT_BAD_JOB = 2  # a job description that does not match its spec (named field)


class JobSpecError(ValueError):
    """A job description with unknown or missing fields (the message names them)."""


@dataclass
class JobSpec:
    """Base of every job's typed description: `from_dict` names unknown and missing fields.

    The workflow passes every field (each default is stated once, in the config schema,
    workflows/config/schema.json), so fields have no defaults; a nested spec is named in
    `NESTED` (field name -> JobSpec subclass)."""

    NESTED: ClassVar[dict[str, type["JobSpec"]]] = {}

    @classmethod
    def from_dict(cls, payload: Mapping[str, Any]) -> Self:
        if not isinstance(payload, Mapping):
            raise JobSpecError(f"{cls.__name__}: job description must be a JSON object, got "
                               f"{type(payload).__name__}")
        known = [f.name for f in fields(cls)]
        required = [f.name for f in fields(cls)
                    if f.default is MISSING and f.default_factory is MISSING]
        problems = []
        unknown = sorted(set(payload) - set(known))
        if unknown:
            problems.append(f"unknown field(s): {', '.join(unknown)}")
        missing = [name for name in required if name not in payload]
        if missing:
            problems.append(f"missing field(s): {', '.join(missing)}")
        if problems:
            raise JobSpecError(f"{cls.__name__} job description has {'; '.join(problems)}")
        data = dict(payload)
        for name, nested in cls.NESTED.items():
            try:
                data[name] = nested.from_dict(data[name])
            except JobSpecError as exc:
                raise JobSpecError(f"{cls.__name__}.{name}: {exc}") from None
        return cls(**data)


@dataclass
class EvalOptions(JobSpec):
    """Config `evaluation` (defaults in the config schema)."""

    rouge: bool
    gen_steps: int | None
    batch_size: int
    forget_quality: bool
    model_utility: bool
    utility_size: int  # facts per model-utility set


@dataclass
class BackboneJob(JobSpec):
    """A job on one configured backbone (its fine-tuned checkpoint at `backbone_path`)."""

    backbone: str
    backbone_entry: dict[str, Any]
    backbone_path: str
    threads: int  # torch threads of the job process

    def spec(self, path: str | None = None) -> BackboneSpec:
        return backbone_spec(self.backbone, self.backbone_entry, path or self.backbone_path)

    def load(self) -> Backbone:
        """Set the job's thread count and load its backbone (the fine-tuned checkpoint)."""
        from harness.backbones.registry import load_backbone

        set_threads(self.threads)
        return load_backbone(self.spec())


@dataclass
class MethodJob(BackboneJob):
    """One (backbone, method, forget set, seed) unlearning job (harness.jobs.run_method)."""

    NESTED: ClassVar[dict[str, type[JobSpec]]] = {"evaluation": EvalOptions}

    experiment: str  # table1 | scaling
    method: str
    method_config: dict[str, Any]
    tofu_dir: str
    forget_split: str
    retain_split: str
    validation_split: str  # its authors never enter a retain sample
    out: str
    n_facts: int | None  # scaling: forget = the last n records of `full`
    max_n_facts: int | None  # scaling: retain pool = full minus the last max_n
    retain_model_path: str | None
    tuned_config: str | None  # tuning record whose chosen point the method applies
    retain_eval_size: int
    retain_train_size: int  # retain facts the method may use (disjoint from eval)
    eval_seed: int
    seed: int
    estimator: str
    target_forget_drop: float | None
    target_from_record: str | None  # match the forget drop of this result record
    evaluation: EvalOptions
    config_hash: str
    statistics: str | None  # the method's per-backbone statistics file (rule
    # backbone_statistics), computed once and loaded by every edit; None: computed in the edit


def job_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--job", required=True, help="job description (JSON)")


def read_job(spec: type[JobSpecT], argv: list[str] | None, prog: str, description: str | None
             ) -> JobSpecT:
    """The typed job of a runner's command line (`--job JSON`). A description that does not
    match `spec` prints `error: <spec> job description has unknown/missing field(s): ...`
    and exits EXIT_BAD_JOB, before any work."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    job_argument(parser)
    payload = parse_job(parser.parse_args(argv).job)
    try:
        return spec.from_dict(payload)
    except JobSpecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_BAD_JOB) from None


def parse_job(text: str) -> dict[str, Any]:
    """The job dict; also the start of every job: the process is tied to its shell (it dies
    when Snakemake kills the job, harness.jobs.orphan) and the output's directory is checked
    writable and cleared of temporaries left by killed writers, before any work."""
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SystemExit(f"--job is not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise SystemExit("--job must be a JSON object")
    from harness.atomic import NotWritable, check_writable, clean_stale_temps
    from harness.jobs.orphan import die_with_parent

    die_with_parent()
    from harness.device_binding import DeviceBindingError, bind_job_device

    try:  # a GPU job takes its own device before anything touches CUDA
        bind_job_device(payload)
    except DeviceBindingError as exc:
        raise SystemExit(f"error: {exc}") from None
    if isinstance(payload.get("out"), str):
        out = Path(payload["out"])
        try:
            check_writable(out.parent)
        except NotWritable as exc:
            raise SystemExit(f"error: {exc}") from None
        clean_stale_temps(out)
    return payload


def set_threads(threads: int) -> None:
    torch.set_num_threads(max(1, int(threads)))
