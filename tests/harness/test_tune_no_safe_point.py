"""The tune job when no grid point is utility-safe: it fails (non-zero exit, an `error:`
line, no tuning record) unless the job says `on_no_safe_point: fallback_defaults`, in which
case the record says it fell back and why (TimeROME then runs with its defaults)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import harness.jobs.tune as tune_job
from harness.data import write_synthetic
from harness.jobs.selection import split_selection
from harness.timerome import tuning
from harness.timerome.tuning import GridPoint, TuningResult, apply_tuning
from job_payloads import TINY_ENTRY as ENTRY, tune_payload

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tofu(tmp_path_factory) -> Path:
    return write_synthetic(tmp_path_factory.mktemp("tune") / "data", authors=20,
                           facts_per_author=5, seed=1)


def make_job(tofu: Path, out: Path, **kw) -> dict:
    return tune_payload("unused", str(tofu), str(out), **kw)


def canned(points: list[GridPoint], max_retain_drop: float = 1.0) -> TuningResult:
    safe = [p for p in points if p.safe]
    return TuningResult(chosen=max(safe, key=lambda p: p.forget_drop) if safe else None,
                        grid=points, max_retain_drop=max_retain_drop, estimator="full_mask",
                        validation_facts=["validation:0"], retain_facts=["retain95:0"],
                        base_config={}, backbone={"name": "tiny"}, seconds=0.5)


UNSAFE = [GridPoint(8.0, 1.0, 0.5, forget_drop=9.0, retain_drop=2.5, safe=False),
          GridPoint(8.0, 1.0, 1.0, forget_drop=11.0, retain_drop=3.0, safe=False)]
SAFE = [GridPoint(8.0, 1.0, 0.5, forget_drop=9.0, retain_drop=0.5, safe=True),
        GridPoint(8.0, 1.0, 1.0, forget_drop=11.0, retain_drop=3.0, safe=False)]


@pytest.fixture
def fake_tune(monkeypatch):
    """Replace the backbone load and the grid search; everything else in the job is real."""
    monkeypatch.setattr(tune_job.TuneJob, "load", lambda job: object())
    outcome: dict = {}

    def fake(backbone, validation, retain, base, grid, max_retain_drop, calibration, **_):
        assert len(grid.alphas) * len(grid.lams) * len(grid.qs) == 2
        outcome.update(retain=retain, calibration=calibration)
        return canned(outcome["points"], max_retain_drop)

    monkeypatch.setattr(tuning, "tune", fake)
    monkeypatch.setattr(tuning, "TimeROMEEditor", NoTraceEditor)
    return outcome


class NoTraceEditor:
    """The editor tune_counts traces and computes statistics with once; the fake grid
    search uses neither."""

    def __init__(self, backbone, config, **kwargs):
        self.config = config

    def trace(self, facts, site_rules=()):
        return None, self

    def select(self, index):
        return self

    def backbone_statistics(self):
        return {}


def test_no_safe_point_fails_by_default(tmp_path, tofu, fake_tune, capsys):
    fake_tune["points"] = UNSAFE
    out = tmp_path / "tuning.json"
    assert make_job(tofu, out)["on_no_safe_point"] == "fail"  # the schema's default
    assert tune_job.main(["--job", json.dumps(make_job(tofu, out))]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(
        "error: no grid point keeps the mean retain drop <= 1.0 nats/sample (smallest 95% upper bound: 2.5 "
        "at alpha=8.0, lam=1.0, q=0.5); no tuning record written")
    assert "tuning.on_no_safe_point: fallback_defaults" in err[0]
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_explicit_fail_fails(tmp_path, tofu, fake_tune):
    fake_tune["points"] = UNSAFE
    out = tmp_path / "tuning.json"
    job = make_job(tofu, out, on_no_safe_point="fail")
    assert tune_job.main(["--job", json.dumps(job)]) == 1
    assert not out.exists()


def test_fallback_records_that_it_fell_back(tmp_path, tofu, fake_tune, capsys):
    fake_tune["points"] = UNSAFE
    out = tmp_path / "tuning.json"
    job = make_job(tofu, out, on_no_safe_point="fallback_defaults")
    assert tune_job.main(["--job", json.dumps(job)]) == 0
    record = json.loads(out.read_text())
    assert record["chosen"] is None and record["fallback"] is True
    assert record["fallback_reason"].startswith(
        "no grid point keeps the mean retain drop <= 1.0 nats/sample (smallest 95% upper bound: 2.5 at "
        "alpha=8.0, lam=1.0, q=0.5); tuning.on_no_safe_point is fallback_defaults: "
        "TimeROME-DLM runs with its default hyperparameters")
    assert len(record["grid"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("warning: no grid point keeps") and "error:" not in err
    # The method job then runs untuned, and says so.
    config, note = apply_tuning({"alpha": 4.0}, str(out), ("alpha", "lam", "q"))
    assert config == {"alpha": 4.0} and "no utility-safe point" in note


def test_safe_point_is_chosen_and_not_a_fallback(tmp_path, tofu, fake_tune):
    fake_tune["points"] = SAFE
    out = tmp_path / "tuning.json"
    assert tune_job.main(["--job", json.dumps(make_job(tofu, out))]) == 0
    record = json.loads(out.read_text())
    assert record["chosen"]["retain_drop"] == 0.5
    assert record["fallback"] is False and record["fallback_reason"] is None


@pytest.mark.parametrize("eval_seed", [0, 3])
def test_tuning_never_uses_the_retain_facts_table1_scores(tmp_path, tofu, fake_tune,
                                                          eval_seed):
    """The job's scored and calibration retain facts are blocks of the permutation that
    gives Table 1 (run_method, same splits, sizes and data.eval_seed) its scored facts."""
    fake_tune["points"] = SAFE
    job = make_job(tofu, tmp_path / "tuning.json", eval_seed=eval_seed)
    assert tune_job.main(["--job", json.dumps(job)]) == 0
    table1 = split_selection(str(tofu), job["forget_split"], job["retain_split"],
                             job["retain_eval_size"], eval_seed, job["retain_train_size"],
                             job["validation_split"])
    retain, calibration = fake_tune["retain"], fake_tune["calibration"]
    assert (len(retain), len(calibration)) == (job["retain_eval_size"], job["retain_train_size"])
    used = [f.key for f in retain + calibration]
    assert len(set(used)) == len(used)
    assert not set(used) & {f.key for f in table1.retain_eval}


@pytest.mark.parametrize("size, message", [
    (60, "error: tuning: retain sample: blocks of sizes [60, 60, 8] need 120 facts"),
    (45, "error: tuning: no retain facts left for the edit's retain statistics")])
def test_a_pool_too_small_for_the_tuning_samples_is_a_job_error(tmp_path, tofu, fake_tune,
                                                                capsys, size, message):
    """The tiny corpus's pool (90 facts) holds neither 2 x 60 scored facts nor, after
    2 x 45, any calibration fact: exit 2 before the model loads, nothing written."""
    job = make_job(tofu, tmp_path / "tuning.json", retain_eval_size=size)
    assert tune_job.main(["--job", json.dumps(job)]) == 2
    assert capsys.readouterr().err.strip().startswith(message)
    assert list(tmp_path.iterdir()) == []


def test_unknown_policy_is_a_job_error(tmp_path, tofu, fake_tune, capsys):
    fake_tune["points"] = SAFE
    out = tmp_path / "tuning.json"
    job = make_job(tofu, out, on_no_safe_point="maybe")
    assert tune_job.main(["--job", json.dumps(job)]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: on_no_safe_point 'maybe' is not one of fail, fallback_defaults "
        "(config key tuning.on_no_safe_point)")
    assert not out.exists()


@pytest.mark.parametrize("groups", [0, 2.5, True])
def test_bad_group_count_is_a_job_error_before_the_model_loads(tmp_path, tofu, fake_tune,
                                                               capsys, groups):
    out = tmp_path / "tuning.json"
    job = make_job(tofu, out, groups=groups)
    assert tune_job.main(["--job", json.dumps(job)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: groups {groups!r} is not a whole number >= 1 (config key tuning.groups: "
        "validation groups per fact-count regime)")
    assert not out.exists()


def test_default_is_stated_once_in_the_config_schema(tmp_path, tofu, capsys):
    schema = json.loads((REPO_ROOT / "workflows" / "config" / "schema.json").read_text())
    policy = schema["properties"]["tuning"]["properties"]["on_no_safe_point"]
    assert policy["default"] == "fail"
    assert tuple(policy["enum"]) == tune_job.ON_NO_SAFE_POINT_CHOICES
    job = make_job(tofu, tmp_path / "tuning.json")
    del job["on_no_safe_point"]  # the job states no default of its own
    with pytest.raises(SystemExit) as info:
        tune_job.main(["--job", json.dumps(job)])
    assert info.value.code == 2
    assert capsys.readouterr().err.strip() == (
        "error: TuneJob job description has missing field(s): on_no_safe_point")


def test_tuning_record_is_strict_json(tmp_path):
    result = canned([GridPoint(8.0, 1.0, 0.5, float("nan"), 0.5, True)])
    with pytest.raises(ValueError, match=r"tuning\.json: non-finite number nan at "
                                         r"'chosen/forget_drop'"):
        tuning.write_tuning(result, tmp_path / "tuning.json")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_real_job_with_an_impossible_budget_fails(tmp_path, tofu, capsys):
    """End to end on a tiny random twin: no point can keep the retain drop under -1000."""
    from harness.backbones.base import BackboneSpec
    from harness.backbones.registry import adapter_class
    from harness.data import load_corpus
    from harness.finetune import corpus_texts

    spec = BackboneSpec(name="tiny", **ENTRY)
    backbone = adapter_class("llada-twin").initial(spec, corpus_texts(load_corpus(tofu)), seed=0)
    backbone.save_pretrained(str(tmp_path / "model"))
    out = tmp_path / "tuning" / "seed0.json"
    job = make_job(tofu, out, backbone_path=str(tmp_path / "model"), max_retain_drop=-1000.0,
                   grid={"alpha": [8.0], "lam": [1.0], "q": [1.0]},
                   method_config={"precondition": "none", "gate": False,
                                  "positions": "subject"})
    assert tune_job.main(["--job", json.dumps(job)]) == 1
    assert "error: no grid point keeps the mean retain drop <= -1000.0" in capsys.readouterr().err
    assert not out.exists()


def test_no_safe_point_names_the_gate_budget_when_the_retain_drop_was_within_budget():
    """Points within the retain budget that the gate budget ruled out: the message says so
    (it once named a retain drop of 0 as the reason nothing was safe)."""
    from harness.timerome.tuning import GridPoint, TuningResult

    points = [GridPoint(4.0, 0.01, 0.5, 8.0, 0.0, False, gate_margin=0.8,
                        expected_gate_opens=0.004),
              GridPoint(1024.0, 1.0, 1.0, 9.0, 0.2, False, gate_margin=0.0,
                        expected_gate_opens=0.09)]
    result = TuningResult(chosen=None, grid=points, max_retain_drop=1.0, estimator="full_mask",
                          validation_facts=[], retain_facts=[f"r{i}" for i in range(40)],
                          base_config={}, backbone={}, seconds=0.0,
                          gate_open_budget=0.0018, damage_per_opening=18.9)
    text = result.no_safe_point()
    assert text.startswith("no grid point is utility-safe at every regime: 2 keep the retain "
                           "drop's 95% upper bound within 1.0 nats/sample")
    assert ("the fewest expected gate openings among them, 0.004 per retain fact (alpha=4.0, "
            "gate_margin=0.8), is over the gate budget of 0.0018 (damage per opening 18.9 "
            "nats)") in text


@pytest.mark.parametrize("workflow_extrapolate", [None, 2, 400])
def test_tuning_extrapolates_at_least_to_table1s_memory(tmp_path, tofu, monkeypatch,
                                                        workflow_extrapolate):
    """Table 1 puts the whole forget split into one memory (40 facts on real TOFU's
    forget01, more than the 20 of that config's largest scaling count): the tune job's
    extrapolated regime reaches the forget split's size, or the workflow's count if larger."""
    from harness.data import load_split

    monkeypatch.setattr(tune_job.TuneJob, "load", lambda job: object())
    seen: dict = {}

    def fake_counts(backbone, validation, retain, counts, base, grid, **kw):
        seen.update(kw)
        return canned(SAFE)

    monkeypatch.setattr(tuning, "tune_counts", fake_counts)
    job = make_job(tofu, tmp_path / "tuning.json", extrapolate_to=workflow_extrapolate)
    assert tune_job.main(["--job", json.dumps(job)]) == 0
    forget = len(load_split(str(tofu), job["forget_split"]))
    assert forget > 2
    assert seen["extrapolate_to"] == max(forget, workflow_extrapolate or 0)
