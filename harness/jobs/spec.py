"""The job description passed from a Snakemake rule to a runner, as one JSON argument."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from harness.backbones.base import Backbone, BackboneSpec

SPEC_FIELDS = {f.name for f in fields(BackboneSpec)}


def backbone_spec(name: str, entry: dict[str, Any], path: str | None) -> BackboneSpec:
    """BackboneSpec from a config `backbones:` entry (config-only keys are dropped)."""
    kwargs = {k: v for k, v in entry.items() if k in SPEC_FIELDS and v is not None}
    return BackboneSpec(name=name, path=path, **kwargs)


@dataclass
class EvalOptions:
    rouge: bool = True
    gen_steps: int | None = None
    batch_size: int = 32
    forget_quality: bool = True
    model_utility: bool = True
    utility_size: int = 20  # facts per model-utility set


@dataclass
class MethodJob:
    """One (backbone, method, forget set, seed) unlearning job."""

    experiment: str  # table1 | scaling
    backbone: str
    backbone_entry: dict[str, Any]
    backbone_path: str
    method: str
    method_config: dict[str, Any]
    tofu_dir: str
    forget_split: str
    retain_split: str
    out: str
    n_facts: int | None = None  # scaling: forget = the last n records of `full`
    max_n_facts: int | None = None  # scaling: retain pool = full minus the last max_n
    retain_model_path: str | None = None
    tuned_config: str | None = None
    retain_eval_size: int = 40
    retain_train_size: int = 400  # retain facts the method may use (disjoint from eval)
    eval_seed: int = 0
    seed: int = 0
    estimator: str = "full_mask"
    target_forget_drop: float | None = None
    target_from_record: str | None = None  # match the forget drop of this result record
    evaluation: EvalOptions = field(default_factory=EvalOptions)
    threads: int = 1
    config_hash: str = ""

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> "MethodJob":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(payload) - known)
        if unknown:
            raise ValueError(f"job description has unknown field(s): {', '.join(unknown)}")
        data = dict(payload)
        data["evaluation"] = EvalOptions(**(data.get("evaluation") or {}))
        return cls(**data)

    def spec(self, path: str | None = None) -> BackboneSpec:
        return backbone_spec(self.backbone, self.backbone_entry, path or self.backbone_path)


def job_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--job", required=True, help="job description (JSON)")


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
    if isinstance(payload.get("out"), str):
        out = Path(payload["out"])
        try:
            check_writable(out.parent)
        except NotWritable as exc:
            raise SystemExit(f"error: {exc}") from None
        clean_stale_temps(out)
    return payload


def job_backbone(job: dict[str, Any]) -> Backbone:
    """Set the job's thread count and load the backbone it names (its fine-tuned checkpoint)."""
    from harness.backbones.registry import load_backbone

    set_threads(job.get("threads", 1))
    return load_backbone(backbone_spec(job["backbone"], job["backbone_entry"],
                                       job["backbone_path"]))


def set_threads(threads: int) -> None:
    torch.set_num_threads(max(1, int(threads)))
