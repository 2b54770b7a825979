"""Compute of a code region on a backbone: token passes and analytic FLOPs.

`ComputeCounter(backbone)` is a context manager that puts ONE forward hook (through
`harness.hooks`) on the backbone's top module `backbone.model`. Every backbone forward goes
through it (`NativeBackbone.raw_logits` calls `self.model(input_ids, attention_mask)`;
`logits_at` is the same call with a hook on the final norm that keeps the selected rows).
Per forward the hook reads only tensor shapes and flags (no device sync):

- rows B and width L of `input_ids` (the positions the trunk computes, padding included);
- head rows H: the logits rows the output head computed (`output.shape[:-1]`: B x L for
  `logits`, the N selected rows for `logits_at`);
- whether the forward built an autograd graph (`torch.is_grad_enabled()` and the output
  requires grad). Such a forward is counted as a forward AND a backward token pass: in the
  project's methods every grad-enabled forward is backpropagated (the gradient baselines'
  `baselines/training.py` loop, ROME/MEMIT's value optimisation `baselines/value_target.py`;
  the one exception is the training loop's micro-batch whose loss is non-finite, after
  which the run stops as collapsed). Forwards under `no_grad`/`inference_mode` (scoring,
  convergence checks, tracing, key extraction) are forward passes only.
  A backward through trained weights costs 2x its forward (input and weight gradients);
  one through frozen weights (only an activation, e.g. ROME's delta, requires grad) costs
  at most 1x (input gradients only, and only above the edited layer: counted as 1x, an
  upper bound).

Optimizer state: while the block runs, a step hook on every torch optimizer (torch's
global `register_optimizer_step_post_hook`; removed on exit) records the bytes of each
optimizer's `state` tensors after each step; `optimizer_state_bytes` is the largest state
one optimizer held (AdamW of the gradient baselines: 2 x the trained parameters + step
counters; ROME/MEMIT's Adam on one delta vector; TimeROME uses none: 0). No method file
needs to report it.

A deep copy of the hooked module carries the hook (torch copies `_forward_hooks`; the hook
is a plain closure, so the copy reports to the same counter): the frozen reference model
of NPO (`baselines.training.frozen_reference`) is counted too. A copy that outlives the
block stops counting when the block ends.

Analytic FLOPs (multiply-add = 2 FLOPs), per token position of a forward of width L:

    C_forward(L) = 2 N + 4 n_layer L d_attn        + 2 d_model V per head row

- 2N: Kaplan et al. 2020, "Scaling Laws for Neural Language Models", Table 1 (C_forward
  ~ 2N + 2 n_layer n_ctx d_attn, N the non-embedding parameters). N here is the number of
  weight-matrix entries (parameters with >= 2 dims) of the transformer blocks, read from the
  loaded module; for a mixture-of-experts layer only the ACTIVE experts count (each expert
  module list scaled by experts_per_token / n_experts; the router counts in full). Norm
  weights and biases (elementwise work) are left out, as in the matmul-only counts.
- attention: 4 n_layer L d_attn per token. Kaplan's table counts 2 n_layer n_ctx d_attn
  (the QK logits only, for a causal context); these models attend bidirectionally over all
  L positions and compute both QK^T and softmax(.)V, 2 L d_attn each per token and layer
  (Hoffmann et al. 2022, "Training Compute-Optimal Large Language Models", Appendix F,
  counts both "logits" and "attention reduction" the same way). d_attn = n_heads x
  head_dim = d_model in every family here (grouped key/value heads are repeated to the
  query heads before the products).
- head: 2 d_model V per head row (Kaplan's de-embedding row), V the output width; it is
  counted per row the head computed, since `logits_at` runs it on selected rows only.
- backward = 2 x forward (Kaplan et al. 2020, Section 2.1) when weights are trained;
  1 x forward when every weight is frozen (see above).

Softmax, norms, rotary and activation functions are not counted (a few FLOPs per element
against d_model per element for the matmuls). `tests/core/test_compute.py` compares this
count with `torch.utils.flop_counter.FlopCounterMode` (matmuls only) on tiny twins.

`project_to(shape, counts)` re-prices the same token passes on another model shape (the 8B
backbones): docs/measurements/compute_accounting.md says how and with which caveats.
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn
from torch.optim.optimizer import register_optimizer_step_post_hook

from harness.backbones.base import Backbone
from harness.hooks import forward_hooks, output_tensor, skipped_count
from harness.measure import in_bookkeeping

BACKWARD_PER_FORWARD_TRAINED = 2  # input + weight gradients (Kaplan et al. 2020, 2.1)
BACKWARD_PER_FORWARD_FROZEN = 1  # input gradients only (upper bound: every layer)


@dataclass(frozen=True)
class ModelShape:
    """What the analytic count needs to know about a model."""

    n_layers: int
    d_model: int
    d_attn: int  # query width n_heads x head_dim (= d_model in every family here)
    active_matrix_params: int  # N: block weight-matrix entries used per token (MoE: active)
    vocab: int  # output head width

    def forward_flops(self, tokens: int, token_width: int, head_rows: int) -> int:
        """FLOPs of forwards with `tokens` positions in all, sum over positions of their
        sequence's width `token_width` (sum of B x L^2), and `head_rows` head rows."""
        return (2 * self.active_matrix_params * tokens
                + 4 * self.n_layers * self.d_attn * token_width
                + 2 * self.d_model * self.vocab * head_rows)


