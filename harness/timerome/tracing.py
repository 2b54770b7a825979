"""Temporal Indirect Effect (TIE) causal tracing (method.md section 1).

For every fact and every level t of the grid T: one clean run on x_t records the input
(key space) and output (value space) of `mlp_out_proj(l)` at every layer and candidate
position; N corrupted runs add Gaussian noise of scale nu to the subject's input
embeddings (a forward hook on `input_embeddings()`, so it works for every adapter);
restored runs are corrupted runs in which the clean MLP output at one (layer, position)
is patched back. Per level, the plain corrupted runs (one per fact and noise sample) run
first and keep every block's output; then the restored runs of each layer l run batched,
starting at block l: a restored run equals its plain corrupted run up to block l's input,
so blocks 0..l-1 return that kept output instead of computing it
(`harness.hooks.skipped_forwards`). Each restored run costs L - l blocks instead of L (half
on average), and every number is the full forward's (same inputs, same rows; on the MoE
twin the expert grouping of a different batch moves the last bits, ~1e-6).
The output head and its softmax run on the still-masked answer positions only
(`Backbone.logits_at`): the TIE needs nothing else.

P = mean log-probability of the still-masked answer tokens (aligned logits);
IE(l, j, t) = P_restored - P_corrupted (averaged over noise samples);
TIE(l, j) = sum_t w(t) IE(l, j, t).
"""

from __future__ import annotations

import hashlib
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, fields
from functools import partial
from typing import Iterator, Sequence

import torch

from harness.backbones.base import Backbone
from harness.data.fact import Fact
from harness.diffusion.batching import EncodedFact, QABatch, batches, encode_facts
from harness.diffusion.seeding import fact_generator
from harness.hooks import block_queries, forward_hooks, skipped_forwards
from harness.timerome.config import TimeROMEConfig
from harness.timerome.levels import mask_at_level, reveal_orders, time_weights
from harness.timerome.unembedding import vocab_size


@dataclass
class TraceResult:
    """Tracing output for F facts, T levels, L layers and P candidate offsets.

    Offsets are token positions relative to each fact's last subject token.
    """

    fact_keys: list[str]
    times: tuple[float, ...]
    weights: torch.Tensor  # [T] time weights w(t)
    offsets: tuple[int, ...]  # [P]
    valid: torch.Tensor  # [F, P] bool: position traced (inside the prompt, candidate)
    is_subject: torch.Tensor  # [F, P] bool: position is a subject token
    scored: torch.Tensor  # [F, P] bool: offsets with a TIE (restored runs recorded there)
    ie: torch.Tensor  # [F, T, L, P] indirect effects (nan where not traced)
    tie: torch.Tensor  # [F, L, P] time-weighted indirect effect (nan where not traced)
    clean_logp: torch.Tensor  # [F, T] P on the clean run
    corrupt_logp: torch.Tensor  # [F, T] P under subject corruption (mean over samples)
    layer: torch.Tensor  # [F] chosen layer l*
    offset_index: torch.Tensor  # [F] chosen offset index into `offsets`
    position: torch.Tensor  # [F] chosen absolute token position j*
    max_tie: torch.Tensor  # [F] TIE at the chosen coordinate
    flagged: torch.Tensor  # [F] bool: max TIE below the threshold (corruption-invariant)
    traced: torch.Tensor  # [F] bool: restored runs made (config tie_facts); else shared layer
    # keys, clean_out, corrupt_out, key_floor: the first L' layers, L' = L or, for a trace
    # whose runs stop at a layer (tie_facts 0), the layers up to it (nothing is known above)
    keys: torch.Tensor  # [F, L', P, d_k] clean MLP hidden (out-proj input), mean over T
    clean_out: torch.Tensor  # [F, L', P, d_v] clean out-proj output, mean over T
    corrupt_out: torch.Tensor  # [F, L', P, d_v] corrupted out-proj output, mean over T and N
    noise_scale: float
    forwards: int  # sequences forwarded (rows), clean + corrupted + restored
    seconds: float
    # [F, L', P] the least cosine between a level's clean MLP hidden and `keys` (their mean)
    # over the T levels: how far the fact's own states stray from its key (config
    # gate_own_floor)
    key_floor: torch.Tensor | None = None

    @property
    def corruption_effect(self) -> torch.Tensor:
        """[F, T] P_clean - P_corrupted: how much the subject corruption hurts the answer."""
        return self.clean_logp - self.corrupt_logp

    def select(self, index: Sequence[int]) -> "TraceResult":
        idx = torch.as_tensor(list(index), dtype=torch.long)
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "fact_keys":
                value = [value[i] for i in idx.tolist()]
            elif isinstance(value, torch.Tensor) and f.name != "weights":
                value = value[idx]
            out[f.name] = value
        return TraceResult(**out)

    def summary(self) -> list[dict]:
        """JSON-serialisable per-fact coordinates and scores."""
        return [{"fact": key, "layer": int(self.layer[i]), "position": int(self.position[i]),
                 "offset": int(self.offsets[int(self.offset_index[i])]),
                 "tie": _finite(float(self.max_tie[i])), "flagged": bool(self.flagged[i]),
                 "corruption_effect": _finite(float(self.corruption_effect[i].nanmean()))}
                for i, key in enumerate(self.fact_keys)]


