"""Closed-form factors of the edit memory (method.md section 3), in float64.

For one layer with keys K (d_k x n), deltas D (d_v x n) and a key metric M (identity, or
C^-1 for `precondition: retain_cov`):

    G = K^T M K + lambda I_n,   A = D G^-1 (d_v x n),   B = M K (d_k x n)

so that the edit W = A B^T. With M = I this is the ridge solution
W = D K^T (K K^T + lambda I)^-1 in its dual form; with M = C^-1 it equals MEMIT's
preconditioned solution W = D K^T (K K^T + lambda C)^-1 (push-through identity with
K~ = C^-1/2 K). C is the retain-key second moment of `harness.key_covariance`, the
estimator MEMIT uses too (TimeROME normalises and shrinks it first:
`retain_stats.inverse_covariance`). The state keeps G's Cholesky factor L (G = L L^T), not
G^-1: A comes from two triangular solves (no n x n inverse; at 400 facts x 3 subject sites
the inverse was most of the solve). Inserting new keys extends L by one block row (block
Cholesky with the Schur complement) and updates A: O(n^2 k + n d k) for k keys, no re-solve.

With more columns than key dimensions (n > d_k: 400 facts x 3 subject sites against a
96-wide key space), G is low rank plus lambda I, and a solve from scratch takes A from the
Woodbury identity instead, in O(n d_k^2 + d_k^3), linear in n:

    G^-1 = (1/lambda) [I - K^T (lambda I + M K K^T)^-1 M K],
    A = D G^-1 = (1/lambda) [D - (D K^T) (lambda I + M K K^T)^-1 (M K)]

(valid for a singular M such as the null-space projector). L is then computed only when
something needs it (`RidgeFactors.factor()`: an insertion, a saved file).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class RidgeFactors:
    """Dual ridge state of one layer. Columns are facts, in insertion order."""

    keys: torch.Tensor  # K [d_k, n]
    deltas: torch.Tensor  # D [d_v, n]
    chol: torch.Tensor | None  # L [n, n], lower triangular, G = L L^T (None: not yet; factor())
    a: torch.Tensor  # A = D G^-1 [d_v, n]
    metric: torch.Tensor | None  # M [d_k, d_k] (None: identity)
    lam: float

    @property
    def n(self) -> int:
        return int(self.keys.shape[1])

    @property
    def b(self) -> torch.Tensor:
        """B = M K [d_k, n]."""
        return self.keys if self.metric is None else self.metric @ self.keys

    def factor(self) -> torch.Tensor:
        """L, G's Cholesky factor (computed now if the solve did not need it)."""
        if self.chol is None:
            self.chol = _cholesky_of_gram(self.keys, self.metric, self.lam)
        return self.chol


def empty_factors(d_k: int, d_v: int, lam: float, metric: torch.Tensor | None = None
                  ) -> RidgeFactors:
    f64 = torch.float64
    return RidgeFactors(torch.zeros((d_k, 0), dtype=f64), torch.zeros((d_v, 0), dtype=f64),
                        torch.zeros((0, 0), dtype=f64), torch.zeros((d_v, 0), dtype=f64),
                        None if metric is None else metric.to(f64), float(lam))


def _metric_apply(metric: torch.Tensor | None, keys: torch.Tensor) -> torch.Tensor:
    return keys if metric is None else metric @ keys


def _cholesky_of_gram(keys: torch.Tensor, metric: torch.Tensor | None,
                      lam: float) -> torch.Tensor:
    gram = keys.T @ _metric_apply(metric, keys)
    gram.diagonal().add_(lam)  # + lambda I in place (an n x n memory is n^2 x 8 bytes)
    return torch.linalg.cholesky(gram)


