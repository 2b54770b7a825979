"""TOFU evaluation metrics: ROUGE-L recall, truth ratio, forget quality, model utility."""

from harness.evaluation.forget_quality import forget_quality
from harness.evaluation.model_utility import (
    ModelUtility,
    UtilityComponents,
    forget_truth_ratio_stat,
    harmonic_utility,
    model_utility,
    retain_truth_ratio_stat,
    split_components,
)
from harness.evaluation.rouge import rouge_l_recall
from harness.evaluation.truth_ratio import TruthRatios, truth_ratio_from_logprobs, truth_ratios

__all__ = ["ModelUtility", "TruthRatios", "UtilityComponents", "forget_quality",
           "forget_truth_ratio_stat", "harmonic_utility", "model_utility",
           "retain_truth_ratio_stat", "rouge_l_recall", "split_components",
           "truth_ratio_from_logprobs", "truth_ratios"]
