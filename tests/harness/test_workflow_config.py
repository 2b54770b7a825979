"""The Snakemake workflow: bad configs are rejected before any job; dry-runs plan the DAG."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
REPO_ROOT = Path(__file__).resolve().parents[2]

SNAKEMAKE = [sys.executable, "-m", "snakemake"]
DEFAULT = REPO_ROOT / "workflows" / "config" / "default.yaml"
PAPER = REPO_ROOT / "workflows" / "config" / "paper.yaml"


def dry_run(workdir: Path, target: str, configfile: Path | None = None,
            env: dict | None = None) -> subprocess.CompletedProcess:
    cmd = SNAKEMAKE + ["-n", "--nolock", "--cores", "1", "-s", str(REPO_ROOT / "Snakefile"),
                       "--directory", str(workdir), target]
    if configfile is not None:
        cmd += ["--configfile", str(configfile)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


def job_counts(output: str) -> dict[str, int]:
    block = output.split("Job stats:", 1)[1]
    return {m.group(1): int(m.group(2))
            for m in re.finditer(r"^(\w+)\s+(\d+)$", block, flags=re.MULTILINE)}


def broken_config(tmp_path: Path, edit) -> Path:
    config = yaml.safe_load(DEFAULT.read_text())
    edit(config)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize("edit, message", [
    (lambda c: c["data"].update(bogus_key=1),
     "invalid config at 'data': Additional properties are not allowed ('bogus_key'"),
    (lambda c: c["data"].update(retain_eval_size="forty"),
     "invalid config at 'data.retain_eval_size': 'forty' is not of type 'integer'"),
    (lambda c: c["backbones"]["dream-7b-twin"].update(dtype="float8"),
     "invalid config at 'backbones.dream-7b-twin.dtype'"),
    (lambda c: c["tuning"].update(backbone="no-such-backbone"),
     "invalid config: tuning.backbone: 'no-such-backbone' is not a configured backbone"),
])
def test_bad_config_rejected_before_any_job(tmp_path, edit, message):
    result = dry_run(tmp_path, "reproduce_table1", broken_config(tmp_path, edit))
    assert result.returncode != 0
    text = result.stdout + result.stderr
    assert message in text
    assert "Job stats" not in text  # nothing was planned


def test_default_dry_run_plans_table1(tmp_path):
    result = dry_run(tmp_path, "reproduce_table1", DEFAULT)
    assert result.returncode == 0, result.stderr
    counts = job_counts(result.stdout)
    assert counts["finetune_backbone"] == 6
    assert counts["run_table1"] == 36
    assert counts["synthetic_corpus"] == 1
    assert counts["retain_model"] == 1


def test_paper_dry_run_loads_no_model_and_touches_no_network(tmp_path):
    # torch / transformers / datasets shadowed by modules that fail on import.
    shadow = tmp_path / "shadow"
    for name in ("torch", "transformers", "datasets", "huggingface_hub"):
        (shadow / name).mkdir(parents=True)
        (shadow / name / "__init__.py").write_text(
            f"raise ImportError('{name} imported during a dry-run')\n")
    env = {"PYTHONPATH": str(shadow), "HF_HUB_OFFLINE": "1", "no_proxy": "*",
           "https_proxy": "http://127.0.0.1:9", "http_proxy": "http://127.0.0.1:9"}
    result = dry_run(tmp_path / "work", "reproduce_table1", PAPER, env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    counts = job_counts(result.stdout)
    n_backbones = len(yaml.safe_load(PAPER.read_text())["backbones"])
    assert n_backbones == 6
    assert counts["run_table1"] == 6 * 6
    assert counts["finetune_backbone"] == 6
    assert counts["fetch_tofu"] == 1


def test_gradient_baselines_wait_for_the_timerome_record_they_match(tmp_path):
    """target_forget_drop: timerome makes each gradient baseline job an input-dependent of
    the TimeROME-DLM record of the same backbone and seed; ROME/MEMIT do not wait."""
    result = dry_run(tmp_path, "results/runs/table1/dream-7b-twin/npo/seed0.json", DEFAULT)
    assert result.returncode == 0, result.stderr
    planned = re.findall(r"output: (\S+)", result.stdout)
    assert "results/runs/table1/dream-7b-twin/timerome/seed0.json" in planned
    result = dry_run(tmp_path, "results/runs/table1/dream-7b-twin/memit/seed0.json", DEFAULT)
    assert result.returncode == 0, result.stderr
    planned = re.findall(r"output: (\S+)", result.stdout)
    assert not any("/timerome/" in p for p in planned)
