"""TOFU metrics: ROUGE-L recall, truth ratio, KS forget quality, model utility."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from harness.evaluation.forget_quality import forget_quality
from harness.evaluation.model_utility import (
    UtilityComponents,
    forget_truth_ratio_stat,
    harmonic_utility,
    model_utility,
    retain_truth_ratio_stat,
)
from harness.evaluation.rouge import rouge_l_recall
from harness.evaluation.truth_ratio import truth_ratio_from_logprobs, truth_ratios


def test_rouge_l_recall_on_known_strings():
    scores = rouge_l_recall(
        ["the cat sat on the mat", "a dog", "completely unrelated words", "the cat"],
        ["the cat sat on the mat", "the cat sat on the mat", "the cat sat", "the cat sat"])
    assert scores[0] == pytest.approx(1.0)
    assert scores[1] == pytest.approx(0.0)
    assert scores[2] == pytest.approx(0.0)
    assert scores[3] == pytest.approx(2 / 3)


def test_rouge_l_recall_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="2 predictions but 1 references"):
        rouge_l_recall(["a", "b"], ["a"])


def test_forget_quality_is_high_for_identical_and_small_for_shifted_samples():
    rng = np.random.default_rng(0)
    sample = rng.normal(size=200)
    assert forget_quality(sample, sample) == pytest.approx(1.0)
    assert forget_quality(sample, rng.normal(size=200)) > 0.05
    assert forget_quality(sample, sample + 2.0) < 1e-10
    with pytest.raises(ValueError, match="empty unlearned"):
        forget_quality([], sample)
    with pytest.raises(ValueError, match="non-finite retain-model"):
        forget_quality(sample, [float("nan")])


def test_truth_ratio_is_geometric_mean_of_perturbed_over_paraphrased():
    para = torch.tensor([-1.0, -2.0])
    pert = torch.tensor([[-3.0, -5.0], [-2.0, -2.0]])
    ratio = truth_ratio_from_logprobs(para, pert)
    assert ratio.tolist() == pytest.approx([math.exp(-3.0), 1.0])
    assert retain_truth_ratio_stat(ratio) == pytest.approx((1 - math.exp(-3.0)) / 2)
    assert forget_truth_ratio_stat(ratio) == pytest.approx((math.exp(-3.0) + 1.0) / 2)
    with pytest.raises(ValueError, match=r"must be \[n, k\]"):
        truth_ratio_from_logprobs(para, pert[:1])


def test_harmonic_utility_is_zero_when_any_component_is_zero():
    good = UtilityComponents(0.5, 0.5, 0.5)
    assert harmonic_utility({"a": good, "b": good}) == pytest.approx(0.5)
    assert harmonic_utility({"a": good, "b": UtilityComponents(0.5, 0.0, 0.5)}) == 0.0


def test_finetuned_model_prefers_true_answers(finetuned_backbone, random_backbone, tiny_corpus):
    # Compare the trained answer (not the untrained paraphrase) with the perturbed ones.
    forget = [replace(f, paraphrased_answer=None) for f in tiny_corpus["forget10_perturbed"]]
    trained = truth_ratios(finetuned_backbone, forget).ratio
    untrained = truth_ratios(random_backbone, forget).ratio
    assert float(trained.mean()) < 0.5 < float(untrained.mean())
    with pytest.raises(ValueError, match="without perturbed answers"):
        truth_ratios(finetuned_backbone, tiny_corpus["full"][:2])


def test_model_utility_is_higher_after_finetuning(finetuned_backbone, random_backbone,
                                                  tiny_corpus):
    sets = (tiny_corpus["retain_perturbed"][:8], tiny_corpus["real_authors_perturbed"][:4],
            tiny_corpus["world_facts_perturbed"][:4])
    trained = model_utility(finetuned_backbone, *sets)
    untrained = model_utility(random_backbone, *sets)
    retain = trained.components["retain"]
    assert retain.rouge_l > 0.5 and retain.probability > 0.3
    # A memorising model prefers the true fact in the paraphrase wording (R_truth < 1).
    assert 0.3 < retain.truth_ratio <= 1.0
    assert untrained.components["retain"].rouge_l < 0.3
    assert untrained.components["retain"].probability < 0.05
    assert trained.to_dict()["estimator"] == "full_mask"
    assert 0.0 <= untrained.value < 0.2