def _finite(value: float) -> float | None:
    return value if value == value and abs(value) != float("inf") else None


def concat_traces(parts: Sequence[TraceResult]) -> TraceResult:
    if not parts:
        raise ValueError("no traces to concatenate")
    first = parts[0]
    out = {}
    for f in fields(TraceResult):
        values = [getattr(p, f.name) for p in parts]
        if f.name == "fact_keys":
            out[f.name] = [k for v in values for k in v]
        elif f.name in ("forwards",):
            out[f.name] = int(sum(values))
        elif f.name == "seconds":
            out[f.name] = float(sum(values))
        elif isinstance(values[0], torch.Tensor) and f.name != "weights":
            out[f.name] = torch.cat(values)
        else:
            out[f.name] = getattr(first, f.name)
    return TraceResult(**out)


# ----------------------------------------------------------------------------- helpers
def candidate_offsets(encoded: Sequence[EncodedFact], config: TimeROMEConfig) -> tuple[int, ...]:
    """Offsets (relative to the last subject token) traced for every fact."""
    if config.positions == "last_subject":
        return (0,)
    longest = max(e.last_subject_position - e.subject_positions[0] + 1 for e in encoded)
    if config.positions == "subject":
        return tuple(range(-(longest - 1), 1))
    before, after = config.window
    return tuple(range(-max(before, longest - 1), after + 1))


def noise_scale(backbone: Backbone, multiplier: float) -> float:
    """nu = multiplier x std of the token embedding table (ROME's choice for 3)."""
    weight = backbone.input_embeddings().weight
    return float(multiplier * weight.detach().float().std())


def subject_noise(batch: QABatch, n_samples: int, dim: int, scale: float, seed: int,
                  dtype: torch.dtype) -> torch.Tensor:
    """[B, N, W, d] Gaussian noise at subject positions (zero elsewhere), seeded per fact."""
    b, width = batch.input_ids.shape
    noise = torch.zeros((b, n_samples, width, dim), dtype=torch.float32)
    rows, samples, positions, draws = [], [], [], []
    for r, enc in enumerate(batch.encoded):
        pos = enc.subject_positions
        for s in range(n_samples):
            gen = fact_generator(seed, enc.fact.key, salt=1 + s)
            draws.append(torch.randn((len(pos), dim), generator=gen))
            rows += [r] * len(pos)
            samples += [s] * len(pos)
            positions += list(pos)
    if draws:  # one scatter for the batch (the draws are each fact's own, as above)
        noise[torch.tensor(rows), torch.tensor(samples), torch.tensor(positions)] = \
            torch.cat(draws) * scale
    return noise.to(dtype)


def masked_mean_logp(picked: torch.Tensor, targets: torch.Tensor,
                     still: torch.Tensor) -> torch.Tensor:
    """[R] mean log p(target) over each row's still-masked positions; `picked` [N, V] holds
    the aligned logits of those positions in row-major order (`Backbone.logits_at`), so the
    output head and the softmax run on the scored positions only."""
    rows, cols = still.nonzero(as_tuple=True)
    picked = picked.float()
    lp = picked.gather(1, targets[rows, cols].unsqueeze(1)).squeeze(1) - picked.logsumexp(1)
    dense = torch.zeros(still.shape, device=lp.device)
    dense[rows, cols] = lp
    return dense.sum(1) / still.sum(1).clamp(min=1).to(dense.dtype)


