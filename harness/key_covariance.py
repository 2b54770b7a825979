"""The one retain-key covariance estimator: the uncentred second moment C = E[k k^T] of the
keys (inputs of `Backbone.mlp_out_proj(l)`), accumulated in float64.

Both key-space editors use it (TimeROME is MEMIT-equivalent, `harness.timerome.solve`):
- TimeROME's `retain_cov` preconditioner (`harness.timerome.retain_stats.inverse_covariance`):
  keys at every prompt and answer position of the retain facts on the full_mask input,
  evenly thinned to `max_rows`, kept as float32 rows, added in one call; the caller then
  normalises C to mean eigenvalue 1, shrinks it toward I and inverts it.
- ROME/MEMIT's whitening (`baselines.covariance.key_second_moments`): keys at every
  non-padding position up to the first EOS of a seeded retain subset, with the answer and
  EOS masked at a random level, added batch by batch; the caller adds its ridge.
Which keys each caller feeds in, and in how many `add` calls, is theirs: the sums are
float64, so the split into calls is part of the result's last bits.
"""

from __future__ import annotations

import torch


class KeySecondMoment:
    """Running sum of k k^T over key rows, in float64 on CPU; `value()` is the mean."""

    def __init__(self) -> None:
        self.total: torch.Tensor | None = None
        self.count = 0

    def add(self, keys: torch.Tensor) -> None:
        """Add the rows of `keys` [N, d_k] (any dtype or device; the product is float64)."""
        h = keys.to(torch.float64)
        outer = (h.T @ h).cpu()
        self.total = outer if self.total is None else self.total + outer
        self.count += int(h.shape[0])

    def value(self) -> torch.Tensor:
        """C = sum k k^T / N, [d_k, d_k] float64 on CPU (zeros when no rows were added)."""
        if self.total is None:
            raise ValueError("key second moment: no keys were added")
        return self.total / max(1, self.count)
