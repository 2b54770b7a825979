"""harness.workflow_resources: every job's scheduler request comes from the config's
`resources` section (schema defaults per size class and job kind), and the dry run shows it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from harness.workflow_config import SCHEMA_PATH, WORKFLOW_DIR, load_workflow_config
from harness.workflow_resources import (JOB_KINDS, ResourceConfigError, backbone_job_resources,
                                        rule_resources)

REPO_ROOT = Path(__file__).resolve().parents[2]
CLASSES = json.loads(SCHEMA_PATH.read_text())["properties"]["resources"]["properties"][
    "classes"]["properties"]


def schema_default(size: str, kind: str, field: str) -> int:
    return CLASSES[size]["properties"][kind]["properties"][field]["default"]


@pytest.mark.parametrize("config_name, size, gpu", [
    ("default.yaml", "twin", 0),     # twins on the CPU: no GPU, whatever the class says
    ("gpu_twins.yaml", "twin", 1),   # the same twins on CUDA
    ("paper.yaml", "8b", 1),
])
def test_every_backbone_and_kind_gets_its_class_defaults(config_name, size, gpu):
    config = load_workflow_config(WORKFLOW_DIR / config_name)
    for backbone in config["backbones"]:
        for kind in JOB_KINDS:
            res = backbone_job_resources(config, backbone, kind)
            assert (res.gpu, res.mem_mb, res.runtime) == (
                gpu, schema_default(size, kind, "mem_mb"), schema_default(size, kind, "runtime"))


def test_a_partial_override_keeps_the_other_defaults_and_retries_ask_for_more(tmp_path):
    raw = yaml.safe_load((WORKFLOW_DIR / "paper.yaml").read_text())
    raw["resources"] = {"size": "8b", "backbone_size": {"llada-moe": "twin"},
                        "classes": {"8b": {"edit": {"mem_mb": 123}}}}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(raw))
    config = load_workflow_config(path)
    edit = backbone_job_resources(config, "dream-7b", "edit")
    assert (edit.mem_mb, edit.runtime) == (123, schema_default("8b", "edit", "runtime"))
    moe = backbone_job_resources(config, "llada-moe", "finetune")
    assert moe.mem_mb == schema_default("twin", "finetune", "mem_mb") and moe.gpu == 1
    rule = rule_resources(config, "edit", threads=8)
    wildcards = SimpleNamespace(backbone="dream-7b")
    assert rule["cpus_per_task"] == 8
    assert [rule["mem_mb"](wildcards, attempt=a) for a in (1, 2, 3)] == [123, 246, 369]


def test_unknown_size_class_is_named(tmp_path):
    config = load_workflow_config(WORKFLOW_DIR / "default.yaml")
    config.setdefault("resources", {})["backbone_size"] = {"dream-7b-twin": "70b"}
    with pytest.raises(ResourceConfigError, match="backbone 'dream-7b-twin' has size class "
                                                  "'70b'.*known: 8b, twin"):
        rule_resources(config, "edit", threads=1)


def test_paper_dry_run_shows_each_jobs_resources(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    run = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--nolock", "--cores", "1",
         "-s", str(REPO_ROOT / "Snakefile"), "--directory", str(tmp_path / "work"),
         "reproduce_table1", "--configfile", str(WORKFLOW_DIR / "paper.yaml")],
        capture_output=True, text=True, timeout=120, env=env)
    assert run.returncode == 0, run.stderr[-2000:]
    jobs = re.findall(r"^rule (\w+):\n(?:    .*\n)*?    resources: (.*)$", run.stdout,
                      flags=re.MULTILINE)
    by_rule = {rule: res for rule, res in jobs}
    edit = schema_default("8b", "edit", "runtime")
    assert f"gpu=1, runtime={edit}, cpus_per_task=8, mem_mb=64000" in by_rule["run_table1"]
    assert "gpu=1" in by_rule["finetune_backbone"] and "gpu=0" in by_rule["prepare_corpus"]
