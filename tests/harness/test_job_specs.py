"""Every job the workflow plans gets a description its runner's typed spec accepts: all
the spec's fields, nothing else (defaults live in the config schema, not in the jobs)."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import fields

import pytest
import yaml
from test_workflow_config import DEFAULT, REPO_ROOT, dry_run

from harness.jobs.backbone_statistics import StatisticsJob
from harness.jobs.finetune_backbone import FinetuneJob
from harness.jobs.sequential import SequentialJob
from harness.jobs.spec import EvalOptions, JobSpecError, MethodJob
from harness.jobs.tie import TieJob
from harness.jobs.tune import TuneJob

SCHEMA = REPO_ROOT / "workflows" / "config" / "schema.json"
SPECS = {"run_method": MethodJob, "tune": TuneJob, "sequential": SequentialJob,
         "tie": TieJob, "finetune_backbone": FinetuneJob, "backbone_statistics": StatisticsJob}


def planned(workdir, target: str, config) -> list[tuple[str, dict]]:
    """(runner, job description) of every job `snakemake -n -p <target>` plans."""
    result = dry_run(workdir, target, config, extra=("-p",))
    assert result.returncode == 0, result.stderr[-2000:]
    jobs = []
    for line in result.stdout.splitlines():
        match = re.search(r"-m harness\.jobs\.(\w+) --job (.*?) >", line)
        if match:
            jobs.append((match.group(1), json.loads(shlex.split(match.group(2))[0])))
    return jobs


@pytest.fixture(scope="module")
def planned_jobs(tmp_path_factory) -> list[tuple[str, dict]]:
    return planned(tmp_path_factory.mktemp("plan"), "all", DEFAULT)


def test_every_planned_job_matches_its_spec(planned_jobs):
    runners = [runner for runner, _ in planned_jobs]
    assert {r: runners.count(r) for r in SPECS} == {  # run_method: 63 method jobs + 7
        # reference rows (6 fine-tuned, 1 retain model: rule run_reference)
        "run_method": 70, "tune": 1, "sequential": 1, "tie": 6, "finetune_backbone": 7,
        "backbone_statistics": 7}
    for runner, payload in planned_jobs:
        SPECS[runner].from_dict(payload)  # raises JobSpecError naming a field if not


def test_workflow_fills_schema_defaults_into_jobs(tmp_path):
    """Keys a config leaves out reach the jobs with their schema.json defaults."""
    config = yaml.safe_load(DEFAULT.read_text())
    del config["evaluation"], config["threads"]
    for section, key in (("tuning", "max_retain_drop"), ("data", "retain_eval_size"),
                         ("data", "retain_train_size"), ("data", "eval_seed")):
        config[section].pop(key, None)  # (default.yaml states none of these)
    path = tmp_path / "sparse.yaml"
    path.write_text(yaml.safe_dump(config))
    jobs = planned(tmp_path / "plan", "reproduce_table1", path)
    schema = json.loads(SCHEMA.read_text())["properties"]
    evaluation = {k: v["default"] for k, v in schema["evaluation"]["properties"].items()}
    data = schema["data"]["properties"]
    tune = next(p for r, p in jobs if r == "tune")
    assert tune["on_no_safe_point"] == "fail" and tune["max_retain_drop"] == 1.0
    assert tune["groups"] == schema["tuning"]["properties"]["groups"]["default"] == 5
    assert tune["retain_eval_size"] == data["retain_eval_size"]["default"]
    assert tune["retain_train_size"] == data["retain_train_size"]["default"]
    method = next(p for r, p in jobs if r == "run_method")
    assert method["evaluation"] == evaluation and method["threads"] == 1
    assert set(evaluation) == {f.name for f in fields(EvalOptions)}


def test_gradient_baselines_match_the_timerome_record_from_the_registry(planned_jobs):
    """Methods of kind "gradient" (registry) stop at TimeROME-DLM's drop; the others do not."""
    for runner, payload in planned_jobs:
        if runner != "run_method" or payload["experiment"] != "table1":
            continue
        matched = payload["target_from_record"]
        if payload["method"] in ("gradient_ascent", "graddiff", "npo"):
            assert matched == (f"results/runs/table1/{payload['backbone']}/timerome/"
                               f"seed{payload['seed']}.json")
        else:
            assert matched is None
        assert (payload["tuned_config"] is not None) == (payload["method"] == "timerome")


def test_spec_names_unknown_and_missing_fields():
    with pytest.raises(JobSpecError, match=r"^TieJob job description has unknown field\(s\): "
                                           r"bogus; missing field\(s\): backbone_path, "):
        TieJob.from_dict({"backbone": "b", "backbone_entry": {}, "bogus": 1})
    with pytest.raises(JobSpecError, match="must be a JSON object"):
        TuneJob.from_dict([1, 2])  # type: ignore[arg-type]
