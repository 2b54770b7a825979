"""The robustness job (harness/jobs/robustness.py) on a tiny twin, its rules and its report.

The job must probe the very model Table 1 scored: it makes the edit again from Table 1's
own job description, and its trained-phrasing scores must equal the Table 1 record's."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
import yaml
from job_payloads import method_payload, write_tiny_setup
from test_workflow_config import DEFAULT, dry_run

from harness.jobs import robustness, run_method
from harness.jobs.robustness import RobustnessJob, RobustnessRecord
from harness.reports import robustness as report

ASCENT = {"lr": 0.05, "max_steps": 3, "eval_every": 3, "warmup_steps": 0, "progress": False,
          "generation_prompts": 0}
SMALL_SAMPLER = {"step_fractions": [0.5], "extra_tokens": [], "block_lengths": [4],
                 "random_remasking": False, "temperatures": [], "levels": [0.5, 1.0],
                 "level_draws": 1}
EVALUATION = {"gen_steps": None, "model_utility": False, "forget_quality": False}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny corpus and twin, and Table 1's gradient-ascent record on it."""
    root = tmp_path_factory.mktemp("robustness")
    tofu = write_tiny_setup(root)
    table1 = method_payload(str(root / "model"), str(tofu), str(root / "table1.json"),
                            "gradient_ascent", method_config=ASCENT, evaluation=EVALUATION)
    assert run_method.main(["--job", json.dumps(table1)]) == 0
    return root, table1


def job(root: Path, table1: dict, name: str, **kw) -> dict:
    return {"method_job": table1, "table1_record": table1["out"],
            "probes": ["sampler", "paraphrase"], "options": {"sampler": SMALL_SAMPLER},
            "out": str(root / f"{name}.json"), **kw}


def test_job_probes_the_model_table1_scored(setup):
    root, table1 = setup
    payload = job(root, table1, "ascent")
    assert robustness.main(["--job", json.dumps(payload)]) == 0
    record = json.loads(Path(payload["out"]).read_text())
    t1 = json.loads(Path(table1["out"]).read_text())
    RobustnessRecord.from_dict(record, payload["out"])
    assert record["status"] == "ok" and record["method_kind"] == "gradient"
    # the re-made edit is Table 1's: the same scores to the last bit
    assert record["base"]["forget_logp"] == t1["forget_logp_after"]
    assert record["base"]["retain_logp"] == t1["retain_logp_after"]
    assert record["base"]["forget_rougeL"] == t1["forget_rougeL_after"]
    assert record["table1"]["max_abs_diff"] == 0.0 and "table1_mismatch" not in record["notes"]
    assert t1["forget_logp_after"] < t1["forget_logp_before"] - 1  # it did forget something
    assert [p for p, _ in record["columns"]] == ["sampler", "paraphrase"]
    assert record["probes"]["paraphrase"]["n_facts"] == 5  # forget05 of 100 records
    assert set(record["probes"]["sampler"]) == {"steps_x0.5_rougeL", "block4_rougeL",
                                                "max_rougeL", "logp_t0.5", "logp_t1"}
    assert record["n_holdout"] == 5 and record["n_retain"] == 6


def test_job_notices_a_model_other_than_table1s(setup):
    """The same job with another seed edits differently: the check must show it."""
    root, table1 = setup
    payload = job(root, {**table1, "seed": 1}, "other_seed", probes=["paraphrase"])
    assert robustness.main(["--job", json.dumps(payload)]) == 0
    record = json.loads(Path(payload["out"]).read_text())
    assert record["table1"]["max_abs_diff"] > 1e-3
    assert "differ from" in record["notes"]["table1_mismatch"]


@pytest.mark.parametrize("change, message", [
    ({"probes": ["paraphrse"]}, "unknown probe 'paraphrse'"),
    ({"options": {"sampler": {"levls": [0.5]}}}, "robustness.options.sampler: unknown key"),
])
def test_bad_probes_exit_2_before_any_work(setup, capsys, change, message):
    root, table1 = setup
    payload = {**job(root, table1, "bad"), **change}
    assert robustness.main(["--job", json.dumps(payload)]) == 2
    assert message in capsys.readouterr().err
    assert not Path(payload["out"]).exists()


# ---- the report ------------------------------------------------------------------------

def record(method: str, forget: float, paraphrase: float, status: str = "ok",
           seed: int = 0, label: str | None = None) -> RobustnessRecord:
    ok = status == "ok"
    return RobustnessRecord(
        schema=robustness.SCHEMA, status=status, backbone="twin", method=method,
        method_kind="reference" if method in ("no_edit", "retain_model") else "gradient",
        label=label or method, seed=seed, estimator="full_mask", forget_split="forget01",
        n_forget=10, n_retain=30, n_holdout=10,
        base={"forget_logp": forget if ok else None, "forget_rougeL": 0.5 if ok else None,
              "retain_logp": -20.0 if ok else None},
        table1={"max_abs_diff": 0.0} if ok else None,
        probes={"paraphrase": {"logp": paraphrase, "n_facts": 10.0}} if ok else {},
        columns=[("paraphrase", ["logp", "n_facts"])] if ok else [],
        probe_seconds={"paraphrase": 1.0} if ok else {}, edit_seconds=1.0, job_wall_s=2.0,
        method_config={}, notes={}, config_hash="x", error=None if ok else "not here")


