"""The reference rows as registered pseudo-methods (harness/methods/reference.py): `no_edit`
returns the backbone unchanged, `retain_model` returns the backbone's retain model, and the
registry keeps a reference out of tuning, sequential insertion and the gradient baselines."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from harness.backbones.base import BackboneSpec
from harness.backbones.registry import adapter_class, load_backbone
from harness.methods import EditRequest, get_method
from harness.methods.base import MethodConfigError
from harness.methods.reference import LOAD_PHASE
from harness.methods.registry import (MethodInfo, method_info, methods_of_kind,
                                      reference_methods, sequential_methods, tuned_methods,
                                      validate_method_config)

TINY = {"adapter": "llada-twin", "options": {"size": "tiny", "vocab_size": 384}}
TEXTS = ["Who wrote the book? Ana Lopez wrote the book.",
         "Where was Ana Lopez born? Ana Lopez was born in Lima."] * 4


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """(fine-tuned stand-in, retain stand-in): two random tiny twins with the same tokenizer
    (trained on the same texts), saved as checkpoints."""
    root = tmp_path_factory.mktemp("reference")
    spec = BackboneSpec(name="tiny", **TINY)
    paths = []
    for seed, name in ((0, "finetuned"), (1, "retain")):
        backbone = adapter_class("llada-twin").initial(spec, TEXTS, seed=seed)
        backbone.save_pretrained(str(root / name))
        paths.append(str(root / name))
    return spec, paths


def logits(backbone) -> torch.Tensor:
    ids = torch.arange(3, 19).reshape(1, 16) % 300
    with torch.no_grad():
        return backbone.logits(ids)


def test_registry_places_references_apart():
    assert reference_methods() == methods_of_kind("reference") == ["no_edit", "retain_model"]
    for name in reference_methods():
        assert name not in tuned_methods() and name not in sequential_methods()
        assert name not in methods_of_kind("gradient")
        info = method_info(name)
        assert not info.tunable_keys and not info.backbone_statistics and not info.needs_retain
    assert method_info("no_edit").row_label == "finetuned (no edit)"
    assert method_info("retain_model").row_label == "retain (exact unlearning)"
    assert method_info("retain_model").on_retain_model
    assert not method_info("no_edit").on_retain_model
    assert method_info("timerome").row_label == "timerome"  # methods: their name
    with pytest.raises(ValueError, match="a reference edits nothing, so it has no "
                                         "tunable_keys, sequential"):
        MethodInfo("x", "reference", tunable_keys=("alpha",), sequential=True)
    with pytest.raises(ValueError, match="only a reference is scored on the retain model"):
        MethodInfo("x", "gradient", on_retain_model=True)


def test_reference_configs_are_checked_without_torch_by_the_registry():
    validate_method_config("no_edit", {})
    validate_method_config("retain_model", {"checkpoint": "models/x/retain"})
    validate_method_config("retain_model", {})  # null default: refused when applied
    with pytest.raises(MethodConfigError, match="no_edit: unknown config key\\(s\\) alpha; "
                                                "known: none") as err:
        validate_method_config("no_edit", {"alpha": 1.0})
    assert err.value.key == "alpha"
    with pytest.raises(MethodConfigError, match="checkpoint must be the retain model's folder"):
        validate_method_config("retain_model", {"checkpoint": ""})


def test_no_edit_returns_the_backbone_unchanged(models):
    spec, (finetuned, _) = models
    backbone = load_backbone(replace(spec, path=finetuned))
    before = logits(backbone)
    weights = {k: v.clone() for k, v in backbone.model.state_dict().items()}
    outcome = get_method("no_edit").apply(EditRequest(backbone, forget=[], retain=[]))
    assert outcome.backbone is backbone
    assert torch.equal(logits(outcome.backbone), before)
    assert all(torch.equal(v, weights[k]) for k, v in backbone.model.state_dict().items())
    assert outcome.wall_clock_s == 0.0 and outcome.steps is None
    assert outcome.details == {"scored_model": "finetuned"}


def test_retain_model_returns_the_retain_checkpoint(models):
    spec, (finetuned, retain) = models
    backbone = load_backbone(replace(spec, path=finetuned))
    expected = logits(load_backbone(replace(spec, path=retain)))
    outcome = get_method("retain_model", {"checkpoint": retain}).apply(
        EditRequest(backbone, forget=[], retain=[]))
    assert outcome.backbone is not backbone
    assert torch.equal(logits(outcome.backbone), expected)
    assert not torch.allclose(logits(backbone), expected)  # a different model
    # loading is the harness's work, not an edit: the edit time leaves it out
    assert outcome.excluded_phases == (LOAD_PHASE,) and outcome.wall_clock_s == 0.0
    assert outcome.details == {"scored_model": "retain", "checkpoint": retain}
    with pytest.raises(MethodConfigError, match="retain_model: no checkpoint"):
        get_method("retain_model").apply(EditRequest(backbone, forget=[], retain=[]))
