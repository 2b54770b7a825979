"""Out of memory is a failed run (`status: oom`, with its phase), never a collapse.

Real `torch.OutOfMemoryError` / `MemoryError` instances are raised inside the real gradient
training loop (from the objective's loss, i.e. inside a training step's forward) on a tiny
twin; the job must record `oom` with the phase, not `ok, collapsed`, and must empty the
CUDA cache (a fake that only says CUDA is there once the error was raised)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
from job_payloads import method_payload, sequential_payload, write_tiny_setup

from baselines.gradient_ascent import GradientAscentObjective
from harness.jobs import run_method, sequential
from harness.jobs.sequential import SequentialJob
from harness.jobs.spec import MethodJob
from harness.results.store import read_record, write_record

ASCENT = {"lr": 1e-3, "max_steps": 4, "eval_every": 1, "warmup_steps": 0, "progress": False,
          "generation_prompts": 0}
EVALUATION = {"gen_steps": 4, "model_utility": False, "forget_quality": False, "rouge": False}
CUDA_OOM = "CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 79.1 GiB total capacity)"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("oom")
    return root, write_tiny_setup(root)


@pytest.fixture
def fake_cuda_cache(monkeypatch):
    """torch.cuda says it is available only after the error was raised (so that nothing
    before it takes the CUDA path); `calls` logs each empty_cache and each scoring."""
    state = {"raised": False, "calls": []}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: state["raised"])
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: state["calls"].append("empty_cache"))
    original_mean_logp = run_method.mean_logp

    def logged_mean_logp(*args, **kwargs):
        state["calls"].append("score")
        return original_mean_logp(*args, **kwargs)

    monkeypatch.setattr(run_method, "mean_logp", logged_mean_logp)
    return state


def raise_in_step(monkeypatch, state, error: BaseException, at_call: int) -> None:
    """The gradient-ascent objective's loss (the training step's forward) raises `error` on
    its `at_call`-th call; the earlier steps are real."""
    real_loss = GradientAscentObjective.loss
    calls = {"n": 0}

    def loss(self, backbone, forget, retain, generator):
        calls["n"] += 1
        if calls["n"] == at_call:
            state["raised"] = True
            raise error
        return real_loss(self, backbone, forget, retain, generator)

    monkeypatch.setattr(GradientAscentObjective, "loss", loss)


def ascent_job(root: Path, tofu: Path, name: str) -> MethodJob:
    return MethodJob.from_dict(method_payload(str(root / "model"), str(tofu),
                                              str(root / f"{name}.json"), "gradient_ascent",
                                              method_config=ASCENT, evaluation=EVALUATION))


def test_cuda_oom_inside_a_training_step_is_oom_with_its_phase(tiny, monkeypatch,
                                                               fake_cuda_cache):
    root, tofu = tiny
    # the warm-up's step is not the loop's: count from the loop (warm-up left out here)
    monkeypatch.setattr("baselines.gradient_ascent.GradientAscent.warm_up",
                        lambda self, request: None)
    raise_in_step(monkeypatch, fake_cuda_cache, torch.OutOfMemoryError(CUDA_OOM), at_call=3)
    job = ascent_job(root, tofu, "oom_step")
    record = run_method.run(job)
    assert record["status"] == "oom"
    assert record["collapsed"] is None and record["collapse_reason"] is None
    assert record["error"].startswith("out of memory in phase edit/train (step 3): "
                                      "OutOfMemoryError: CUDA out of memory")
    details = record["details"]
    assert (details["oom_phase"], details["oom_method_phase"], details["oom_step"]) == \
        ("edit", "train", 3)
    assert record["wall_clock_s"] is None and record["forget_logp_after"] is None
    # the cache was emptied, and no scoring ran after the error
    calls = fake_cuda_cache["calls"]
    assert "empty_cache" in calls
    assert "score" not in calls[calls.index("empty_cache"):]
    assert "score_after" not in record["phase_seconds"]
    write_record(job.out, record)  # a valid record
    assert read_record(job.out)["status"] == "oom"


def test_host_memory_error_in_a_step_is_oom_not_collapse(tiny, monkeypatch, fake_cuda_cache):
    root, tofu = tiny
    monkeypatch.setattr("baselines.gradient_ascent.GradientAscent.warm_up",
                        lambda self, request: None)
    raise_in_step(monkeypatch, fake_cuda_cache, MemoryError("cannot allocate 8 GiB"),
                  at_call=1)
    record = run_method.run(ascent_job(root, tofu, "oom_host"))
    assert record["status"] == "oom" and record["collapsed"] is None
    assert record["error"].startswith("out of memory in phase edit/train (step 1): MemoryError")


def test_oom_in_the_warm_up_names_the_warm_up(tiny, monkeypatch, fake_cuda_cache):
    """The gradient warm-up runs the same forward: an OOM there is `warm_up`, not `edit`."""
    root, tofu = tiny

    def exploding_forward(*args, **kwargs):
        fake_cuda_cache["raised"] = True
        raise torch.OutOfMemoryError(CUDA_OOM)

    monkeypatch.setattr("baselines.objectives.answer_loss", exploding_forward)
    record = run_method.run(ascent_job(root, tofu, "oom_warm_up"))
    assert record["status"] == "oom"
    assert record["details"]["oom_phase"] == "warm_up"
    assert record["error"].startswith("out of memory in phase warm_up: OutOfMemoryError")
    assert "empty_cache" in fake_cuda_cache["calls"]  # by the job (no training loop ran)


def test_a_non_oom_runtime_error_in_a_step_is_still_a_collapse(tiny, monkeypatch,
                                                                fake_cuda_cache):
    """The other side of the rule: a numerical RuntimeError is a collapse, recorded ok."""
    root, tofu = tiny
    raise_in_step(monkeypatch, fake_cuda_cache, RuntimeError("CUBLAS_STATUS_EXECUTION_FAILED"),
                  at_call=2)
    record = run_method.run(ascent_job(root, tofu, "collapse"))
    assert record["status"] == "ok" and record["collapsed"] is True
    assert "CUBLAS_STATUS_EXECUTION_FAILED" in record["collapse_reason"]


def test_sequential_oom_is_recorded_with_the_insertion(tiny, monkeypatch, fake_cuda_cache):
    root, tofu = tiny
    from harness.timerome.editor import TimeROMEEditor

    real_insert = TimeROMEEditor.insert
    calls = {"n": 0}

    def insert(self, fact):
        calls["n"] += 1
        if calls["n"] == 2:
            fake_cuda_cache["raised"] = True
            raise torch.OutOfMemoryError(CUDA_OOM)
        return real_insert(self, fact)

    monkeypatch.setattr(TimeROMEEditor, "insert", insert)
    payload = sequential_payload(str(root / "model"), str(tofu), str(root / "seq_oom.json"))
    job = SequentialJob.from_dict(payload)
    record = sequential.run(job)
    assert record["status"] == "oom"
    assert record["error"].startswith("out of memory in phase edit: OutOfMemoryError")
    assert record["details"]["oom_phase"] == "edit"
    assert record["details"]["oom_at_insertion"] == 2
    assert [p["n_inserted"] for p in record["curve"]] == [1]  # the curve up to the error
    assert record["forget_logp_after"] is None and record["wall_clock_s"] is None
    assert "empty_cache" in fake_cuda_cache["calls"]
    write_record(job.out, record)
    assert read_record(job.out)["status"] == "oom"


def test_robustness_oom_names_its_phase(tiny, monkeypatch, fake_cuda_cache):
    from harness.jobs import edited_model as edited_model_module
    from harness.jobs import robustness

    def exploding(job):
        fake_cuda_cache["raised"] = True
        raise torch.OutOfMemoryError(CUDA_OOM)

    monkeypatch.setattr(edited_model_module, "edited_model", exploding)
    root, tofu = tiny
    table1 = asdict(ascent_job(root, tofu, "t1"))
    payload = {"method_job": table1, "table1_record": table1["out"], "probes": ["paraphrase"],
               "options": {}, "out": str(root / "robustness_oom.json")}
    record = robustness.run(robustness.RobustnessJob.from_dict(json.loads(json.dumps(payload))))
    assert record["status"] == "oom"
    assert record["error"].startswith("out of memory in phase edit: OutOfMemoryError")
    assert record["notes"]["oom_phase"] == "edit"
    assert "empty_cache" in fake_cuda_cache["calls"]