def _is_expert_router(module: nn.Module) -> bool:
    """A mixture-of-experts layer: an `experts` module list and a `top_k` (the project's
    MoE module, harness/backbones/models/llada_moe.py `MoEMLP`)."""
    return isinstance(getattr(module, "experts", None), nn.ModuleList) \
        and isinstance(getattr(module, "top_k", None), int)


def _matrix_entries(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.dim() >= 2)


def active_matrix_params(blocks: nn.Module) -> int:
    """Weight-matrix entries of `blocks` one token uses: every matrix, except that each MoE
    layer's experts count top_k / n_experts of their entries (the router counts in full)."""
    total = _matrix_entries(blocks)
    for module in blocks.modules():
        if _is_expert_router(module):
            experts = _matrix_entries(module.experts)
            n_experts = len(module.experts)
            total -= experts - experts * module.top_k // n_experts
    return total


def shape_of(blocks: nn.Module, embeddings: torch.Tensor) -> ModelShape:
    """The shape of a model from its block list and its embedding table [V, d_model]
    (works on a model built on the meta device, e.g. an 8B config)."""
    d_model = int(embeddings.shape[1])
    return ModelShape(n_layers=len(blocks), d_model=d_model, d_attn=d_model,
                      active_matrix_params=active_matrix_params(blocks),
                      vocab=int(embeddings.shape[0]))


def model_shape(backbone: Backbone) -> ModelShape:
    """The backbone's shape for the analytic count, read from the loaded module."""
    blocks = backbone.blocks()
    container = blocks if isinstance(blocks, nn.Module) else nn.ModuleList(blocks)
    return shape_of(container, backbone.input_embeddings().weight)


@dataclass
class PassTotals:
    """Sums over forwards of one kind."""

    forwards: int = 0  # model calls
    rows: int = 0  # sequences
    tokens: int = 0  # token positions (rows x width)
    token_width: int = 0  # sum over positions of the sequence width (rows x width^2)
    head_rows: int = 0  # rows the output head computed
    # Of `tokens` / `token_width`, the share whose blocks were skipped: a forward that ran
    # only blocks l.. (harness.hooks.skipped_forwards: TimeROME's restored runs start at the
    # restored layer) adds rows x width x (skipped blocks / n_layers).
    skipped_tokens: float = 0.0
    skipped_token_width: float = 0.0

    def add(self, rows: int, width: int, head_rows: int, skipped_share: float = 0.0) -> None:
        self.forwards += 1
        self.rows += rows
        self.tokens += rows * width
        self.token_width += rows * width * width
        self.head_rows += head_rows
        if skipped_share:
            self.skipped_tokens += rows * width * skipped_share
            self.skipped_token_width += rows * width * width * skipped_share

    def flops(self, shape: ModelShape) -> int:
        """The trunk terms are linear in the token counts, so the blocks a forward skipped
        leave them in proportion; the head ran on its rows in every forward."""
        return round(shape.forward_flops(self.tokens - self.skipped_tokens,
                                         self.token_width - self.skipped_token_width,
                                         self.head_rows))


