"""The closed-form factors: dual = primal ridge, incremental = full solve, S_q."""

from __future__ import annotations

import torch

from harness.timerome.solve import (empty_factors, insert_columns, primal_weight, solve_full,
                                    sparsify_columns)


def _data(d_k=12, d_v=7, n=5, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn((d_k, n), generator=gen, dtype=torch.float64),
            torch.randn((d_v, n), generator=gen, dtype=torch.float64))


def _spd(d, seed=1):
    gen = torch.Generator().manual_seed(seed)
    m = torch.randn((d, d), generator=gen, dtype=torch.float64)
    return m @ m.T / d + 0.5 * torch.eye(d, dtype=torch.float64)


def test_dual_equals_primal_ridge():
    keys, deltas = _data()
    for lam in (0.01, 1.0, 30.0):
        f = solve_full(keys, deltas, lam)
        assert torch.allclose(f.a @ f.b.T, primal_weight(keys, deltas, lam), atol=1e-10)


def test_preconditioned_dual_equals_memit_primal():
    keys, deltas = _data()
    cov = _spd(keys.shape[0])
    f = solve_full(keys, deltas, 0.7, metric=torch.linalg.inv(cov))
    expected = deltas @ keys.T @ torch.linalg.inv(keys @ keys.T + 0.7 * cov)
    assert torch.allclose(f.a @ f.b.T, expected, atol=1e-9)
    assert torch.allclose(expected, primal_weight(keys, deltas, 0.7, cov), atol=1e-9)


def test_incremental_insertion_equals_full_solve():
    keys, deltas = _data(n=9)
    for metric in (None, torch.linalg.inv(_spd(keys.shape[0]))):
        state = empty_factors(keys.shape[0], deltas.shape[0], 0.3, metric)
        for i in range(6):  # one at a time
            state = insert_columns(state, keys[:, i:i + 1], deltas[:, i:i + 1])
        state = insert_columns(state, keys[:, 6:], deltas[:, 6:])  # then a block of 3
        full = solve_full(keys, deltas, 0.3, metric)
        assert torch.allclose(state.factor(), full.factor(), atol=1e-10)
        gram = keys.T @ (keys if metric is None else metric @ keys) \
            + 0.3 * torch.eye(keys.shape[1], dtype=torch.float64)
        assert torch.allclose(state.factor() @ state.factor().T, gram, atol=1e-10)
        assert torch.allclose(state.a, deltas @ torch.linalg.inv(gram), atol=1e-10)
        assert torch.allclose(state.a, full.a, atol=1e-10)


def test_sparsify_keeps_largest_entries_per_column():
    a = torch.tensor([[1.0, -5.0], [-4.0, 0.5], [2.0, 3.0], [0.1, -0.2]])
    kept = sparsify_columns(a, 0.5)
    assert torch.equal(kept, torch.tensor([[0.0, -5.0], [-4.0, 0.0], [2.0, 3.0], [0.0, 0.0]]))
    assert torch.equal(sparsify_columns(a, 1.0), a)


def _dual_by_inverse(keys, deltas, lam, metric=None):
    """A = D (K^T M K + lambda I)^-1 by an explicit n x n inverse (the reference)."""
    gram = keys.T @ (keys if metric is None else metric @ keys) \
        + lam * torch.eye(keys.shape[1], dtype=torch.float64)
    return deltas @ torch.linalg.inv(gram), gram


def _projector(d, keep, seed=2):
    """A rank-`keep` orthogonal projector (singular, like the null-space metric)."""
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn((d, d), generator=gen, dtype=torch.float64))
    return q[:, :keep] @ q[:, :keep].T


def test_more_columns_than_key_dimensions_solve_by_woodbury_with_the_same_factors():
    keys, deltas = _data(d_k=6, d_v=4, n=20)  # n > d_k: the Woodbury path
    for metric in (None, torch.linalg.inv(_spd(6)), _projector(6, 3)):
        for lam in (0.01, 1.0):
            state = solve_full(keys, deltas, lam, metric)
            assert state.chol is None  # no n x n factorisation in the solve
            expected, gram = _dual_by_inverse(keys, deltas, lam, metric)
            assert torch.allclose(state.a, expected, rtol=1e-8, atol=1e-8), (lam, metric)
            # the factor, when asked for, is G's Cholesky factor
            assert torch.allclose(state.factor() @ state.factor().T, gram, atol=1e-9)


def test_insertion_after_a_woodbury_solve_equals_the_full_solve():
    keys, deltas = _data(d_k=6, d_v=4, n=24)
    metric = torch.linalg.inv(_spd(6))
    state = solve_full(keys[:, :16], deltas[:, :16], 0.3, metric)  # Woodbury, no factor yet
    state = insert_columns(state, keys[:, 16:], deltas[:, 16:])
    expected, gram = _dual_by_inverse(keys, deltas, 0.3, metric)
    assert torch.allclose(state.a, expected, atol=1e-9)
    assert torch.allclose(state.factor() @ state.factor().T, gram, atol=1e-9)