def test_report_shows_each_rows_drop_against_the_finetuned_model(tmp_path):
    records = [record("npo", -60.0, -15.0), record("no_edit", -10.0, -12.0,
                                                   label="finetuned (no edit)"),
               record("retain_model", -40.0, -41.0, label="retain (exact unlearning)"),
               record("rome", 0, 0, status="not_applicable")]
    paths = []
    for r in records:
        paths.append(tmp_path / f"{r.method}.json")
        paths[-1].write_text(json.dumps(r.to_dict()))
    out = tmp_path / "robustness"
    assert report.main(["--records", *map(str, paths), "--out", str(out), "--methods",
                        "npo", "rome", "no_edit", "retain_model"]) == 0
    md = out.with_suffix(".md").read_text()
    # trained phrasing: npo removed 50 nats; under the paraphrase only 3
    assert "| twin | npo | -60.00 (−50.00) | 0.500 (+0.000) | -20.00 (+0.00) | 0.0e+00 |" in md
    assert "| twin | npo | -15.00 (−3.00) | 10 |" in md
    assert "| twin | retain (exact unlearning) | -41.00 (−29.00) | 10 |" in md
    assert "| twin | finetuned (no edit) | -12.00 | 10 |" in md  # no Δ against itself
    assert "| twin | rome | not_applicable |" in md
    rows = list(__import__("csv").DictReader(out.with_suffix(".csv").open()))
    assert [r["method"] for r in rows] == ["npo", "rome", "no_edit", "retain_model"]
    assert float(rows[0]["paraphrase.logp.delta"]) == -3.0
    assert "paraphrase.n_facts.delta" not in rows[0]


def test_report_refuses_a_file_that_is_not_a_robustness_record(tmp_path, capsys):
    bad = tmp_path / "table1.json"
    bad.write_text(json.dumps({"status": "ok", "method": "npo"}))
    assert report.main(["--records", str(bad), "--out", str(tmp_path / "r")]) == 2
    assert "not a robustness record" in capsys.readouterr().err
    assert not (tmp_path / "r.md").exists()


# ---- the rules ---------------------------------------------------------------------------

def planned_jobs(workdir, config) -> dict[str, list[dict]]:
    result = dry_run(workdir, "robustness_table", config, extra=("-p",))
    assert result.returncode == 0, result.stderr[-2000:]
    jobs: dict[str, list[dict]] = {}
    for line in result.stdout.splitlines():
        match = re.search(r"-m harness\.jobs\.(\w+) --job (.*?) >", line)
        if match:
            jobs.setdefault(match.group(1), []).append(
                json.loads(shlex.split(match.group(2))[0]))
    return jobs


def test_rules_probe_every_table1_row_with_table1s_own_job(tmp_path):
    jobs = planned_jobs(tmp_path / "plan", DEFAULT)
    rows = [RobustnessJob.from_dict(p) for p in jobs["robustness"]]
    config = yaml.safe_load(DEFAULT.read_text())
    tuning = config["tuning"]["backbone"]
    assert {r.method_job.backbone for r in rows} == {tuning}
    assert sorted(r.method_job.method for r in rows) == sorted(
        config["methods"] + ["no_edit", "retain_model"])
    table1 = {p["out"]: p for p in jobs["run_method"]}
    for payload in jobs["robustness"]:
        # the row's description is Table 1's, word for word (config hash included)
        assert payload["method_job"] == table1[payload["table1_record"]]
        assert payload["out"] == (f"results/robustness/{tuning}/"
                                  f"{payload['method_job']['method']}/seed0.json")
    assert rows[0].probes[:3] == ["paraphrase", "prompt", "sampler"]


def test_rules_check_probe_names_and_backbones(tmp_path):
    config = yaml.safe_load(DEFAULT.read_text())
    config["robustness"] = {"probes": ["paraphrase", "sampler"], "backbones": "all"}
    path = tmp_path / "all.yaml"
    path.write_text(yaml.safe_dump(config))
    rows = planned_jobs(tmp_path / "all", path)["robustness"]
    assert len({r["method_job"]["backbone"] for r in rows}) == len(config["backbones"])
    assert all(r["probes"] == ["paraphrase", "sampler"] for r in rows)
    config["robustness"] = {"probes": ["paraphrse"]}
    path.write_text(yaml.safe_dump(config))
    result = dry_run(tmp_path / "bad", "robustness_table", path)
    assert result.returncode != 0
    assert ("invalid config at 'robustness.probes': unknown probe 'paraphrse'"
            in result.stdout + result.stderr)
    config["robustness"] = {"options": {"sampler": {"levels": [2.0]}}}
    path.write_text(yaml.safe_dump(config))
    result = dry_run(tmp_path / "bad", "robustness_table", path)
    assert result.returncode != 0
    assert ("invalid config at 'robustness.options.sampler': robustness.options.sampler."
            "levels: a list of numbers in (0, 1], got [2.0]" in result.stdout + result.stderr)