class _HookState:
    """What the tracing hooks do on the current forward (set before each forward)."""

    def __init__(self, n_layers: int):
        self.mode = "off"  # "clean" | "plain" | "restore" | "off"
        self.noise_rows: torch.Tensor | None = None
        self.positions: torch.Tensor | None = None  # [B, P] absolute candidate positions
        # the layer whose block runs at the candidate positions only (truncated runs on a
        # query-block backbone): its MLP sees [rows, P, .] already in `positions` order
        self.queried: int | None = None
        # clean runs: per layer, one part per chunk of facts (then the [B, P, d] tensor)
        self.clean_in: list = [None] * n_layers
        self.clean_out: list = [None] * n_layers
        self.corrupt_out: list[torch.Tensor | None] = [None] * n_layers  # [B, N, P, d]
        self.block_out: list[torch.Tensor | None] = [None] * n_layers  # plain rows' outputs
        self.row_fact: torch.Tensor | None = None
        self.row_sample: torch.Tensor | None = None
        # restore: (layer, rows, absolute positions, facts, offset indices)
        self.patch: tuple[int, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor] | None \
            = None


@contextmanager
def _tracing_hooks(backbone: Backbone, state: _HookState) -> Iterator[None]:

    def embed_hook(module, inputs, output):
        if state.mode in ("plain", "restore") and state.noise_rows is not None:
            return output + state.noise_rows
        return None

    def make_block_hook(layer: int):
        def hook(module, inputs, output):
            if state.mode == "plain":
                if not isinstance(output, torch.Tensor):
                    raise TypeError(f"{backbone.name}: block {layer} returns "
                                    f"{type(output).__name__}, not a hidden-state tensor; "
                                    "tracing starts restored runs from a block's output")
                state.block_out[layer] = output
            return None
        return hook

    def make_mlp_hook(layer: int):
        def candidates(hidden: torch.Tensor) -> torch.Tensor:
            """[rows, P, .] at the rows' candidate positions (already so in a queried block)."""
            if state.queried == layer:
                return hidden.float()
            facts = state.row_fact
            ar = torch.arange(len(facts), device=hidden.device).unsqueeze(1)
            return hidden[ar, state.positions[facts]].float()

        def hook(module, inputs, output):
            if state.mode == "clean":  # rows: the facts state.row_fact, in order
                state.clean_in[layer].append(candidates(inputs[0]))
                state.clean_out[layer].append(candidates(output))
                return None
            if state.mode == "plain":
                state.corrupt_out[layer][state.row_fact, state.row_sample] = candidates(output)
                return None
            if state.mode == "restore" and state.patch[0] == layer:
                _, rows, at, facts, offs = state.patch
                output = output.clone() if output.requires_grad else output
                output[rows, at] = state.clean_out[layer][facts, offs].to(output.dtype)
                return output
            return None
        return hook

    hooks = [(backbone.input_embeddings(), embed_hook)]
    hooks += [(block, make_block_hook(layer)) for layer, block in enumerate(backbone.blocks())]
    hooks += [(backbone.mlp_out_proj(layer), make_mlp_hook(layer))
              for layer in range(backbone.num_layers)]
    with forward_hooks(hooks):
        yield


TRACE_STATE_ELEMENTS = 1 << 22  # hidden-state elements (rows x width x d_model: 16 MiB in
# float32) a truncated forward (no logits) may hold; it then takes more rows than
# trace_batch_rows where they fit (fewer, larger forwards of a small model; an 8B model at
# real answer lengths stays at trace_batch_rows)
TRACE_LOGIT_ELEMENTS = 1 << 21  # logits one traced forward may hold (8 MiB in float32): on
# long answers a forward gets fewer rows than trace_batch_rows (the edit's extra memory)


def _truncated_logits(backbone: Backbone, above: Sequence[torch.nn.Module],
                      last: torch.nn.Module | None, queries: torch.Tensor | None,
                      input_ids: torch.Tensor, positions: torch.Tensor) -> None:
    """A forward that computes the blocks up to the first of `above` only: those return
    zeros at once (`harness.hooks.skipped_forwards`; the compute counter prices them as
    skipped) and the head computes no row. No logits: the run's P is not known. With a
    block `last` (the block below `above`, on a `Backbone.query_blocks` backbone) that
    block computes its output at the `queries` [B, P] positions only (`block_queries`):
    nothing above reads the other positions (the compute counter prices it as a whole
    block: an upper bound)."""
    weight = backbone.input_embeddings().weight
    filler = torch.zeros((*input_ids.shape, weight.shape[1]), device=input_ids.device,
                         dtype=weight.dtype)
    queried = block_queries(last, queries) if last is not None else nullcontext()
    with skipped_forwards(above, filler), queried:
        backbone.logits_at(input_ids, torch.zeros_like(positions, dtype=torch.bool))
    return None


