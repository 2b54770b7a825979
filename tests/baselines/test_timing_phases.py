"""Which work each baseline's timed phases hold, and which phases the edit time excludes
(docs/measurements/edit_timing_rules.md). Attribution is observed, not timed: the phase
context manager is wrapped to record the phase each scoring / generation call runs in."""

from __future__ import annotations

from contextlib import contextmanager

import pytest
import torch

from baselines import editing, training
from harness.compute import ComputeCounter
from harness.measure import bookkeeping, timed
from harness.methods import EditRequest, get_method
from harness.methods.base import MethodOutcome

GA = {"lr": 3e-4, "max_steps": 4, "eval_every": 2, "progress": False, "generation_prompts": 1}
EDIT = {"v_steps": 2, "n_prefixes": 1, "mask_ratios": [1.0]}


def test_outcome_wall_clock_leaves_out_the_excluded_phases():
    out = MethodOutcome(backbone=None, phase_seconds={"train": 2.0, "collapse_guard": 5.0,
                                                      "setup": 0.5},
                        excluded_phases=("collapse_guard",))
    assert out.wall_clock_s == pytest.approx(2.5)


@pytest.fixture
def phase_log(monkeypatch):
    """Record the innermost open phase of every scoring and generation call."""
    stack: list[str] = []
    calls: list[tuple[str, str]] = []  # (what, phase)

    @contextmanager
    def tracking(phases, name, device=None):
        stack.append(name)
        try:
            with timed(phases, name, device):
                yield
        finally:
            stack.pop()

    def log(what, fn):
        def wrapped(*args, **kwargs):
            calls.append((what, stack[-1] if stack else "<none>"))
            return fn(*args, **kwargs)
        return wrapped

    @contextmanager
    def tracking_bookkeeping(phases, name, device=None):
        stack.append(name)
        try:
            with bookkeeping(phases, name, device):
                yield
        finally:
            stack.pop()

    for module in (training, editing):
        monkeypatch.setattr(module, "timed", tracking)
        monkeypatch.setattr(module, "bookkeeping", tracking_bookkeeping)
    monkeypatch.setattr(training, "_generations", log("generate", training._generations))
    real_mean = training.mean_full_mask

    def mean(backbone, facts, batch_size):
        what = "forget" if facts is mean.forget else "retain"
        calls.append((f"score_{what}", stack[-1] if stack else "<none>"))
        return real_mean(backbone, facts, batch_size)

    mean.forget = None  # the test sets the forget list it passes
    monkeypatch.setattr(training, "mean_full_mask", mean)
    monkeypatch.setattr(editing, "mean_logprobs", log("report_scores", editing.mean_logprobs))
    return calls, mean


def test_gradient_loop_counts_the_stopping_rule_and_excludes_the_guards(
        phase_log, tiny_backbone, tiny_facts):
    calls, mean = phase_log
    forget, retain = tiny_facts
    mean.forget = forget
    out = get_method("gradient_ascent", {**GA, "keep_original": True}).apply(
        EditRequest(tiny_backbone, forget, retain, seed=0))
    assert set(out.phase_seconds) == {"undo_copy", "setup", "train", "convergence_eval",
                                      "collapse_guard"}
    assert set(out.excluded_phases) == {"undo_copy", "collapse_guard"}
    counted = sum(out.phase_seconds[p] for p in ("setup", "train", "convergence_eval"))
    assert out.wall_clock_s == pytest.approx(counted)
    # the forget scores the stopping rule reads are the method's; the rest is the guard's
    assert {phase for what, phase in calls if what == "score_forget"} == {"convergence_eval"}
    assert {phase for what, phase in calls if what == "score_retain"} == {"collapse_guard"}
    assert {phase for what, phase in calls if what == "generate"} == {"collapse_guard"}
    assert [w for w, _ in calls].count("score_forget") == len(out.details["trajectory"]) == 3


def test_gradient_loop_reports_its_optimizer_state(tiny_backbone, tiny_facts):
    forget, retain = tiny_facts
    params = [p for p in tiny_backbone.model.parameters() if p.requires_grad]
    with ComputeCounter(tiny_backbone) as counter:
        out = get_method("gradient_ascent", GA).apply(
            EditRequest(tiny_backbone, forget, retain, seed=0))
    assert "undo_copy" not in out.phase_seconds and out.excluded_phases == ("collapse_guard",)
    # AdamW keeps exp_avg and exp_avg_sq (fp32, one value per parameter) and a step scalar
    expected = sum(2 * p.numel() * 4 + 4 for p in params)
    assert counter.optimizer_state_bytes == expected


@pytest.mark.parametrize("name", ["rome", "memit"])
def test_weight_edits_exclude_the_undo_copy_and_the_report_scores(
        name, phase_log, tiny_backbone, tiny_facts):
    calls, _ = phase_log
    forget, retain = tiny_facts
    out = get_method(name, EDIT).apply(EditRequest(tiny_backbone, forget, retain, seed=0))
    assert {"prefixes", "covariance", "keys", "value_optimisation", "update", "undo_copy",
            "report_eval"} == set(out.phase_seconds)
    assert set(out.excluded_phases) == {"undo_copy", "report_eval"}
    counted = sum(s for p, s in out.phase_seconds.items()
                  if p not in ("undo_copy", "report_eval"))
    assert out.wall_clock_s == pytest.approx(counted)
    assert calls == [("report_scores", "report_eval")] * 2  # before and after, nothing else
    assert "report_eval_seconds" not in out.details
    assert torch.isfinite(torch.tensor(out.details["forget_drop"]))
