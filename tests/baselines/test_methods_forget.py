"""Every baseline lowers the forget log-probability of a fine-tuned tiny model."""

import pytest

from harness.methods import EditRequest, get_method, method_names

FAST = {
    "gradient_ascent": {"lr": 3e-4, "max_steps": 6, "eval_every": 3},
    "graddiff": {"lr": 3e-4, "max_steps": 6, "eval_every": 3},
    "npo": {"lr": 1e-3, "max_steps": 6, "eval_every": 3},
    "rome": {"v_steps": 8, "n_prefixes": 2, "mask_ratios": [1.0, 0.5]},
    "memit": {"v_steps": 8, "n_prefixes": 2, "mask_ratios": [1.0, 0.5]},
}
TRAINING = ("gradient_ascent", "graddiff", "npo")


def test_all_baselines_are_registered():
    assert set(FAST) <= set(method_names())


@pytest.mark.parametrize("name", sorted(FAST))
def test_method_lowers_forget_logprob(name, tiny_backbone, tiny_facts):
    forget, retain = tiny_facts
    config = dict(FAST[name])
    if name in TRAINING:
        config.update(progress=False, generation_prompts=1)
    out = get_method(name, config).apply(EditRequest(tiny_backbone, forget, retain, seed=0))
    d = out.details
    assert d["forget_logp_after"] < d["forget_logp_before"] - 0.5, d
    assert d["forget_drop"] == pytest.approx(d["forget_logp_before"] - d["forget_logp_after"])
    assert d["estimator"] == "full_mask" and out.wall_clock_s > 0
    if name in TRAINING:
        assert out.steps and out.steps <= 6 and "train" in out.phase_seconds
        assert [e["step"] for e in d["trajectory"]][0] == 0
