"""Per-backbone statistics computed once (harness.backbone_statistics): an edit that loads
them is the edit that computes them itself, and a file of another backbone, retain set,
seed or config is refused by name."""

from __future__ import annotations

import pytest
import torch

from harness.backbone_statistics import BackboneStatistics, Provenance, StaleStatistics
from harness.methods import EditRequest, get_method
from harness.methods.registry import BUILTIN_METHOD_INFO

STATISTICS_METHODS = [n for n, info in BUILTIN_METHOD_INFO.items() if info.backbone_statistics]
# Small configs: the tests compare two runs of the same edit, not the edit's quality.
CONFIGS = {"timerome": {"alpha": 2.0, "noise_samples": 2, "times": [1.0, 0.5]},
           "rome": {"v_steps": 3, "cov_facts": 16},
           "memit": {"v_steps": 3, "cov_facts": 16}}


def test_the_registry_names_the_methods_with_statistics():
    assert set(STATISTICS_METHODS) == {"timerome", "rome", "memit"}


def _facts(tiny_corpus):
    return tiny_corpus["forget10"][:2], tiny_corpus["retain90"][:24]


def _edited_logits(backbone, forget) -> torch.Tensor:
    """The model's logits on each forget question with its answer masked."""
    rows = []
    with torch.inference_mode():
        for fact in forget:
            prompt = backbone.format_prompt(fact.question)
            ids = backbone.tokenize_prompt(prompt)[0] + [backbone.mask_token_id] * 6
            rows.append(backbone.logits(torch.tensor([ids])).flatten())
    return torch.cat(rows)


@pytest.mark.parametrize("name", STATISTICS_METHODS)
def test_an_edit_from_stored_statistics_equals_the_edit_that_computes_them(
        name, make_finetuned_backbone, tiny_corpus, tmp_path):
    forget, retain = _facts(tiny_corpus)
    config = CONFIGS[name]
    computed = make_finetuned_backbone()
    out = get_method(name, config).apply(EditRequest(computed, forget, retain, seed=3))
    expected = _edited_logits(out.backbone, forget)

    stored_backbone = make_finetuned_backbone()
    tensors = get_method(name, config).backbone_statistics(stored_backbone, retain, 3)
    assert tensors and all(torch.isfinite(v).all() for v in tensors.values())
    provenance = Provenance.of(name, "fp", retain, 3, config)
    BackboneStatistics(tensors, provenance, 0.5).save(tmp_path / "stats.safetensors")
    loaded = BackboneStatistics.load(tmp_path / "stats.safetensors", provenance)
    assert loaded.seconds == 0.5 and set(loaded.tensors) == set(tensors)
    out = get_method(name, config).apply(EditRequest(stored_backbone, forget, retain, seed=3,
                                                     statistics=loaded.tensors))
    assert torch.equal(_edited_logits(out.backbone, forget), expected)
    assert not torch.equal(expected, _edited_logits(make_finetuned_backbone(), forget))


def test_timerome_uses_the_stored_statistics_rather_than_recomputing(make_finetuned_backbone,
                                                                    tiny_corpus):
    """Stored statistics are what the edit uses: scaled ones change the edit."""
    forget, retain = _facts(tiny_corpus)
    config = {**CONFIGS["timerome"], "gate": False}
    backbone = make_finetuned_backbone()
    tensors = get_method("timerome", config).backbone_statistics(backbone, retain, 0)
    assert any(k.startswith("inverse_covariance.") for k in tensors)
    plain = get_method("timerome", config).apply(
        EditRequest(backbone, forget, retain, statistics=tensors))
    expected = _edited_logits(plain.backbone, forget)
    plain.undo()
    scaled = {k: (v * 50 if k.startswith("inverse_covariance.") else v)
              for k, v in tensors.items()}
    out = get_method("timerome", config).apply(
        EditRequest(backbone, forget, retain, statistics=scaled))
    assert not torch.allclose(_edited_logits(out.backbone, forget), expected)


def test_a_file_of_another_retain_set_or_seed_is_refused_by_name(tiny_corpus, tmp_path):
    _, retain = _facts(tiny_corpus)
    path = tmp_path / "s.safetensors"
    provenance = Provenance.of("rome", "fp", retain, 0, {"cov_facts": 16})
    BackboneStatistics({"x": torch.zeros(2)}, provenance, 1.0).save(path)
    with pytest.raises(StaleStatistics, match="retain_digest"):
        BackboneStatistics.load(path, Provenance.of("rome", "fp", retain[1:], 0,
                                                    {"cov_facts": 16}))
    with pytest.raises(StaleStatistics, match="seed=0.*has 1"):
        BackboneStatistics.load(path, Provenance.of("rome", "fp", retain, 1, {"cov_facts": 16}))
    with pytest.raises(StaleStatistics, match="config_digest"):
        BackboneStatistics.load(path, Provenance.of("rome", "fp", retain, 0, {"cov_facts": 8}))
    assert BackboneStatistics.load(path, provenance).seconds == 1.0


def test_a_file_without_provenance_is_not_taken_for_statistics(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "weights.safetensors"
    save_file({"w": torch.zeros(2)}, str(path))
    with pytest.raises(StaleStatistics, match="not a statistics file"):
        BackboneStatistics.load(path)
