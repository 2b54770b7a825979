"""What each workflow job asks of a scheduler: GPUs, host memory, wall-clock limit, CPUs.

The numbers are the config's `resources` section: per backbone size class (`resources.size`,
`resources.backbone_size`) and job kind (JOB_KINDS), and `resources.light` for jobs without a
backbone. workflows/config/schema.json states every default once, on the leaves only; a
number the config leaves out is read from there (`setting`), so validation fills in no
objects and a config that sets one number keeps the others' defaults. CPUs are the config's
`threads`. A job whose backbone runs on the CPU (`device: cpu`) asks for no GPU, whatever
its class says. Memory and runtime grow with Snakemake's attempt number, so a job retried
after running out of either (`retries` in a profile) asks for more.

Rules read these through `rule_resources` / `light_resources` (workflows/rules/*.smk); the
SLURM executor turns them into `--gpus`, `--mem`, `-t`, `--cpus-per-task`
(docs/scale_out.md).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from harness.workflow_config import SCHEMA_PATH

# Job kind -> the rules of that kind (the schema's `resources.classes.<class>.<kind>`).
JOB_KINDS = {
    "finetune": ("finetune_backbone", "retain_model"),
    "statistics": ("backbone_statistics_table1", "backbone_statistics_scaling"),
    "tune": ("tune_timerome",),
    "edit": ("run_table1", "run_scaling", "run_reference", "run_robustness"),
    "sequential": ("run_sequential",),
    "tie": ("tie_heatmap",),
}


class ResourceConfigError(ValueError):
    """A `resources` setting that names no size class or job kind."""


@dataclass(frozen=True)
class JobResources:
    gpu: int
    mem_mb: int
    runtime: int  # minutes

    def at_attempt(self, attempt: int) -> JobResources:
        """The request of the `attempt`-th try (1 = first): memory and time scale with it."""
        factor = max(1, int(attempt))
        return JobResources(self.gpu, self.mem_mb * factor, self.runtime * factor)


@lru_cache(maxsize=1)
def _schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text())["properties"]["resources"]


def _schema_default(path: tuple[str, ...]) -> Any:
    node: Any = _schema()
    for key in path:
        props = node.get("properties", {}) if isinstance(node, dict) else {}
        if key not in props:
            return None
        node = props[key]
    return node.get("default")


def setting(config: Mapping[str, Any], *path: str) -> Any:
    """`resources.<path>` of the config, else its schema default, else None."""
    node: Any = config.get("resources") or {}
    for key in path:
        if not isinstance(node, Mapping) or key not in node:
            return _schema_default(path)
        node = node[key]
    return node


def known_classes(config: Mapping[str, Any]) -> set[str]:
    return set(_schema()["properties"]["classes"]["properties"]) | set(
        setting(config, "classes") or {})


def size_class(config: Mapping[str, Any], backbone: str) -> str:
    return (setting(config, "backbone_size") or {}).get(backbone, setting(config, "size"))


def uses_gpu(config: Mapping[str, Any], backbone: str) -> bool:
    device = config["backbones"][backbone].get("device", "cpu")
    return str(device).startswith("cuda")


def backbone_job_resources(config: Mapping[str, Any], backbone: str, kind: str
                           ) -> JobResources:
    """The resources of a `kind` job on `backbone` (first attempt)."""
    if kind not in JOB_KINDS:
        raise ResourceConfigError(f"unknown job kind '{kind}' (known: {', '.join(JOB_KINDS)})")
    name = size_class(config, backbone)
    if name not in known_classes(config):
        raise ResourceConfigError(
            f"invalid config at 'resources': backbone '{backbone}' has size class '{name}', "
            f"which resources.classes does not define "
            f"(known: {', '.join(sorted(known_classes(config)))})")
    gpu, mem_mb, runtime = (setting(config, "classes", name, kind, field)
                            for field in ("gpu", "mem_mb", "runtime"))
    return JobResources(gpu=int(gpu) if uses_gpu(config, backbone) else 0,
                        mem_mb=int(mem_mb), runtime=int(runtime))


def light_job_resources(config: Mapping[str, Any]) -> JobResources:
    return JobResources(gpu=0, mem_mb=int(setting(config, "light", "mem_mb")),
                        runtime=int(setting(config, "light", "runtime")))


def check_resources(config: Mapping[str, Any]) -> None:
    """Every configured backbone's size class exists (raises ResourceConfigError): called
    when the DAG is planned, so a typo fails `snakemake -n`, not a submitted job."""
    for backbone in config["backbones"]:
        for kind in JOB_KINDS:
            backbone_job_resources(config, backbone, kind)
    unknown = set(setting(config, "backbone_size") or {}) - set(config["backbones"])
    if unknown:
        raise ResourceConfigError(
            f"invalid config at 'resources.backbone_size': {', '.join(sorted(unknown))} "
            f"is not a configured backbone")


def rule_resources(config: Mapping[str, Any], kind: str, threads: int
                   ) -> dict[str, Callable[..., int] | int]:
    """The `resources:` of a rule with a `{backbone}` wildcard, as Snakemake callables of
    (wildcards, attempt)."""
    check_resources(config)

    def pick(field: str) -> Callable[..., int]:
        def value(wildcards, attempt=1) -> int:
            res = backbone_job_resources(config, wildcards.backbone, kind)
            return getattr(res.at_attempt(attempt), field)
        return value

    return {"gpu": pick("gpu"), "mem_mb": pick("mem_mb"), "runtime": pick("runtime"),
            "cpus_per_task": int(threads)}


def light_resources(config: Mapping[str, Any]) -> dict[str, Callable[..., int] | int]:
    """The `resources:` of a rule without a backbone (corpus, aggregation, reports)."""
    base = light_job_resources(config)
    return {"gpu": 0,
            "mem_mb": lambda wildcards, attempt=1: base.at_attempt(attempt).mem_mb,
            "runtime": lambda wildcards, attempt=1: base.at_attempt(attempt).runtime,
            "cpus_per_task": 1}
