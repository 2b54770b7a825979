"""Forget quality (KS test of truth ratios vs the retain model) and model utility (TOFU)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from harness.backbones.base import Backbone
from harness.data import load_split
from harness.data.splits import perturbed_split_for
from harness.evaluation.finite import finite_or_none
from harness.evaluation.forget_quality import forget_quality
from harness.evaluation.model_utility import model_utility
from harness.evaluation.truth_ratio import truth_ratios
from harness.evaluation.retain_sample import seeded_subset

UTILITY_SPLITS = ("retain_perturbed", "real_authors_perturbed", "world_facts_perturbed")


@dataclass
class QualityInputs:
    tofu_dir: str
    forget_split: str
    estimator: str
    utility_size: int  # facts per utility set (seeded sample)
    gen_steps: int | None
    batch_size: int
    seed: int


def forget_quality_of(edited: Backbone, retain_model: Backbone, inputs: QualityInputs) -> float:
    facts = load_split(inputs.tofu_dir, perturbed_split_for(inputs.forget_split))
    kw = {"batch_size": inputs.batch_size}
    unlearned = truth_ratios(edited, facts, inputs.estimator, **kw).ratio.numpy()
    reference = truth_ratios(retain_model, facts, inputs.estimator, **kw).ratio.numpy()
    return forget_quality(unlearned, reference)


def utility_of(edited: Backbone, inputs: QualityInputs) -> tuple[float, dict[str, Any]]:
    sets = [seeded_subset(load_split(inputs.tofu_dir, s), inputs.utility_size, inputs.seed,
                          may_be_short=True)
            for s in UTILITY_SPLITS]
    generation = {"steps": inputs.gen_steps, "batch_size": inputs.batch_size}
    mu = model_utility(edited, *sets, estimator=inputs.estimator, generation=generation,
                       batch_size=inputs.batch_size)
    return mu.value, mu.to_dict()


def forget_quality_and_utility(edited: Backbone, load_retain: Callable[[], Backbone] | None,
                               inputs: QualityInputs, want_fq: bool, want_mu: bool
                               ) -> tuple[float | None, float | None, dict[str, Any]]:
    """(forget quality or None without a retain model, model utility, details)."""
    notes: dict[str, Any] = {}
    fq = mu = None
    if want_fq and load_retain is not None:
        fq = finite_or_none(forget_quality_of(edited, load_retain(), inputs))
    if want_mu:
        value, notes["model_utility"] = utility_of(edited, inputs)
        mu = finite_or_none(value)
    return fq, mu, notes
