import pytest

from baselines.convergence import StoppingRule, degenerate_reason, is_degenerate
from harness.methods import EditRequest, get_method


def test_rule_stops_at_first_evaluation_reaching_target():
    rule = StoppingRule(max_steps=100, target_forget_drop=2.0, plateau_window=10)
    assert rule.update(0, -10.0) is None
    assert rule.update(5, -11.0) is None
    assert rule.update(10, -11.9) is None
    decision = rule.update(15, -12.1)
    assert decision is not None and decision.reason == "target" and decision.converged


def test_rule_plateau_and_step_cap():
    rule = StoppingRule(max_steps=100, target_forget_drop=None, plateau_window=2,
                        plateau_rel_tol=0.01)
    for step, value in [(0, -10.0), (5, -14.0), (10, -14.05)]:
        assert rule.update(step, value) is None
    decision = rule.update(15, -14.06)  # 0.4% change over the last 2 evaluations
    assert decision.reason == "plateau" and decision.converged
    capped = StoppingRule(max_steps=10, target_forget_drop=50.0)
    assert capped.update(0, -10.0) is None
    assert capped.update(5, -20.0) is None
    decision = capped.update(10, -30.0)
    assert decision.reason == "step_cap" and not decision.converged


def test_rule_rejects_bad_settings():
    with pytest.raises(ValueError, match="target_forget_drop"):
        StoppingRule(max_steps=10, target_forget_drop=-1.0)


def test_degenerate_generations():
    assert is_degenerate([7, 7, 7, 7, 7, 7])
    assert not is_degenerate([7, 8, 9, 7, 1, 1])
    assert degenerate_reason([[5] * 8, [5] * 8, [1, 2, 3, 4]], ignore=(), step=3) is not None
    assert degenerate_reason([[5] * 8, [1, 2, 3, 4], [4, 3, 2, 1]], ignore=(), step=3) is None


def test_training_stops_at_the_target_drop(tiny_backbone, tiny_facts):
    forget, retain = tiny_facts
    target, every = 1.0, 2
    request = EditRequest(tiny_backbone, forget, retain, seed=0, target_forget_drop=target,
                          config={"lr": 3e-4, "eval_every": every, "max_steps": 60,
                                  "progress": False, "collapse_retain_drop": 1e6,
                                  "generation_prompts": 0})
    out = get_method("gradient_ascent").apply(request)
    traj = out.details["trajectory"]
    start = traj[0]["forget"]
    drops = [start - e["forget"] for e in traj]
    assert out.details["stop_reason"] == "target" and out.converged and not out.collapsed
    assert drops[-1] >= target
    assert all(d < target for d in drops[1:-1])  # no earlier evaluation reached it
    assert out.steps == traj[-1]["step"] and out.steps % every == 0
    assert out.details["forget_drop"] == pytest.approx(drops[-1])