@dataclass
class ComputeCounts:
    """Token passes of a region: every forward, and the subsets that were backpropagated
    through trained weights / through frozen weights only."""

    forward: PassTotals = field(default_factory=PassTotals)
    backward_trained: PassTotals = field(default_factory=PassTotals)
    backward_frozen: PassTotals = field(default_factory=PassTotals)

    @property
    def forward_tokens(self) -> int:
        return self.forward.tokens

    @property
    def backward_tokens(self) -> int:
        return self.backward_trained.tokens + self.backward_frozen.tokens

    def forward_flops(self, shape: ModelShape) -> int:
        return self.forward.flops(shape)

    def backward_flops(self, shape: ModelShape) -> int:
        return (BACKWARD_PER_FORWARD_TRAINED * self.backward_trained.flops(shape)
                + BACKWARD_PER_FORWARD_FROZEN * self.backward_frozen.flops(shape))

    def flops(self, shape: ModelShape) -> int:
        return self.forward_flops(shape) + self.backward_flops(shape)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ComputeCounts":
        return cls(**{k: PassTotals(**data[k]) for k in ("forward", "backward_trained",
                                                          "backward_frozen")})


class ComputeCounter:
    """Counts the backbone's forwards (and the backward passes they imply) in a block.

        with ComputeCounter(backbone) as counter:
            outcome = method.apply(request)
        counter.summary()  # token passes, FLOPs, shape
    """

    def __init__(self, backbone: Backbone):
        self.backbone = backbone
        self.shape = model_shape(backbone)
        self.counts = ComputeCounts()
        self._active = False
        self._stack = ExitStack()
        self.optimizer_state_bytes = 0

    def _optimizer_step(self, optimizer: torch.optim.Optimizer, _args: Any, _kwargs: Any) -> None:
        if self._active:
            self.optimizer_state_bytes = max(self.optimizer_state_bytes,
                                             optimizer_state_bytes(optimizer))

    def _make_hook(self):
        """The hook: a plain closure (a deep copy of the model shares it, see above)."""
        counts = self.counts
        params = list(self.backbone.model.parameters())
        blocks = list(self.backbone.blocks())
        counter = self

        def hook(_module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
            if not counter._active:  # a deep copy that outlived the block
                return
            if in_bookkeeping():  # the harness's own scoring inside the edit (measure.py)
                return
            ids = args[0] if args else None
            logits = output_tensor(output)
            if ids is None:  # called with inputs_embeds: width from the logits
                rows, width = int(logits.shape[0]), int(logits.shape[1])
            else:
                rows, width = int(ids.shape[0]), int(ids.shape[1])
            head_rows = logits.numel() // logits.shape[-1]
            skipped = skipped_count(blocks) / len(blocks) if blocks else 0.0
            counts.forward.add(rows, width, head_rows, skipped)
            if torch.is_grad_enabled() and logits.requires_grad:
                trained = any(p.requires_grad for p in params)
                kind = counts.backward_trained if trained else counts.backward_frozen
                kind.add(rows, width, head_rows)

        return hook

    def __enter__(self) -> "ComputeCounter":
        self._stack.enter_context(forward_hooks([(self.backbone.model, self._make_hook())]))
        self._stack.callback(register_optimizer_step_post_hook(self._optimizer_step).remove)
        self._active = True
        return self

    def __exit__(self, *exc: Any) -> None:
        self._active = False
        self._stack.close()

    def flops(self) -> int:
        return self.counts.flops(self.shape)

    def summary(self) -> dict[str, Any]:
        """What a record keeps: token passes, FLOPs and the shape they were priced on."""
        return {"forward_tokens": self.counts.forward_tokens,
                "backward_tokens": self.counts.backward_tokens,
                "forward_flops": self.counts.forward_flops(self.shape),
                "backward_flops": self.counts.backward_flops(self.shape),
                "flops": self.flops(), "optimizer_state_bytes": self.optimizer_state_bytes,
                "counts": self.counts.to_dict(), "shape": asdict(self.shape)}


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes of the tensors an optimizer keeps per parameter (Adam: step, exp_avg,
    exp_avg_sq)."""
    return sum(value.numel() * value.element_size()
               for state in optimizer.state.values() for value in state.values()
               if isinstance(value, torch.Tensor))


def trace_row_scale(layers_from: int, layers_to: int, positions: float) -> float:
    """How TimeROME's trace rows grow from `layers_from` to `layers_to` layers: per fact,
    noise sample and masking level one corrupted row plus one restored row per (layer,
    traced position) (harness/timerome/tracing.py `_trace_batch`), i.e. 1 + L x P."""
    return (1 + layers_to * positions) / (1 + layers_from * positions)


def project_to(shape: ModelShape, counts: ComputeCounts, row_scale: float = 1.0) -> int:
    """FLOPs of the same token passes on a model of `shape` (e.g. an 8B backbone), each
    pass's width kept; `row_scale` multiplies every pass (TimeROME: `trace_row_scale`)."""
    return round(row_scale * counts.flops(shape))
