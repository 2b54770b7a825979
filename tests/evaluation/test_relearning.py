"""Relearning probe (harness.evaluation.relearning): a few fine-tuning steps bring forgotten
facts back, and the probe leaves the model bitwise as it found it."""

from __future__ import annotations

import pytest
import torch

import harness.evaluation.relearning as relearning
from harness.evaluation.answer_logprob import score_facts
from harness.evaluation.relearning import (
    RELEARN_SETS,
    RelearnConfig,
    relearning_probe,
)
from harness.methods.base import EditRequest
from harness.methods.registry import get_method

GA = {"max_steps": 20, "lr": 1e-3, "progress": False, "generation_prompts": 0}


def _state(backbone) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in backbone.model.state_dict().items()}


def _assert_bitwise_equal(backbone, saved: dict[str, torch.Tensor]) -> None:
    now = backbone.model.state_dict()
    assert set(now) == set(saved)
    changed = [k for k in saved if not torch.equal(now[k], saved[k])]
    assert not changed, changed[:5]


def _unlearned(make_finetuned_backbone, tiny_corpus, method: str, config: dict):
    backbone = make_finetuned_backbone()
    forget, retain = tiny_corpus["forget10"], tiny_corpus["retain90"]
    before = score_facts(backbone, forget).mean
    outcome = get_method(method, config).apply(EditRequest(backbone, forget, retain, seed=0))
    return outcome.backbone, forget, retain, before


def test_relearning_a_forget_fact_brings_the_others_back(make_finetuned_backbone, tiny_corpus):
    """Gradient ascent removes ~60 nats per fact; 10 steps on one of the five forget facts
    (the default fraction 0.2 and rate 1e-3) bring back part of the other four's log-prob
    (38.2 nats measured) and most of the relearned fact's."""
    backbone, forget, retain, finetuned = _unlearned(make_finetuned_backbone, tiny_corpus,
                                                     "gradient_ascent", GA)
    unlearned = score_facts(backbone, forget).logp
    assert finetuned - float(unlearned.mean()) > 20.0
    saved = _state(backbone)
    result = relearning_probe(backbone, forget, retain, RelearnConfig(), seed=0)
    assert (result.source, result.n_relearn, result.n_scored, result.steps) == ("forget", 1, 4, 10)
    assert result.lr == 1e-3  # relearning.yaml: lr_trained_here
    assert result.relearn_logp_after - result.relearn_logp_before > 10.0, result
    assert result.recovered > 5.0, result
    assert result.forget_logp_after < finetuned  # not all of it
    columns = result.columns()
    assert columns["recovered"] == pytest.approx(result.recovered)
    assert all(isinstance(v, float) for v in columns.values())
    # The probe restored the weights: bitwise, and so every score.
    _assert_bitwise_equal(backbone, saved)
    assert torch.equal(score_facts(backbone, forget).logp, unlearned)
    # No step, nothing recovered (the control of the numbers above).
    still = relearning_probe(backbone, forget, retain, RelearnConfig(steps=0), seed=0)
    assert still.recovered == 0.0 and still.final_loss is None


def test_an_inference_time_edit_is_relearned_through_its_hook_and_restored(
        make_finetuned_backbone, tiny_corpus):
    """TimeROME-DLM's hook stays attached while the weights are fine-tuned; afterwards the
    weights, flags and mode are restored and the edited model scores exactly as before
    (its fused weight is rebuilt from the restored weight, not left stale)."""
    backbone, forget, retain, finetuned = _unlearned(make_finetuned_backbone, tiny_corpus,
                                                     "timerome", {})
    edited = score_facts(backbone, forget).logp
    assert finetuned - float(edited.mean()) > 1.0  # the edit is in force
    saved = _state(backbone)
    flags = [p.requires_grad for p in backbone.model.parameters()]
    training = backbone.model.training
    result = relearning_probe(backbone, forget, retain,
                              RelearnConfig(source="retain_same_author", n_facts=2), seed=3)
    assert result.n_relearn == 2 and result.n_scored == len(forget)
    assert result.forget_logp_before == pytest.approx(float(edited.mean()), abs=1e-4)
    assert result.forget_logp_after != result.forget_logp_before  # the weights did move
    _assert_bitwise_equal(backbone, saved)
    assert [p.requires_grad for p in backbone.model.parameters()] == flags
    assert backbone.model.training == training
    assert all(p.grad is None for p in backbone.model.parameters())
    assert torch.equal(score_facts(backbone, forget).logp, edited)