def _truncated_run(backbone: Backbone, blocks: Sequence[torch.nn.Module], stop_layer: int,
                   state: "_HookState", input_ids: torch.Tensor, positions: torch.Tensor,
                   facts: torch.Tensor) -> None:
    """`_truncated_logits` above block `stop_layer`, that block at the candidate positions of
    the rows' `facts` when `state.queried` says so."""
    last = blocks[stop_layer] if state.queried == stop_layer else None
    return _truncated_logits(backbone, blocks[stop_layer + 1:], last,
                             state.positions[facts] if last is not None else None,
                             input_ids, positions)


def _full_run(backbone: Backbone):
    """A full forward's logits at `positions` (the facts do not matter to it)."""
    def run(input_ids: torch.Tensor, positions: torch.Tensor, _facts: torch.Tensor
            ) -> torch.Tensor:
        return backbone.logits_at(input_ids, positions)
    return run


def _mean_logp(logits: torch.Tensor | None, targets: torch.Tensor,
               still: torch.Tensor) -> torch.Tensor:
    """`masked_mean_logp`, or nan per row for a truncated run (no logits)."""
    if logits is None:
        return torch.full((still.shape[0],), float("nan"))
    return masked_mean_logp(logits, targets, still).cpu()


def _stack_layers(per_layer: list[torch.Tensor | None]) -> torch.Tensor:
    """[B, L, ...] from one tensor per layer; nan for a layer a truncated run never reached."""
    shape = next(t for t in per_layer if t is not None)
    return torch.stack([torch.full_like(shape, float("nan")) if t is None else t
                        for t in per_layer], 1)


@dataclass(frozen=True)
class _RestoredRows:
    """The restored rows of one layer, the same for every layer: row r continues the plain
    corrupted run of group `group[r]` and its IE is recorded at offset index `offset[r]`;
    it patches back the clean output at the offset indices `patch_offset[ptr[r]:ptr[r+1]]`.
    `scored` [B, P]: where the batch's IE is defined (nan elsewhere)."""

    group: torch.Tensor  # [R]
    offset: torch.Tensor  # [R]
    ptr: torch.Tensor  # [R + 1]
    patch_offset: torch.Tensor  # [ptr[-1]]
    scored: torch.Tensor  # [B, P] bool

    def patches(self, rows: slice) -> tuple[torch.Tensor, torch.Tensor]:
        """(row index within the slice, offset index) of every patch of the rows `rows`."""
        lo, hi = int(self.ptr[rows.start]), int(self.ptr[rows.stop])
        counts = self.ptr[rows.start + 1:rows.stop + 1] - self.ptr[rows.start:rows.stop]
        local = torch.arange(rows.stop - rows.start).repeat_interleave(counts)
        return local, self.patch_offset[lo:hi]


def _restored_rows(g_fact: torch.Tensor, valid: torch.Tensor, is_subject: torch.Tensor,
                   restore: torch.Tensor, offsets: tuple[int, ...], span: str) -> _RestoredRows:
    """Restored rows for the groups (fact, noise sample) of facts with `restore`: one per
    traced offset (span "token"), or one patching every traced subject offset, its IE kept
    at the last subject token (span "subject", ROME's window over the subject)."""
    last = offsets.index(0)
    group, offset, counts, patch = [], [], [], []
    scored = torch.zeros_like(valid)
    for f in range(valid.shape[0]):
        if not bool(restore[f]):
            continue
        traced = valid[f].nonzero().flatten().tolist()
        if span == "subject":
            subject = [p for p in traced if bool(is_subject[f, p])]
            units = [(last, subject)] if subject else []
        else:
            units = [(p, [p]) for p in traced]
        for at, _ in units:
            scored[f, at] = True
        for g in (g_fact == f).nonzero().flatten().tolist():
            for at, patched in units:
                group.append(g), offset.append(at), counts.append(len(patched))
                patch.extend(patched)
    ptr = torch.zeros(len(counts) + 1, dtype=torch.long)
    ptr[1:] = torch.tensor(counts, dtype=torch.long).cumsum(0) if counts else ptr[1:]
    return _RestoredRows(torch.tensor(group, dtype=torch.long),
                         torch.tensor(offset, dtype=torch.long), ptr,
                         torch.tensor(patch, dtype=torch.long), scored)


