"""Job rules rerun when their config changes (harness.workflow_params.tracked_job).

Snakemake does not record params that are functions of the output; every job rule's JSON
is one (it names the output path), so without `provenance` a changed config reran nothing.
These tests run a two-rule workflow made here with Snakemake itself."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]

WORKFLOW = '''
import json
sys.path.insert(0, {root!r})
from harness.workflow_params import tracked_job

rule all:
    input: "b.json"

rule a:
    output: "a.json"
    params:
        {params}
    shell: "echo {{params.job:q}} > {{output}}"

rule b:
    input: "a.json"
    output: "b.json"
    shell: "cp {{input}} {{output}}"
'''
UNTRACKED = 'job=lambda w, output: json.dumps({"grid": config["grid"], "out": output[0]}),'
TRACKED = '**tracked_job(lambda w, output: json.dumps({"grid": config["grid"], "out": output[0]})),'


def planned(workdir: Path, grid: int) -> list[str]:
    done = subprocess.run(SNAKEMAKE + ["-n", "--cores", "1", "--config", f"grid={grid}"],
                          cwd=workdir, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return re.findall(r"^rule (\w+):", done.stdout, flags=re.MULTILINE)


def run(workdir: Path, grid: int) -> None:
    done = subprocess.run(SNAKEMAKE + ["--cores", "1", "--config", f"grid={grid}"],
                          cwd=workdir, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.parametrize("params, reruns", [(UNTRACKED, False), (TRACKED, True)])
def test_a_changed_config_reruns_a_tracked_job_and_what_depends_on_it(tmp_path, params,
                                                                      reruns):
    (tmp_path / "Snakefile").write_text(WORKFLOW.format(root=str(REPO_ROOT), params=params))
    run(tmp_path, 1)
    assert planned(tmp_path, 1) == []  # nothing changed: nothing to do
    assert ({"a", "b"} <= set(planned(tmp_path, 2))) is reruns


def test_every_job_rule_tracks_its_job():
    for path in sorted((REPO_ROOT / "workflows" / "rules").glob("*.smk")):
        text = path.read_text()
        assert not re.search(r"^\s*job=lambda", text, flags=re.MULTILINE), path.name