def test_weights_are_restored_when_relearning_fails(make_finetuned_backbone, tiny_corpus,
                                                    monkeypatch):
    backbone = make_finetuned_backbone()
    saved = _state(backbone)
    calls = {"n": 0}
    real_loss = relearning.sft_loss

    def diverging(*args, **kwargs):
        calls["n"] += 1
        loss = real_loss(*args, **kwargs)
        return loss * float("nan") if calls["n"] == 3 else loss

    monkeypatch.setattr(relearning, "sft_loss", diverging)
    with pytest.raises(FloatingPointError, match="step 3"):
        relearning_probe(backbone, tiny_corpus["forget10"], tiny_corpus["retain90"],
                         RelearnConfig(lr=1e-2), seed=0)
    assert calls["n"] == 3  # two steps did change the weights before the failure
    _assert_bitwise_equal(backbone, saved)


def test_the_probe_is_deterministic_for_a_seed(make_finetuned_backbone, tiny_corpus):
    backbone = make_finetuned_backbone()
    forget, retain = tiny_corpus["forget10"], tiny_corpus["retain90"]
    config = RelearnConfig(source="retain", n_facts=3, steps=4)
    first = relearning_probe(backbone, forget, retain, config, seed=5)
    again = relearning_probe(backbone, forget, retain, config, seed=5)
    other = relearning_probe(backbone, forget, retain, config, seed=6)
    assert first == again
    assert other != first


def test_relearn_sets(tiny_corpus):
    forget, retain = tiny_corpus["forget10"], tiny_corpus["retain90"]
    relearn, scored = RELEARN_SETS["forget"](forget, retain, 2, 0)
    assert len(relearn) == 2 and len(scored) == 3
    assert {f.key for f in relearn} | {f.key for f in scored} == {f.key for f in forget}
    assert not {f.key for f in relearn} & {f.key for f in scored}
    assert RELEARN_SETS["forget"](forget, retain, 2, 0) == (relearn, scored)  # seeded
    related, scored = RELEARN_SETS["retain_same_author"](forget, retain, 50, 0)
    authors = {f.author_id for f in forget}
    assert related and all(f.author_id in authors for f in related)
    assert scored == list(forget)
    sample, _ = RELEARN_SETS["retain"](forget, retain, 4, 1)
    assert len(sample) == 4 and all(f in retain for f in sample)
    with pytest.raises(ValueError, match="no forget fact to score"):
        RELEARN_SETS["forget"](forget, retain, len(forget), 0)
    unrelated = [f for f in retain if f.author_id not in authors]
    with pytest.raises(ValueError, match="shares an author"):
        RELEARN_SETS["retain_same_author"](forget, unrelated, 2, 0)


def test_config_defaults_and_errors():
    config = RelearnConfig()
    assert config.source == "forget" and config.steps == 10 and config.lr is None
    assert config.n_relearn(10) == 2 and config.n_relearn(3) == 1
    assert RelearnConfig(n_facts=4).n_relearn(10) == 4
    with pytest.raises(ValueError, match="unknown key.*stepz"):
        RelearnConfig.from_mapping({"stepz": 3})
    with pytest.raises(ValueError, match="source must be one of"):
        RelearnConfig(source="forget_all")
    with pytest.raises(ValueError, match="fraction must be in"):
        RelearnConfig(fraction=0.0)
    with pytest.raises(ValueError, match="lr must be"):
        RelearnConfig(lr=float("nan"))


def test_the_relearning_probe_returns_checked_columns_and_restores(make_finetuned_backbone,
                                                                  tiny_corpus):
    from harness.evaluation.probes import ProbeContext, run_probe

    backbone = make_finetuned_backbone()
    saved = _state(backbone)
    forget = tuple(tiny_corpus["forget10"])
    ctx = ProbeContext(backbone=backbone, method="no_edit", method_kind="reference",
                       forget=forget, retain=tuple(tiny_corpus["retain90"][:10]),
                       retain_train=tuple(tiny_corpus["retain90"][5:20]), holdout=(),
                       estimator="full_mask", batch_size=8, seed=0,
                       options={"steps": 3, "source": "retain", "n_facts": 30})
    columns = run_probe("relearning", ctx)
    assert columns["n_relearn"] == 20.0  # retain_train + the retain facts not in it
    assert columns["n_scored"] == float(len(forget)) and columns["steps"] == 3.0
    assert columns["recovered"] == pytest.approx(columns["forget_logp_after"]
                                                 - columns["forget_logp_before"])
    _assert_bitwise_equal(backbone, saved)


def test_bad_relearning_options_are_probe_errors():
    from harness.evaluation.probes import ProbeError, validate_probe_options

    validate_probe_options("relearning", {"steps": 3, "source": "retain"})
    for options, message in (({"step": 3}, "unknown key\\(s\\) step"),
                             ({"steps": -1}, "steps must be an integer >= 0"),
                             ({"n_facts": 0}, "n_facts must be null or an integer >= 1")):
        with pytest.raises(ProbeError, match=f"robustness.options.relearning: {message}"):
            validate_probe_options("relearning", options)
