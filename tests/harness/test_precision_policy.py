"""The precision policy (harness/precision.py, docs/precision.md).

- bf16 weights: a plain bf16 AdamW step at lr 1e-5 rounds the update of |w| = 1 away; the
  fp32 master path moves the master by ~lr each step and, after enough steps, the bf16
  weight too.
- float32 weights (the CPU default): the policy is a no-op, bitwise (no copy; the same
  weights as the plain AdamW path, in a bare loop and in a tiny gradient-ascent run).
- every record carries the policy (`precision`), TimeROME's included."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from job_payloads import TINY_ENTRY, method_payload, write_tiny_setup

from baselines import training
from baselines.configs import TrainingConfig
from baselines.gradient_ascent import GradientAscentObjective
from harness.backbones.base import BackboneSpec
from harness.backbones.registry import load_backbone
from harness.data import load_split
from harness.jobs import run_method
from harness.jobs.spec import MethodJob
from harness.methods import EditRequest
from harness.precision import MasterWeights, PrecisionPolicy, policy_for, split_decay

LR = 1e-5


def adamw(params, lr=LR):
    return torch.optim.AdamW(params, lr=lr, weight_decay=0.0)


def one_step(optimizer, params, grad_value=1.0):
    for p in params:
        p.grad = torch.full_like(p, grad_value)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def test_plain_bf16_adamw_step_at_lr_1e5_leaves_the_weight_bitwise_unchanged():
    w = torch.nn.Parameter(torch.ones(8, dtype=torch.bfloat16))
    before = w.detach().clone()
    optimizer = adamw([w])
    for _ in range(50):
        one_step(optimizer, [w])
    assert torch.equal(w.detach(), before)  # every update (~1e-5) rounds away at |w| = 1


def test_fp32_master_weights_move_a_bf16_parameter_under_lr_1e5():
    w = torch.nn.Parameter(torch.ones(8, dtype=torch.bfloat16))
    masters = MasterWeights([w], torch.float32)
    (master,) = masters.optimizer_params()
    assert master.dtype == torch.float32 and master is not w
    optimizer = adamw([master])

    def step():
        w.grad = torch.ones_like(w)  # what backward leaves on the bf16 parameter
        masters.grads_to_masters()
        assert w.grad is None and master.grad.dtype == torch.float32
        optimizer.step()
        masters.masters_to_params()
        optimizer.zero_grad(set_to_none=True)

    step()
    # Adam's first step moves by lr (m / sqrt(v) = 1 for a constant gradient)
    assert (1.0 - master.detach()).tolist() == pytest.approx([LR] * 8, rel=1e-2)  # fp32 ulp
    assert torch.equal(w.detach(), torch.ones(8, dtype=torch.bfloat16))  # not yet visible
    for _ in range(399):
        step()
    assert (1.0 - master.detach()).tolist() == pytest.approx([400 * LR] * 8, rel=1e-2)
    # 4e-3 below 1.0 is past half a bf16 ulp (2^-9 ~ 1.95e-3): the bf16 weight moved too
    assert (w.detach().float() < 1.0).all()
    assert w.detach().float().tolist() == pytest.approx(master.detach().tolist(), abs=2e-3)


def test_float32_parameters_are_their_own_masters_and_train_bitwise_as_before():
    """A bare loop (backward, clip, AdamW with decay groups) on a float32 model: the
    policy path and the plain path end with identical weights."""
    def model():
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3))

    x = torch.randn(16, 6, generator=torch.Generator().manual_seed(1))

    plain = model()
    params = list(plain.parameters())
    decay, no_decay = split_decay(params)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01},
                             {"params": no_decay, "weight_decay": 0.0}], lr=1e-2)
    for _ in range(5):
        plain(x).square().mean().backward()
        torch.nn.utils.clip_grad_norm_(params, 0.5)
        opt.step()
        opt.zero_grad(set_to_none=True)

    policy = policy_for(torch.float32, "cpu", gradient=True)
    assert not policy.needs_masters
    mastered = model()
    masters = MasterWeights(mastered.parameters(), policy.master_dtype)
    assert masters.n_copies == 0
    stepped = masters.optimizer_params()
    assert all(a is b for a, b in zip(stepped, mastered.parameters()))
    opt = training.build_optimizer(stepped, 1e-2, 0.01)
    for _ in range(5):
        mastered(x).square().mean().backward()
        masters.grads_to_masters()
        torch.nn.utils.clip_grad_norm_(stepped, 0.5)
        opt.step()
        masters.masters_to_params()
        opt.zero_grad(set_to_none=True)
    for a, b in zip(plain.parameters(), mastered.parameters()):
        assert torch.equal(a, b)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("precision")
    return root, write_tiny_setup(root)


def tiny_backbone(root: Path):
    return load_backbone(BackboneSpec(name="tiny", **TINY_ENTRY, path=str(root / "model")))


def ascent(backbone, tofu: Path):
    forget = load_split(tofu, "forget05")
    retain = load_split(tofu, "retain95")[:8]
    cfg = TrainingConfig(lr=1e-3, max_steps=3, eval_every=3, warmup_steps=0,
                         progress=False, generation_prompts=0)
    request = EditRequest(backbone=backbone, forget=forget, retain=retain, seed=0)
    return training.train_unlearning(request, GradientAscentObjective(cfg.eps), cfg,
                                     "gradient_ascent")


def test_tiny_float32_ascent_run_is_identical_with_and_without_the_policy(tiny, monkeypatch):
    """The CPU default (float32 twin): the gradient policy's path gives the weights of the
    path without masters (policy of a method that steps the weights directly)."""
    root, tofu = tiny
    with_policy = tiny_backbone(root)
    outcome = ascent(with_policy, tofu)
    assert outcome.details["master_weight_tensors"] == 0 and outcome.steps == 3
    monkeypatch.setattr(training, "gradient_policy",
                        lambda backbone: policy_for(backbone.dtype, backbone.device, False))
    without = tiny_backbone(root)
    ascent(without, tofu)
    a, b = with_policy.model.state_dict(), without.model.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_tiny_bf16_ascent_run_steps_fp32_masters(tiny):
    """bf16 weights: every trainable tensor gets an fp32 master, and the run moves them."""
    root, tofu = tiny
    backbone = tiny_backbone(root)
    backbone.model.to(torch.bfloat16)
    before = {k: v.clone() for k, v in backbone.model.state_dict().items()}
    outcome = ascent(backbone, tofu)
    n_trainable = sum(1 for p in backbone.model.parameters() if p.requires_grad)
    assert outcome.details["master_weight_tensors"] == n_trainable > 0
    after = backbone.model.state_dict()
    assert all(v.dtype == torch.bfloat16 for v in after.values() if v.is_floating_point())
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_policy_record_and_bad_input():
    policy = policy_for(torch.bfloat16, "cuda", gradient=True)
    assert policy.to_record() == {"weight_dtype": "bfloat16", "compute_dtype": "bfloat16",
                                  "master_dtype": "float32",
                                  "optimizer_state_dtype": "float32", "master_weights": True,
                                  "autocast": False, "tf32": False, "device_type": "cuda"}
    assert policy_for(torch.bfloat16, "cuda", gradient=False).master_dtype is None
    with pytest.raises(ValueError, match="tf32 applies to CUDA only"):
        PrecisionPolicy(torch.float32, torch.float32, None, None, tf32=True, device_type="cpu")
    with pytest.raises(ValueError, match="weight_dtype: torch.int8 is not a floating dtype"):
        PrecisionPolicy(torch.int8, torch.float32, None, None, tf32=False, device_type="cpu")


def job(root: Path, tofu: Path, method: str, config: dict, name: str) -> MethodJob:
    return MethodJob.from_dict(method_payload(
        str(root / "model"), str(tofu), str(root / f"{name}.json"), method,
        method_config=config,
        evaluation={"gen_steps": 4, "model_utility": False, "forget_quality": False,
                    "rouge": False}))


@pytest.mark.parametrize("method,config,master", [
    ("gradient_ascent", {"lr": 1e-3, "max_steps": 2, "eval_every": 2, "warmup_steps": 0,
                         "progress": False, "generation_prompts": 0}, "float32"),
    ("timerome", {}, None),
])
def test_every_record_carries_its_precision(tiny, method, config, master):
    root, tofu = tiny
    record = run_method.run(job(root, tofu, method, config, f"precision_{method}"))
    assert record["status"] == "ok"
    assert record["precision"] == {
        "weight_dtype": "float32", "compute_dtype": "float32", "master_dtype": master,
        "optimizer_state_dtype": master, "master_weights": False, "autocast": False,
        "tf32": False, "device_type": "cpu"}


def test_gradient_warm_up_leaves_the_records_scores_identical(tiny, monkeypatch):
    """The warm-up (one lr-0 training step before the edit timer) changes no number of the
    record: forget / retain scores, steps and trajectory with and without it."""
    root, tofu = tiny
    config = {"lr": 1e-3, "max_steps": 3, "eval_every": 1, "warmup_steps": 0,
              "progress": False, "generation_prompts": 0}
    warmed = run_method.run(job(root, tofu, "gradient_ascent", config, "warmed"))
    assert "warm_up" in warmed["phase_seconds"]
    monkeypatch.setattr("baselines.gradient_ascent.GradientAscent.warm_up",
                        lambda self, request: None)
    cold = run_method.run(job(root, tofu, "gradient_ascent", config, "cold"))
    keys = ("forget_logp_before", "forget_logp_after", "retain_logp_before",
            "retain_logp_after", "steps")
    assert {k: warmed[k] for k in keys} == {k: cold[k] for k in keys}
    assert warmed["forget_logp_after"] < warmed["forget_logp_before"]  # it did train
    assert warmed["details"]["trajectory"] == cold["details"]["trajectory"]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_warm_up_step_restores_weights_rng_and_mode_bitwise(tiny, dtype):
    root, tofu = tiny
    backbone = tiny_backbone(root)
    backbone.model.to(dtype).eval()
    # a draw from the global generator in every forward, as dropout makes in train mode
    backbone.model.register_forward_hook(lambda module, args, out: torch.rand(1) and None)
    before = {k: v.clone() for k, v in backbone.model.state_dict().items()}
    rng = torch.get_rng_state()
    request = EditRequest(backbone=backbone, forget=load_split(tofu, "forget05"), retain=[])
    training.warm_up_training(request, TrainingConfig(lr=1e-3, weight_decay=0.5))
    after = backbone.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert torch.equal(torch.get_rng_state(), rng)
    assert not backbone.model.training
    assert all(p.grad is None for p in backbone.model.parameters())