def solve_full(keys: torch.Tensor, deltas: torch.Tensor, lam: float,
               metric: torch.Tensor | None = None) -> RidgeFactors:
    """Solve from scratch: A = D (K^T M K + lambda I)^-1: by G's Cholesky factor, or by the
    Woodbury identity when there are more columns than key dimensions (module docstring)."""
    keys, deltas = keys.to(torch.float64), deltas.to(torch.float64)
    metric = None if metric is None else metric.to(torch.float64)
    d_k, n = keys.shape
    if n > d_k:
        mk = _metric_apply(metric, keys)  # [d_k, n]
        inner = mk @ keys.T  # M K K^T [d_k, d_k]
        inner.diagonal().add_(lam)
        a = (deltas - (deltas @ keys.T) @ torch.linalg.solve(inner, mk)) / lam
        return RidgeFactors(keys, deltas, None, a.contiguous(), metric, float(lam))
    chol = _cholesky_of_gram(keys, metric, lam)
    a = torch.cholesky_solve(deltas.T, chol).T  # D G^-1 (G symmetric)
    return RidgeFactors(keys, deltas, chol, a.contiguous(), metric, float(lam))


def insert_columns(state: RidgeFactors, new_keys: torch.Tensor,
                   new_deltas: torch.Tensor) -> RidgeFactors:
    """Add k facts (new_keys [d_k, k], new_deltas [d_v, k]) by a block update.

    With g = K^T M K_new, gamma = K_new^T M K_new + lambda I, W = L^-1 g, the Schur
    complement S = gamma - W^T W = L_S L_S^T, U = G^-1 g and R = (D_new - A g) S^-1:
    L' = [[L, 0], [W^T, L_S]],  A' = [A - R U^T, R].
    """
    if state.n == 0:  # the same numbers as the block update from nothing, fewer n x n copies
        return solve_full(new_keys, new_deltas, state.lam, state.metric)
    new_keys = new_keys.to(torch.float64)
    new_deltas = new_deltas.to(torch.float64)
    n, k = state.n, new_keys.shape[1]
    m_new = _metric_apply(state.metric, new_keys)
    g = state.keys.T @ m_new  # [n, k]
    gamma = new_keys.T @ m_new + state.lam * torch.eye(k, dtype=torch.float64)
    old = state.factor()
    w = torch.linalg.solve_triangular(old, g, upper=False)  # L^-1 g [n, k]
    chol_s = torch.linalg.cholesky(gamma - w.T @ w)
    u = torch.linalg.solve_triangular(old.T, w, upper=True)  # G^-1 g [n, k]
    r = torch.cholesky_solve((new_deltas - state.a @ g).T, chol_s).T  # [d_v, k]
    chol = torch.zeros((n + k, n + k), dtype=torch.float64)
    chol[:n, :n] = old
    chol[n:, :n] = w.T
    chol[n:, n:] = chol_s
    a = torch.cat([state.a - r @ u.T, r], dim=1)
    return RidgeFactors(torch.cat([state.keys, new_keys], 1),
                        torch.cat([state.deltas, new_deltas], 1),
                        chol, a, state.metric, state.lam)


def primal_weight(keys: torch.Tensor, deltas: torch.Tensor, lam: float,
                  metric_cov: torch.Tensor | None = None) -> torch.Tensor:
    """Reference primal solution W = D K^T (K K^T + lambda C)^-1 (C = I if None)."""
    keys, deltas = keys.to(torch.float64), deltas.to(torch.float64)
    d_k = keys.shape[0]
    reg = torch.eye(d_k, dtype=torch.float64) if metric_cov is None else metric_cov.to(torch.float64)
    return torch.linalg.solve(keys @ keys.T + lam * reg, keys @ deltas.T).T


def sparsify_columns(a: torch.Tensor, q: float) -> torch.Tensor:
    """S_q per fact: keep the ceil(q d_v) largest-magnitude entries of each column of A.

    A fact's contribution c_f(h) a_f is a scalar times a_f, so its largest entries are
    those of a_f whatever h is: sparsifying A's columns once is S_q on every forward.
    """
    if q >= 1.0 or a.shape[1] == 0:
        return a
    keep = max(1, int(-(-q * a.shape[0] // 1)))
    idx = a.abs().topk(keep, dim=0).indices
    mask = torch.zeros_like(a, dtype=torch.bool).scatter_(0, idx, True)
    return a * mask
