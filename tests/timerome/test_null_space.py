"""The null-space key metric (precondition: null_space, AlphaEdit): an edit solved on the
projected keys writes nothing at the retain keys, still reaches its targets, and agrees
with AlphaEdit's primal form."""

from __future__ import annotations

import pytest
import torch

from harness.timerome.config import PRECONDITIONS, TimeROMEConfig
from harness.timerome.memory import EditMemory
from harness.timerome.retain_stats import KEY_METRICS, null_space_projector, null_space_rank
from harness.timerome.solve import empty_factors, insert_columns, solve_full

D_K, D_V, RANK = 24, 9, 16  # retain keys span a 16-dim subspace of the 24-dim key space


def _retain_keys(n: int = 400, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    basis = torch.linalg.qr(torch.randn(D_K, RANK, generator=gen, dtype=torch.float64))[0]
    return torch.randn(n, RANK, generator=gen, dtype=torch.float64) @ basis.T  # [n, d_k]


def _facts(n: int = 6, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(D_K, n, generator=gen, dtype=torch.float64),
            torch.randn(D_V, n, generator=gen, dtype=torch.float64))


def test_every_precondition_has_a_metric_builder():
    assert set(PRECONDITIONS) == {"none", *KEY_METRICS}


def test_projector_keeps_exactly_the_retain_null_space():
    retain = _retain_keys()
    p = null_space_projector(retain.float(), threshold=1e-2)
    assert null_space_rank(p) == D_K - RANK
    assert torch.allclose(p @ p, p, atol=1e-10) and torch.allclose(p, p.T, atol=1e-12)
    assert (p @ retain.T).abs().max() < 1e-4 * retain.abs().max()


def test_edit_on_projected_keys_leaves_retain_keys_unchanged():
    retain = _retain_keys()
    p = null_space_projector(retain, threshold=1e-2)
    keys, deltas = _facts()
    f = solve_full(keys, deltas, lam=1e-3, metric=p)
    w = f.a @ f.b.T  # [d_v, d_k]
    # The retain keys' outputs are unchanged to numerical precision ...
    assert (w @ retain.T).abs().max() < 1e-9 * (w @ keys).abs().max()
    # ... while the facts' targets are still met (lambda small against |P k|^2).
    assert torch.allclose(w @ keys, deltas, atol=1e-3)
    # The plain ridge edit (no metric) does write at the retain keys: the test has teeth.
    plain = solve_full(keys, deltas, lam=1e-3)
    assert (plain.a @ plain.b.T @ retain.T).abs().max() > 1e-2


def test_equals_alphaedit_primal_form():
    """W = D K^T P (P K K^T P + lambda I)^-1, AlphaEdit's update restricted to the new keys
    (Fang et al. 2025, eq. for Delta P without the previously-edited term)."""
    p = null_space_projector(_retain_keys(), threshold=1e-2)
    keys, deltas = _facts()
    lam = 0.3
    f = solve_full(keys, deltas, lam, metric=p)
    primal = deltas @ keys.T @ p @ torch.linalg.inv(p @ keys @ keys.T @ p
                                                    + lam * torch.eye(D_K, dtype=torch.float64))
    assert torch.allclose(f.a @ f.b.T, primal, atol=1e-9)


def test_incremental_insertion_keeps_the_property():
    retain = _retain_keys()
    p = null_space_projector(retain, threshold=1e-2)
    keys, deltas = _facts(n=8)
    state = empty_factors(D_K, D_V, 0.1, p)
    for i in range(8):
        state = insert_columns(state, keys[:, i:i + 1], deltas[:, i:i + 1])
    full = solve_full(keys, deltas, 0.1, metric=p)
    assert torch.allclose(state.a @ state.b.T, full.a @ full.b.T, atol=1e-9)
    assert (state.a @ state.b.T @ retain.T).abs().max() < 1e-9


def test_memory_hook_adds_nothing_at_retain_states():
    retain = _retain_keys().float()
    p = null_space_projector(retain, threshold=1e-2)
    keys, deltas = _facts()
    config = TimeROMEConfig(precondition="null_space", gate=False, alpha=4.0, lam=1e-2)
    memory = EditMemory(config, {"name": "synthetic"}, metrics={0: p})
    memory.insert(0, keys.T.float(), deltas.T.float(), [f"f{i}" for i in range(keys.shape[1])])
    at_retain = memory.contribution(0, retain[:50])
    at_facts = memory.contribution(0, keys.T.float())
    assert at_retain.abs().max() < 1e-4 * at_facts.abs().max()
    assert at_facts.abs().max() > 1.0


def test_memory_without_its_metric_is_refused():
    config = TimeROMEConfig(precondition="null_space", gate=False)
    memory = EditMemory(config, {"name": "synthetic"})
    keys, deltas = _facts(n=1)
    with pytest.raises(ValueError, match="precondition 'null_space' needs its key metric"):
        memory.insert(0, keys.T.float(), deltas.T.float(), ["f0"])


def test_threshold_must_be_positive():
    with pytest.raises(ValueError, match="null_space_threshold must be > 0"):
        TimeROMEConfig(null_space_threshold=0.0)
