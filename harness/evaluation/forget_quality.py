"""TOFU's forget quality: how indistinguishable the unlearned model is from the retain model.

The p-value of the two-sample Kolmogorov-Smirnov test between the forget-set truth ratios
of the unlearned model and those of the retain model (trained without the forget set).
High (near 1) = the distributions match; small (e.g. < 0.05) = the unlearned model is
still distinguishable. KS is invariant to monotone transforms, so R_truth and 1/R_truth
give the same p-value.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy.stats import ks_2samp


def forget_quality(truth_ratios_unlearned: Sequence[float] | np.ndarray,
                   truth_ratios_retain_model: Sequence[float] | np.ndarray) -> float:
    """KS two-sample p-value between the two truth-ratio samples."""
    a = np.asarray(truth_ratios_unlearned, dtype=float).ravel()
    b = np.asarray(truth_ratios_retain_model, dtype=float).ravel()
    for name, x in (("unlearned", a), ("retain-model", b)):
        if x.size == 0:
            raise ValueError(f"forget_quality: empty {name} truth-ratio sample")
        if not np.isfinite(x).all():
            raise ValueError(f"forget_quality: non-finite {name} truth ratio")
    return float(ks_2samp(a, b).pvalue)