# ----------------------------------------------------------------------------- tracing
def _chunks(n: int, size: int) -> Iterator[slice]:
    for lo in range(0, n, size):
        yield slice(lo, min(n, lo + size))


def _trace_batch(backbone: Backbone, batch: QABatch, offsets: tuple[int, ...], scale: float,
                 config: TimeROMEConfig, restore: torch.Tensor,
                 stop_layer: int | None = None) -> TraceResult:
    """Trace one batch of equal-width facts.

    Per level: the clean run; the plain corrupted runs, one per (fact, noise sample) group,
    which also keep every block's output; then, layer by layer, the restored runs of that
    layer. A run restored at layer l equals its group's corrupted run up to block l's input,
    so it starts there: blocks 0..l-1 return the group's kept output of block l-1
    (`harness.hooks.skipped_forwards`) and only blocks l.. are computed. The result is the
    full restored forward's (each row is computed on the same inputs); the cost of a
    restored run falls from L blocks to L - l. Only the facts with `restore` [B] get
    restored runs (config tie_facts); the others' TIE stays nan.

    `stop_layer` (only without restored runs: tie_facts 0, the layer known in advance): the
    clean and corrupted runs stop after block `stop_layer` (the blocks above are skipped,
    the head computes no row), since the keys and deltas read there need nothing above
    it; with config `effect_flag` the first level still runs in full, for the corruption
    effect that flags a fact. P of a truncated run is not known (nan), nor are keys and
    outputs above `stop_layer`."""
    start = time.monotonic()
    device = backbone.device
    n_layers, n_off, n_samples = backbone.num_layers, len(offsets), config.noise_samples
    n_kept = n_layers if stop_layer is None else stop_layer + 1  # layers the result holds
    n_times = len(config.times)
    b, width = batch.input_ids.shape
    off = torch.tensor(offsets)
    pos = batch.last_subject_pos.unsqueeze(1) + off.unsqueeze(0)  # [B, P]
    inside = (pos >= 0) & (pos < batch.prompt_lengths.unsqueeze(1))
    posc = pos.clamp(0, width - 1)
    is_subject = batch.subject_mask.gather(1, posc) & inside
    valid = inside if config.positions == "window" else is_subject
    dim_in = backbone.input_embeddings().weight.shape[1]
    noise = subject_noise(batch, n_samples, dim_in, scale, config.seed,
                          backbone.input_embeddings().weight.dtype).to(device)
    orders = reveal_orders(batch, config.seed)
    blocks = list(backbone.blocks())

    # Groups (fact, noise sample): one plain corrupted run each. Restored rows of a layer
    # (the same for every layer): per group of a traced fact, one row per traced offset
    # (restore_span token) or one row patching every subject offset (subject).
    g_fact = torch.arange(b).repeat_interleave(n_samples)
    g_sample = torch.arange(n_samples).repeat(b)
    n_groups = len(g_fact)
    rows = _restored_rows(g_fact, valid, is_subject, restore, offsets, config.restore_span)
    r_group_all, r_off_all = rows.group, rows.offset
    n_restored = len(r_group_all)
    kept_rows = torch.zeros(n_groups, dtype=torch.bool)  # groups whose block outputs are kept
    kept_rows[r_group_all] = True
    slot = (kept_rows.long().cumsum(0) - 1).to(device)

    state = _HookState(n_layers)
    state.positions = posc.to(device)
    targets = batch.input_ids.to(device)
    clean_lp = torch.zeros((b, n_times))
    corrupt_lp = torch.zeros((b, n_times))
    ie = torch.full((b, n_times, n_layers, n_off), float("nan"))
    keys = out_clean = out_corrupt = None
    level_keys: list[torch.Tensor] = []  # each level's clean MLP hidden [B, L, P, d_k]
    forwards = 0
    vocab = vocab_size(backbone)
    if stop_layer is not None and n_restored:
        raise ValueError("trace: stop_layer is only for traces without restored runs")
    truncate = stop_layer is not None and stop_layer < n_layers - 1
    with torch.inference_mode(), _tracing_hooks(backbone, state):
        for ti, t in enumerate(config.times):
            ids, still = mask_at_level(batch, orders, t, backbone.mask_token_id)
            ids, still = ids.to(device), still.to(device)
            # truncated level: blocks above stop_layer skipped, no head row (P unknown); the
            # first level too unless it measures the corruption effect (config effect_flag)
            short = truncate and (ti > 0 or not config.effect_flag)
            # a truncated run's last block computes the candidate positions only, where the
            # backbone's blocks can (Backbone.query_blocks): its hooks see [rows, P, .]
            state.queried = stop_layer if short and backbone.query_blocks else None
            run = partial(_truncated_run, backbone, blocks, stop_layer, state) if short \
                else _full_run(backbone)
            # rows per forward: fewer where their logits would pass TRACE_LOGIT_ELEMENTS;
            # truncated runs: more where their hidden states fit in TRACE_STATE_ELEMENTS
            logit_rows = max(1, TRACE_LOGIT_ELEMENTS // (max(1, int(still.sum(1).max())) * vocab))
            rows_per_forward = max(config.trace_batch_rows,
                                   TRACE_STATE_ELEMENTS // (width * dim_in)) if short else \
                min(config.trace_batch_rows, logit_rows)
            state.mode = "clean"
            state.clean_in = [[] for _ in range(n_layers)]
            state.clean_out = [[] for _ in range(n_layers)]
            for sl in _chunks(b, b if short else min(b, logit_rows)):
                state.row_fact = torch.arange(sl.start, sl.stop, device=device)
                clean_lp[sl, ti] = _mean_logp(run(ids[sl], still[sl], state.row_fact),
                                              targets[sl], still[sl])
            forwards += b
            state.clean_in = [torch.cat(parts) if parts else None for parts in state.clean_in]
            state.clean_out = [torch.cat(parts) if parts else None for parts in state.clean_out]
            clean_in = _stack_layers(state.clean_in[:n_kept]).cpu()  # [B, L', P, d_k]
            clean_o = _stack_layers(state.clean_out[:n_kept]).cpu()
            keys = clean_in if keys is None else keys + clean_in
            level_keys.append(clean_in)
            out_clean = clean_o if out_clean is None else out_clean + clean_o
            state.corrupt_out = [torch.zeros((b, n_samples, n_off, clean_o.shape[-1]),
                                             device=device) if layer < n_kept or not short
                                 else None for layer in range(n_layers)]

            # plain corrupted runs: the baseline P_corrupted and every block's output
            state.mode = "plain"
            group_lp = torch.zeros(n_groups)
            kept: list[list[torch.Tensor]] = [[] for _ in range(n_layers)]
            for sl in _chunks(n_groups, rows_per_forward):
                fr, sr = g_fact[sl].to(device), g_sample[sl].to(device)
                state.row_fact, state.row_sample = fr, sr
                state.noise_rows = noise[fr, sr]
                logits = run(ids[fr], still[fr], fr)
                group_lp[sl] = _mean_logp(logits, targets[fr], still[fr])
                del logits
                keep = kept_rows[sl].to(device)  # only groups with restored runs
                for layer in range(n_layers):
                    kept[layer].append(state.block_out[layer][keep])
                forwards += len(fr)
            # [restored groups, W, d] per block (slot[g]: group g's row)
            block_out = [torch.cat(parts) for parts in kept]
            state.block_out = [None] * n_layers
            base = group_lp.view(b, n_samples)
            corrupt_lp[:, ti] = base.mean(1)

            # restored runs, layer by layer, each starting at its layer
            state.mode = "restore"
            acc = torch.zeros((b, n_layers, n_off))
            for layer in range(n_layers):
                skipped = blocks[:layer]
                for sl in _chunks(n_restored, rows_per_forward):
                    rg = r_group_all[sl].to(device)
                    fr, sr = g_fact.to(device)[rg], g_sample.to(device)[rg]
                    state.noise_rows = noise[fr, sr]
                    p_row, p_off = rows.patches(sl)
                    p_row, p_off = p_row.to(device), p_off.to(device)
                    p_fact = fr[p_row]
                    state.patch = (layer, p_row, state.positions[p_fact, p_off], p_fact, p_off)
                    known = block_out[layer - 1][slot[rg]] if layer else None
                    with skipped_forwards(skipped, known) if layer else nullcontext():
                        logits = backbone.logits_at(ids[fr], still[fr])
                    lp = masked_mean_logp(logits, targets[fr], still[fr]).cpu()
                    del logits
                    effect = lp - group_lp[r_group_all[sl]]
                    acc.index_put_((g_fact[r_group_all[sl]], torch.full_like(effect, layer,
                                    dtype=torch.long), r_off_all[sl]), effect / n_samples,
                                   accumulate=True)
                    forwards += len(rg)
            state.mode, state.patch, state.queried = "off", None, None
            acc[~rows.scored.unsqueeze(1).expand(b, n_layers, n_off)] = float("nan")
            ie[:, ti] = acc
            summed = torch.stack(state.corrupt_out[:n_kept], 1).mean(2).cpu()  # [B, L', P, d]
            out_corrupt = summed if out_corrupt is None else out_corrupt + summed
    weights = time_weights(config.times).float()
    tie = (ie * weights.view(1, -1, 1, 1)).sum(1)  # nan stays nan where not traced
    eligible = (valid & is_subject).unsqueeze(1).expand_as(tie)
    scored = tie.masked_fill(~eligible | tie.isnan(), float("-inf")).reshape(b, -1)
    best = scored.argmax(1)
    layer, offset_index = best // n_off, best % n_off
    max_tie = scored.gather(1, best.unsqueeze(1)).squeeze(1)
    flagged = ~(max_tie > config.flag_threshold)
    if not bool(restore.all()):
        # untraced facts: the last subject token; the layer is shared (_share_layer); flagged
        # when the subject's corruption does not change the answer (no TIE to say more)
        skip = ~restore
        offset_index[skip] = offsets.index(0)
        max_tie[skip] = float("nan")
        effect = (clean_lp - corrupt_lp).nanmean(1)  # truncated levels: nan
        if config.effect_flag or config.tie_facts != 0:  # effect_flag false: none flagged
            flagged[skip] = ~(effect[skip] > config.flag_threshold)
        else:
            flagged[skip] = False
    mean_keys = keys / n_times
    return TraceResult(
        fact_keys=[e.fact.key for e in batch.encoded], times=tuple(config.times),
        weights=weights, offsets=offsets, valid=valid, is_subject=is_subject,
        scored=rows.scored, ie=ie, tie=tie,
        clean_logp=clean_lp, corrupt_logp=corrupt_lp, layer=layer, offset_index=offset_index,
        position=posc[torch.arange(b), offset_index], max_tie=max_tie,
        flagged=flagged, traced=restore.clone(), keys=mean_keys,
        key_floor=torch.stack([torch.nn.functional.cosine_similarity(k, mean_keys, dim=-1)
                               for k in level_keys]).amin(0),
        clean_out=out_clean / n_times, corrupt_out=out_corrupt / n_times,
        noise_scale=scale, forwards=forwards, seconds=time.monotonic() - start)


def trace_encoded(backbone: Backbone, encoded: Sequence[EncodedFact],
                  config: TimeROMEConfig, profile_layer: int | None = None,
                  stop_layer: int | None = None) -> TraceResult:
    """The facts' trace. With a traced sample (config tie_facts), the untraced facts take the
    sample's peak layer; with tie_facts 0 no fact is traced and every fact takes
    `profile_layer`, the peak of the backbone's TIE profile (`backbone_tie_profile`); then
    the runs of every level but the first stop after block `stop_layer` (the deepest layer
    the edit reads keys and deltas at; None: every block runs)."""
    if not encoded:
        raise ValueError("trace: no facts given")
    if config.tie_facts == 0 and profile_layer is None:
        raise ValueError("trace: tie_facts 0 takes every fact's layer from the backbone's TIE "
                         "profile, and none was given (profile_layer; TimeROMEEditor computes "
                         "it from its retain facts or loads it from the backbone statistics)")
    for name, layer in (("profile_layer", profile_layer), ("stop_layer", stop_layer)):
        if layer is not None and not 0 <= layer < backbone.num_layers:
            raise ValueError(f"trace: {name} {layer} is not a layer of {backbone.name} "
                             f"(0..{backbone.num_layers - 1})")
    if stop_layer is not None and (config.tie_facts != 0 or stop_layer < profile_layer):
        raise ValueError("trace: stop_layer needs tie_facts 0 and must not lie below "
                         "profile_layer (the layers read must be computed)")
    offsets = candidate_offsets(encoded, config)
    scale = noise_scale(backbone, config.noise_multiplier)
    # Chunks of equal-width facts, each row padded to its own width: a fact's trace does not
    # depend on which facts are traced with it (batching.batches).
    chunks = list(batches(backbone, encoded, config.fact_batch))
    traced = traced_sample([e.fact.key for e in encoded], config.tie_facts, config.seed)
    parts = [_trace_batch(backbone, batch, offsets, scale, config,
                          traced[torch.tensor(rows, dtype=torch.long)], stop_layer)
             for rows, batch in chunks]
    order = torch.tensor([i for rows, _ in chunks for i in rows])
    trace = concat_traces(parts).select(order.argsort().tolist())
    if bool(trace.traced.all()):
        return trace
    if not bool(trace.traced.any()):
        trace.layer[:] = profile_layer
        return trace
    return _share_layer(trace)


def traced_sample(keys: Sequence[str], limit: int | None, seed: int) -> torch.Tensor:
    """[F] bool: the facts that get restored runs. Every fact when `limit` is None or not
    below F; else the `limit` facts whose (seed, key) digest is smallest, so the choice
    depends on the seed and the keys only, not on their order or on the other facts."""
    if limit is None or limit >= len(keys):
        return torch.ones(len(keys), dtype=torch.bool)
    digest = [hashlib.sha256(f"{seed}:{key}".encode()).hexdigest() for key in keys]
    chosen = sorted(range(len(keys)), key=lambda i: (digest[i], i))[:limit]
    out = torch.zeros(len(keys), dtype=torch.bool)
    out[chosen] = True
    return out


def layer_profile(trace: TraceResult) -> torch.Tensor:
    """[L] the traced facts' TIE, maximised over positions and averaged over the unflagged
    traced facts (all traced facts if every one is flagged); nan at a layer no traced fact
    has a position at."""
    traced = trace.traced
    if not bool(traced.any()):
        raise ValueError("layer profile: no fact of the trace has restored runs")
    profile = trace.tie.nan_to_num(nan=float("-inf")).amax(2)  # [F, L]: max over positions
    profile[profile.isinf()] = float("nan")  # a layer with no traced position
    use = traced & ~trace.flagged
    return profile[use if bool(use.any()) else traced].nanmean(0)


def peak_layer(profile: torch.Tensor) -> int:
    """The layer where a `layer_profile` peaks."""
    if bool(profile.isnan().all()):
        raise ValueError("layer profile: no layer has a finite TIE")
    return int(profile.nan_to_num(nan=float("-inf")).argmax())


def _share_layer(trace: TraceResult) -> TraceResult:
    """Coordinates of the untraced facts (config tie_facts): the layer where the traced
    facts' profile (`layer_profile`) peaks. Their position (the last subject token), nan
    max TIE and flag were set by `_trace_batch`."""
    trace.layer[~trace.traced] = peak_layer(layer_profile(trace))
    return trace


def backbone_tie_profile(backbone: Backbone, facts: Sequence[Fact],
                         config: TimeROMEConfig) -> torch.Tensor:
    """[L] the backbone's TIE profile (`layer_profile`) over a seeded sample of
    `config.profile_facts` of `facts` (retain facts: it does not depend on any forget set),
    every one traced. Edits with tie_facts 0 take its peak layer for every fact."""
    if not facts:
        raise ValueError("backbone TIE profile: no facts given (it is traced on retain facts)")
    sample = traced_sample([f.key for f in facts], config.profile_facts, config.seed)
    chosen = [f for f, keep in zip(facts, sample.tolist()) if keep]
    trace = trace_facts(backbone, chosen, config.with_overrides(tie_facts=None))
    profile = layer_profile(trace)
    peak_layer(profile)  # a profile without a finite layer fails here, not in an edit
    return profile


def trace_facts(backbone: Backbone, facts: Sequence[Fact],
                config: TimeROMEConfig = TimeROMEConfig()) -> TraceResult:
    """TIE causal tracing of `facts` (deterministic for `config.seed`)."""
    return trace_encoded(backbone, encode_facts(backbone, facts), config)
