"""The method job runner end to end on a tiny twin backbone (no fine-tuning)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from harness.compute import ModelShape
from harness.methods import MethodNotApplicable, MethodOutcome
from harness.jobs import run_method
from harness.jobs.spec import MethodJob
from harness.results.store import read_record
from job_payloads import method_payload, write_tiny_setup

@pytest.fixture(scope="module")
def tiny_setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("job")
    tofu = write_tiny_setup(root)
    return root, tofu


def make_job(root: Path, tofu: Path, method: str, config: dict, **kw) -> MethodJob:
    kw = {"evaluation": {"gen_steps": 4, "model_utility": False},
          "retain_model_path": str(root / "model"), **kw}
    out = kw.pop("out", str(root / f"{method}.json"))
    return MethodJob.from_dict(method_payload(str(root / "model"), str(tofu), out, method,
                                              method_config=config, **kw))


def test_gradient_ascent_job_record(tiny_setup):
    root, tofu = tiny_setup
    job = make_job(root, tofu, "gradient_ascent",
                   {"lr": 0.05, "max_steps": 4, "eval_every": 2, "warmup_steps": 0,
                    "progress": False, "generation_prompts": 0})
    assert run_method.main(["--job", json.dumps(asdict(job))]) == 0
    record = read_record(job.out)
    assert record["status"] == "ok" and record["method"] == "gradient_ascent"
    assert record["n_facts"] == 5 and record["n_retain_eval"] == 6  # forget05 of 100 records
    assert record["forget_logp_after"] < record["forget_logp_before"]  # ascent lowers it
    # the edit time leaves out the collapse guard (the harness's bookkeeping)
    assert record["details"]["excluded_phases"] == ["collapse_guard"]
    guard = record["method_phase_seconds"]["collapse_guard"]
    assert guard > 0
    assert record["wall_clock_s"] == pytest.approx(record["phase_seconds"]["edit"] - guard)
    assert 1 <= record["steps"] <= 4  # step cap 4 (it may stop earlier on collapse)
    assert {"load", "score_before", "edit", "score_after", "generate", "quality"} <= set(
        record["phase_seconds"])
    assert 0.0 <= record["forget_rougeL_after"] <= 1.0
    # Retain model = the unedited checkpoint: forget quality is a KS p-value in [0, 1].
    assert 0.0 <= record["forget_quality"] <= 1.0
    assert record["inference_mem_bytes"] > 0 and record["extra_mem_bytes"] >= 0
    assert record["subject_source"]["given"] == 5
    assert record["fingerprint"]["torch"] == torch.__version__
    # compute of the edit (harness/compute.py): training steps are backpropagated forwards
    assert record["edit_forward_tokens"] > record["edit_backward_tokens"] > 0
    assert record["edit_flops"] == record["details"]["compute"]["forward_flops"] \
        + record["details"]["compute"]["backward_flops"] > 0
    assert record["optimizer_state_bytes"] > 0  # AdamW's moments


def test_record_carries_the_compute_of_the_edit_only(tiny_setup, monkeypatch):
    """A method with a known sequence of forwards: the record's token passes, FLOPs and
    optimizer state are those of its `apply`, not of the scoring around it."""
    root, tofu = tiny_setup

    class KnownCompute:
        def apply(self, request):
            backbone = request.backbone
            with torch.no_grad():
                backbone.logits(torch.zeros(3, 24, dtype=torch.long))  # forward only
            delta = torch.zeros(4, requires_grad=True)
            optimizer = torch.optim.Adam([delta])
            loss = backbone.logits(torch.zeros(2, 16, dtype=torch.long)).sum() + delta.sum()
            loss.backward()  # forward + backward through trained weights
            optimizer.step()
            backbone.model.zero_grad(set_to_none=True)
            return MethodOutcome(backbone=backbone, phase_seconds={}, steps=1,
                                 converged=True, collapsed=False)

    monkeypatch.setattr(run_method, "get_method", lambda name, config: KnownCompute())
    job = make_job(root, tofu, "npo", {}, out=str(root / "known.json"))
    record = run_method.run(job)
    assert record["edit_forward_tokens"] == 3 * 24 + 2 * 16
    assert record["edit_backward_tokens"] == 2 * 16
    assert record["optimizer_state_bytes"] == 2 * 4 * 4 + 4  # exp_avg, exp_avg_sq, step
    compute = record["details"]["compute"]
    shape = ModelShape(**compute["shape"])
    forward = shape.forward_flops(104, 3 * 24 * 24 + 2 * 16 * 16, 104)
    assert compute["forward_flops"] == forward
    assert record["edit_flops"] == forward + 2 * shape.forward_flops(32, 2 * 16 * 16, 32)
    run_method.write_record(job.out, record)
    assert read_record(job.out)["edit_flops"] == record["edit_flops"]


def test_cuda_oom_is_recorded_not_raised(tiny_setup, monkeypatch):
    root, tofu = tiny_setup

    class Exploding:
        def apply(self, request):
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(run_method, "get_method", lambda name, config: Exploding())
    job = make_job(root, tofu, "npo", {}, out=str(root / "oom.json"))
    record = run_method.run(job)
    assert record["status"] == "oom"
    assert "Tried to allocate 20.00 GiB" in record["error"]
    assert record["forget_logp_before"] is not None and record["forget_logp_after"] is None
    assert record["wall_clock_s"] is None
    assert "edit_flops" not in record and "edit_forward_tokens" not in record
    run_method.write_record(job.out, record)
    assert read_record(job.out)["status"] == "oom"


def test_unknown_job_field_is_rejected(tiny_setup):
    root, tofu = tiny_setup
    with pytest.raises(ValueError, match="unknown field\\(s\\): bogus"):
        MethodJob.from_dict({**make_job(root, tofu, "npo", {}).__dict__, "bogus": 1})


def test_a_missing_job_field_exits_2_naming_it(tiny_setup, capsys):
    """Every field is passed by the workflow (defaults live in the config schema): a job
    without one is refused before any work, naming it."""
    root, tofu = tiny_setup
    payload = asdict(make_job(root, tofu, "npo", {}, out=str(root / "missing.json")))
    del payload["retain_eval_size"], payload["evaluation"]["batch_size"]
    with pytest.raises(SystemExit) as info:
        run_method.main(["--job", json.dumps(payload)])
    assert info.value.code == 2
    assert capsys.readouterr().err.strip() == (
        "error: MethodJob job description has missing field(s): retain_eval_size")
    payload["retain_eval_size"] = 6
    with pytest.raises(SystemExit):
        run_method.main(["--job", json.dumps(payload)])
    assert "MethodJob.evaluation: EvalOptions job description has missing field(s): " \
           "batch_size" in capsys.readouterr().err
    assert not (root / "missing.json").exists()


def test_a_tuned_job_applies_the_chosen_point_of_its_tunable_keys(tiny_setup, tmp_path):
    root, tofu = tiny_setup
    tuned = tmp_path / "tuning.json"
    tuned.write_text(json.dumps({"chosen": {"alpha": 64.0, "lam": 10.0, "q": 0.5,
                                            "forget_drop": 3.0, "retain_drop": 0.5,
                                            "safe": True}}))
    job = make_job(root, tofu, "timerome", {"alpha": 2.0, "gate": True},
                   tuned_config=str(tuned))
    config, note = run_method.tuned_method_config(job)
    assert config == {"alpha": 64.0, "gate": True, "lam": 10.0, "q": 0.5} and note is None
    tuned.write_text(json.dumps({"chosen": None}))
    config, note = run_method.tuned_method_config(job)
    assert config == {"alpha": 2.0, "gate": True} and "no utility-safe point" in note


def test_method_not_applicable_is_recorded_not_raised(tiny_setup, monkeypatch):
    root, tofu = tiny_setup

    class Inapplicable:
        def apply(self, request):
            raise MethodNotApplicable("bb: layer 0's MLP output projection has no 2-D weight")

    monkeypatch.setattr(run_method, "get_method", lambda name, config: Inapplicable())
    job = make_job(root, tofu, "rome", {}, out=str(root / "na.json"))
    record = run_method.run(job)
    assert record["status"] == "not_applicable"
    assert "no 2-D weight" in record["error"]
    assert record["forget_logp_after"] is None
    run_method.write_record(job.out, record)
    assert read_record(job.out)["status"] == "not_applicable"


def test_matched_target_reads_the_drop_of_the_record(tiny_setup, tmp_path):
    root, tofu = tiny_setup
    source = tmp_path / "timerome.json"
    source.write_text(json.dumps({"status": "ok", "method": "timerome",
                                  "forget_logp_before": -2.0, "forget_logp_after": -14.5}))
    job = make_job(root, tofu, "npo", {}, target_from_record=str(source))
    target, note = run_method.matched_target(job)
    assert target == pytest.approx(12.5) and "timerome" in note
    source.write_text(json.dumps({"status": "oom", "method": "timerome",
                                  "forget_logp_before": None, "forget_logp_after": None}))
    target, note = run_method.matched_target(job)
    assert target is None and "status oom" in note
    source.write_text(json.dumps({"status": "ok", "method": "timerome",
                                  "forget_logp_before": -2.0, "forget_logp_after": -1.5}))
    assert run_method.matched_target(job)[0] is None  # nothing removed: plateau/cap stop
    missing = make_job(root, tofu, "npo", {}, target_from_record=str(tmp_path / "none.json"))
    with pytest.raises(ValueError, match="none.json: cannot read the record to match"):
        run_method.matched_target(missing)


def test_retain_train_and_eval_samples_are_disjoint_and_sized(tiny_setup):
    from harness.jobs.selection import last_n_selection, split_selection

    _, tofu = tiny_setup
    sel = split_selection(str(tofu), "forget05", "retain95", 6, 0, train_size=30)
    assert len(sel.retain_eval) == 6 and len(sel.retain_train) == 30
    assert not {f.key for f in sel.retain_eval} & {f.key for f in sel.retain_train}
    scaling = last_n_selection(str(tofu), 5, 10, 6, 0, train_size=200)
    assert len(scaling.retain_train) == 90 - 6  # capped by the pool (100 - 10 records)


def test_non_finite_scores_fail_the_job_and_write_no_record(tiny_setup, monkeypatch):
    """An edit that makes the model's scores NaN is a failure, not an `ok` record with nulls."""
    root, tofu = tiny_setup
    real_mean_logp = run_method.mean_logp
    calls = []

    def nan_after_edit(*args, **kwargs):
        calls.append(1)
        return float("nan") if len(calls) > 2 else real_mean_logp(*args, **kwargs)

    monkeypatch.setattr(run_method, "mean_logp", nan_after_edit)
    job = make_job(root, tofu, "timerome", {"alpha": 2.0, "times": [1.0], "noise_samples": 1},
                   out=str(root / "nan.json"), evaluation={"rouge": False, "forget_quality": False,
                                                            "model_utility": False,
                                                            "gen_steps": 4})
    with pytest.raises(run_method.NonFiniteScores,
                       match=r"tiny / timerome \(seed 0\): non-finite score\(s\) "
                             r"forget_logp_after=nan, retain_logp_after=nan"):
        run_method.main(["--job", json.dumps(asdict(job))])
    assert not Path(job.out).exists()
