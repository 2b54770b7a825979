"""Target deltas d_f at each edit site (method.md section 2; `harness.timerome.sites`), by name.

- `corrupt`: mean MLP output under subject corruption minus the clean output (over T).
- `suppress`: d_f = -P_U(m), m = mean_i W_U[a_i], P_U the orthogonal projection onto the
  span of the answer tokens' unembedding rows (m lies in that span, so P_U(m) = m; it is
  computed by least squares all the same). Our choice: d_f is rescaled to the norm of the
  clean MLP output at the site, so alpha means the same under both targets.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from harness.backbones.base import Backbone
from harness.diffusion.batching import EncodedFact
from harness.timerome.sites import Sites
from harness.timerome.tracing import TraceResult
from harness.timerome.unembedding import unembedding_matrix

TargetFn = Callable[[Backbone, Sequence[EncodedFact], TraceResult, Sites], torch.Tensor]


def corrupt_target(backbone: Backbone, encoded: Sequence[EncodedFact],
                   trace: TraceResult, sites: Sites) -> torch.Tensor:
    return sites.pick(trace.corrupt_out) - sites.pick(trace.clean_out)


def suppress_target(backbone: Backbone, encoded: Sequence[EncodedFact],
                    trace: TraceResult, sites: Sites) -> torch.Tensor:
    w_u = unembedding_matrix(backbone).float().cpu()
    clean_norm = sites.pick(trace.clean_out).norm(dim=-1)
    directions: dict[int, torch.Tensor] = {}
    out = []
    for s, f in enumerate(sites.fact.tolist()):
        if f not in directions:
            rows = w_u[list(encoded[f].answer_ids)]  # [a, d]
            mean = rows.mean(0)
            coef = torch.linalg.lstsq(rows.T.double(), mean.double().unsqueeze(1)).solution
            proj = (rows.T.double() @ coef).squeeze(1).float()
            directions[f] = -proj / proj.norm().clamp(min=1e-12)
        out.append(directions[f] * clean_norm[s])
    return torch.stack(out) if out else clean_norm.new_zeros((0, w_u.shape[1]))


TARGETS: dict[str, TargetFn] = {"corrupt": corrupt_target, "suppress": suppress_target}


def target_deltas(name: str, backbone: Backbone, encoded: Sequence[EncodedFact],
                  trace: TraceResult, sites: Sites) -> torch.Tensor:
    try:
        fn = TARGETS[name]
    except KeyError:
        raise ValueError(f"unknown target '{name}'; known: {', '.join(TARGETS)}") from None
    return fn(backbone, encoded, trace, sites)
