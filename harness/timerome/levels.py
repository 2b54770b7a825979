"""Denoising levels for tracing: deterministic reveal orders and the TIE time weights.

At level t a fraction t of each answer's tokens stays masked (at least one), the rest are
revealed in a fixed, seeded order. Orders are nested: the tokens masked at t' < t are a
subset of those masked at t, as along one generation trajectory.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

from harness.diffusion.batching import QABatch
from harness.diffusion.seeding import fact_generator


def reveal_orders(batch: QABatch, seed: int) -> list[torch.Tensor]:
    """Per row: the answer positions (absolute) in the order they get revealed."""
    orders = []
    for r, enc in enumerate(batch.encoded):
        start = int(batch.prompt_lengths[r])
        n = int(batch.answer_lengths[r])
        gen = fact_generator(seed, enc.fact.key)
        orders.append(start + torch.randperm(n, generator=gen))
    return orders


def n_masked(t: float, n_answer: int) -> int:
    """Answer tokens still masked at level t (at least one)."""
    return max(1, min(n_answer, math.ceil(t * n_answer - 1e-9)))


def mask_at_level(batch: QABatch, orders: Sequence[torch.Tensor], t: float,
                  mask_token_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(input ids at level t, bool mask of the still-masked answer positions)."""
    still = torch.zeros_like(batch.answer_mask)
    for r, order in enumerate(orders):
        m = n_masked(t, len(order))
        still[r, order[len(order) - m:]] = True  # the last-revealed tokens are still masked
    return batch.input_ids.masked_fill(still, mask_token_id), still


def time_weights(times: Sequence[float]) -> torch.Tensor:
    """w(t) proportional to 1 - t + 1/|T|, normalised to sum 1 (later steps weigh more)."""
    if not times:
        raise ValueError("the time grid T is empty")
    if any(not 0.0 < t <= 1.0 for t in times):
        raise ValueError(f"time grid values must lie in (0, 1], got {list(times)}")
    raw = torch.tensor([1.0 - t + 1.0 / len(times) for t in times], dtype=torch.float64)
    return raw / raw.sum()
