"""Retain statistics for the optional extras: the key metric of the memory solve
(`precondition`: retain_cov = the inverse key covariance, null_space = the projector onto
the retain keys' null space) and the key-gate threshold.

Retain keys are the inputs of `mlp_out_proj(l)` at every prompt and answer position of
retain facts, on the full_mask input (answer masked, as in scoring and at the first
generation step). The edit's statistics keep whole sequences (`retain_states`: when there
are more positions than rows kept, whole evenly spaced sequences), so that the span gate's
expected openings can be counted over word order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Sequence

import torch

from harness.backbones.base import Backbone
from harness.data.fact import Fact
from harness.diffusion.batching import batches, encode_facts
from harness.hooks import capture_inputs
from harness.key_covariance import KeySecondMoment

if TYPE_CHECKING:
    from harness.timerome.config import TimeROMEConfig


def retain_keys(backbone: Backbone, facts: Sequence[Fact], layers: Sequence[int],
                batch_size: int = 32, max_rows: int = 8192) -> dict[int, torch.Tensor]:
    """{layer: [N, d_k]} MLP hidden states on retain text (at most `max_rows`, evenly spaced).

    The kept rows are chosen before the forwards (the number of prompt + answer positions
    is known from the tokens), so only they are ever copied out of the model."""
    plan, lengths = _plan(backbone, facts, batch_size)
    total = int(lengths.sum())
    wanted = torch.arange(total) if total <= max_rows else \
        torch.linspace(0, total - 1, max_rows).long().unique()
    return _capture(backbone, plan, layers, wanted)


@dataclass(frozen=True)
class RetainStates:
    """MLP hidden states of whole retain sequences: `keys` {layer: [N, d_k]}, the rows of
    sequence after sequence (prompt then answer positions), and `lengths` [S] (long) the
    rows of each, in that order (sum N). The gate calibrates on them; the span gate's
    expected openings need the word order (`EditMemory.held_out_gate_opens`)."""

    keys: dict[int, torch.Tensor]
    lengths: torch.Tensor


def retain_states(backbone: Backbone, facts: Sequence[Fact], layers: Sequence[int],
                  batch_size: int = 32, max_rows: int = 8192) -> RetainStates:
    """`RetainStates` of `facts`: all their positions when they have at most `max_rows`,
    else the most evenly spaced sequences whose positions fit, each kept entire."""
    plan, lengths = _plan(backbone, facts, batch_size)
    kept = kept_sequences(lengths, max_rows)
    starts = torch.cumsum(lengths, 0) - lengths
    wanted = torch.cat([torch.arange(int(starts[i]), int(starts[i] + lengths[i]))
                        for i in kept.tolist()])
    return RetainStates(_capture(backbone, plan, layers, wanted), lengths[kept].clone())


def kept_sequences(lengths: torch.Tensor, max_rows: int) -> torch.Tensor:
    """Indices of the most evenly spaced sequences (of `lengths`) with at most `max_rows`
    rows in all (every one when they fit; at least one)."""
    n = int(lengths.numel())
    if int(lengths.sum()) <= max_rows:
        return torch.arange(n)

    def pick(m: int) -> torch.Tensor:
        return torch.linspace(0, n - 1, m).round().long().unique()

    low, high = 1, n  # the largest m whose pick fits (the pick's rows grow with m)
    while low < high:
        mid = (low + high + 1) // 2
        if int(lengths[pick(mid)].sum()) <= max_rows:
            low = mid
        else:
            high = mid - 1
    return pick(low)


def _plan(backbone: Backbone, facts: Sequence[Fact], batch_size: int):
    """The forward batches of `facts` and each sequence's rows (prompt + answer positions),
    in the order the batches put them."""
    if not facts:
        raise ValueError("retain statistics need retain facts (none given)")
    plan = list(batches(backbone, encode_facts(backbone, facts), batch_size))
    lengths = torch.cat([(b.prompt_lengths + b.answer_lengths).long().cpu() for _, b in plan])
    return plan, lengths


def _capture(backbone: Backbone, plan, layers: Sequence[int],
             wanted: torch.Tensor) -> dict[int, torch.Tensor]:
    """{layer: the inputs of mlp_out_proj(layer) at the `wanted` rows} (rows count the
    prompt + answer positions of the plan's sequences in order; answers masked)."""
    layers = sorted(set(layers))
    current: dict[str, torch.Tensor] = {}

    def kept_rows(inputs: torch.Tensor) -> torch.Tensor:
        return inputs[current["keep"]][current["pick"]].float().cpu()

    seen = 0
    modules = {layer: backbone.mlp_out_proj(layer) for layer in layers}
    with capture_inputs(modules, kept_rows) as got, torch.inference_mode():
        for _, batch in plan:
            ids = batch.input_ids.masked_fill(batch.answer_mask, backbone.mask_token_id)
            width = ids.shape[1]
            lengths = batch.prompt_lengths + batch.answer_lengths
            n = int(lengths.sum())
            current["keep"] = (torch.arange(width).unsqueeze(0) < lengths.unsqueeze(1)
                               ).to(backbone.device)
            inside = wanted[(wanted >= seen) & (wanted < seen + n)] - seen
            current["pick"] = inside.to(backbone.device)
            seen += n
            if inside.numel():
                backbone.logits(ids.to(backbone.device))
    return {layer: torch.cat(parts) for layer, parts in got.items()}


def inverse_covariance(keys: torch.Tensor, shrinkage: float) -> torch.Tensor:
    """M = C^-1 with C = (H^T H / N) / (tr/d) + shrinkage I: the uncentred key covariance
    (`harness.key_covariance`, all rows in one sum) normalised to mean eigenvalue 1 (so
    lambda keeps its scale), shrunk toward I."""
    moment = KeySecondMoment()
    moment.add(keys)
    cov = moment.value()
    cov = cov / (torch.diagonal(cov).mean().clamp(min=1e-12))
    cov = cov + shrinkage * torch.eye(cov.shape[0], dtype=torch.float64)
    return torch.cholesky_inverse(torch.linalg.cholesky(cov))


def null_space_projector(keys: torch.Tensor, threshold: float) -> torch.Tensor:
    """P = U0 U0^T, U0 the eigenvectors of the retain key covariance C (normalised to mean
    eigenvalue 1, as `inverse_covariance`) whose eigenvalue is below `threshold`.

    AlphaEdit (Fang et al., ICLR 2025) projects an edit onto the null space of the
    preserved keys (eigenvectors of K0 K0^T with small eigenvalues) so that W k0 = 0 for every
    preserved key k0. With metric M = P the dual solve (`solve.solve_full`) gives
    W = D (K^T P K + lambda I)^-1 K^T P, the ridge solution on the projected keys P K: for a
    retain state h in the span of the kept-out eigenvectors, P h = 0 and the edit adds nothing.
    The number of directions kept (rank of P) is `null_space_rank(P)`."""
    moment = KeySecondMoment()
    moment.add(keys)
    cov = moment.value()
    cov = cov / (torch.diagonal(cov).mean().clamp(min=1e-12))
    eigenvalues, vectors = torch.linalg.eigh(cov)
    null = vectors[:, eigenvalues < threshold]
    return null @ null.T


def null_space_rank(projector: torch.Tensor) -> int:
    """The dimension of the null space a projector of `null_space_projector` keeps."""
    return int(round(float(torch.diagonal(projector).sum())))


@dataclass(frozen=True)
class KeyMetric:
    """A `precondition` of the memory solve: the name its per-layer tensor is stored under
    in the backbone statistics, and how it is built from the retain keys [N, d_k]."""

    statistic: str
    build: Callable[[torch.Tensor, "TimeROMEConfig"], torch.Tensor]


# precondition name -> its key metric M (method.md section 3; "none": M = I, no entry).
KEY_METRICS: dict[str, KeyMetric] = {
    "retain_cov": KeyMetric("inverse_covariance",
                            lambda keys, config: inverse_covariance(keys, config.cov_shrinkage)),
    "null_space": KeyMetric("null_space_projector",
                            lambda keys, config: null_space_projector(
                                keys, config.null_space_threshold)),
}


def gate_threshold(reference: torch.Tensor, keys: torch.Tensor, quantile: float,
                   margin: float = 0.0) -> list[float]:
    """Per-fact cosine thresholds: for each fact key k_f (a column of `keys` [d_k, n]), the
    `quantile` r_f of cos(h, k_f) over the retain hidden states h (`reference` [N, d_k]),
    raised by `margin` of its distance to 1: tau_f = r_f + margin (1 - r_f).

    The margin is for memories of many facts: a retain state opens fact f's gate with
    probability about 1 / (N + 1) at quantile 1 (the largest of N calibration states), so a
    retain text of P positions opens about n P / N gates over n facts; a margin > 0 asks for
    more than the largest similarity seen.

    Each fact's gate opens on at most a (1 - quantile) share of retain states, however many
    facts the memory holds (a single threshold over max_f cos(h, k_f) would rise with the
    number of facts and close the gates of the facts themselves)."""
    ref = torch.nn.functional.normalize(reference.float(), dim=-1)
    k = torch.nn.functional.normalize(keys.float(), dim=0)  # [d_k, n]
    if k.shape[1] == 0:
        return []
    # Column blocks keep the [N, block] similarity matrix (and quantile's sorted copy) near
    # GATE_BLOCK_ELEMENTS: a 400-fact memory against 12k calibration states would otherwise
    # hold ~0.2 GB for an instant (the edit's extra memory). Quantile 1 is the maximum, which
    # torch.quantile finds by a full sort; amax gives the same value without one.
    block = max(1, GATE_BLOCK_ELEMENTS // max(1, ref.shape[0]))
    parts = []
    for lo in range(0, k.shape[1], block):
        sims = ref @ k[:, lo:lo + block]
        parts.append(sims.amax(0) if quantile == 1.0 else torch.quantile(sims, quantile, dim=0))
    r = torch.cat(parts)
    return (r + margin * (1.0 - r)).tolist()


GATE_BLOCK_ELEMENTS = 1 << 20  # similarities per block of gate_threshold (4 MiB in float32)
