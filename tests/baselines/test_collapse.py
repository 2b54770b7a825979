import math

import torch

from baselines.training import TrainingConfig, train_unlearning
from harness.methods import EditRequest, get_method


def test_huge_learning_rate_is_recorded_as_collapse(tiny_backbone, tiny_facts):
    forget, retain = tiny_facts
    request = EditRequest(tiny_backbone, forget, retain, seed=0,
                          config={"lr": 1e6, "max_steps": 20, "eval_every": 2,
                                  "warmup_steps": 0, "progress": False})
    out = get_method("graddiff").apply(request)  # must not raise
    assert out.collapsed and not out.converged
    assert out.collapse_reason and out.details["stop_reason"] == "collapse"
    assert out.steps <= 20


class _InfObjective:
    needs_retain = False

    def __init__(self, finite_steps: int):
        self.calls = 0
        self.finite_steps = finite_steps

    def setup(self, backbone):
        pass

    def loss(self, backbone, forget, retain, generator):
        self.calls += 1
        logits = backbone.logits(forget.input_ids)
        scale = 1.0 if self.calls <= self.finite_steps else math.inf
        return logits.float().mean() * 0 + scale * logits.float().pow(2).mean()


def test_injected_inf_loss_is_recorded_as_collapse(tiny_backbone, tiny_facts):
    forget, retain = tiny_facts
    before = [p.detach().clone() for p in tiny_backbone.model.parameters()]
    request = EditRequest(tiny_backbone, forget, retain, seed=0)
    cfg = TrainingConfig(lr=1e-6, max_steps=50, eval_every=100, progress=False)
    out = train_unlearning(request, _InfObjective(finite_steps=3), cfg, "test")
    assert out.collapsed and "non-finite loss" in out.collapse_reason
    assert out.steps == 3  # the 4th step's loss was inf: no update was applied with it
    after = list(tiny_backbone.model.parameters())
    assert all(torch.isfinite(p).all() for p in after)
    assert any(not torch.equal(a, b) for a, b in zip(after, before))
