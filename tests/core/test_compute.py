"""Compute accounting (harness/compute.py): the counter's token passes on known call
sequences, the analytic FLOPs against torch's FlopCounterMode on tiny twins, optimizer
state bytes, and the projection helpers."""

from __future__ import annotations

import copy

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from baselines.value_target import frozen
from harness.backbones.base import BackboneSpec
from harness.backbones.registry import adapter_class
from harness.compute import (ComputeCounter, ComputeCounts, PassTotals, model_shape,
                             optimizer_state_bytes, project_to, trace_row_scale)
from harness.finetune import corpus_texts
from harness.hooks import add_at_positions, skipped_forwards
from harness.measure import bookkeeping

# Analytic count vs FlopCounterMode: both count the same matmuls (linear layers, QK^T and
# softmax @ V, the head); neither counts norms, softmax, rotary or activations. Measured
# agreement on the twins is exact (ratio 1.000, docs/measurements/compute_accounting.md);
# the tolerance leaves room for kernels that torch counts differently in other versions.
AGREEMENT = 0.02
TWINS = ("llada-twin", "dream-twin", "llada-moe-twin")


@pytest.fixture(scope="module")
def twins(tiny_corpus) -> dict:
    """One fresh narrow twin per family (mutated by backward passes: not the shared ones)."""
    texts = corpus_texts(tiny_corpus)
    out = {}
    for adapter in TWINS:
        spec = BackboneSpec(name=adapter, adapter=adapter, options={"size": "narrow"})
        out[adapter] = adapter_class(adapter).initial(spec, texts, seed=0)
    return out


def ids_of(backbone, rows: int, width: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    return torch.randint(0, backbone.emittable_vocab_size, (rows, width), generator=gen)


def matmul_flops(fn) -> int:
    """FlopCounterMode's count of `fn()`. The CPU's fused attention kernel has no flop
    formula in torch (it counts 0), so attention runs on the math backend, whose two
    batched products are counted."""
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as mode:
        fn()
    return mode.get_total_flops()


def test_counter_counts_rows_tokens_head_rows_and_backward_passes(twins):
    backbone = twins["llada-twin"]
    selected = torch.zeros(2, 16, dtype=torch.bool)
    selected[:, 3:6] = True
    with ComputeCounter(backbone) as counter:
        with torch.no_grad():
            backbone.logits(ids_of(backbone, 3, 24))  # 72 positions, head on all 72
        backbone.logits_at(ids_of(backbone, 2, 16), selected).sum().backward()  # head on 6
    counts = counter.counts
    assert (counts.forward.forwards, counts.forward.rows) == (2, 5)
    assert counts.forward.tokens == 3 * 24 + 2 * 16
    assert counts.forward.token_width == 3 * 24 * 24 + 2 * 16 * 16
    assert counts.forward.head_rows == 72 + 6
    assert counts.backward_trained == PassTotals(1, 2, 32, 2 * 16 * 16, 6)
    assert counts.backward_frozen == PassTotals()
    summary = counter.summary()
    assert summary["forward_tokens"] == 104 and summary["backward_tokens"] == 32
    assert summary["optimizer_state_bytes"] == 0
    with torch.no_grad():
        backbone.logits(ids_of(backbone, 1, 8))  # after the block: not counted
    assert counter.counts.forward.forwards == 2
    assert not backbone.model._forward_hooks


def test_forwards_of_the_harness_bookkeeping_are_not_counted(twins):
    """Scoring a method does only for the harness (measure.bookkeeping: collapse guards,
    report scoring) is excluded from the edit's time and from its compute."""
    backbone = twins["llada-twin"]
    phases: dict[str, float] = {}
    with ComputeCounter(backbone) as counter, torch.no_grad():
        backbone.logits(ids_of(backbone, 2, 8))
        with bookkeeping(phases, "collapse_guard"):
            backbone.logits(ids_of(backbone, 5, 8))
        backbone.logits(ids_of(backbone, 1, 8))
    assert counter.counts.forward.tokens == 3 * 8 and counter.counts.forward.forwards == 2
    assert set(phases) == {"collapse_guard"}


def test_a_forward_that_skips_blocks_is_priced_by_the_blocks_it_computed(twins):
    """TimeROME's restored runs start at the restored layer (hooks.skipped_forwards): the
    trunk FLOPs of such a forward are those of the blocks that ran; the head ran in full."""
    backbone = twins["llada-twin"]
    blocks = list(backbone.blocks())
    ids = ids_of(backbone, 2, 8)
    with torch.no_grad():
        hidden = backbone.input_embeddings()(ids)
    with ComputeCounter(backbone) as full, torch.no_grad():
        backbone.logits(ids)
    with ComputeCounter(backbone) as part, torch.no_grad():
        with skipped_forwards(blocks[:2], hidden):
            backbone.logits(ids)
    shape, n = full.shape, len(blocks)
    trunk = shape.forward_flops(16, 2 * 8 * 8, 0)
    assert full.flops() == trunk + shape.forward_flops(0, 0, 16)
    assert part.flops() == pytest.approx(trunk * (n - 2) / n + shape.forward_flops(0, 0, 16))
    assert part.counts.forward.tokens == full.counts.forward.tokens == 16


def test_grad_enabled_forward_without_a_graph_is_not_a_backward_pass(twins):
    """Grad mode on but nothing requires grad (a frozen model scored outside no_grad): no
    graph is built, nothing can be backpropagated."""
    backbone = twins["llada-twin"]
    with ComputeCounter(backbone) as counter, frozen(backbone.model):
        backbone.logits(ids_of(backbone, 2, 8))
    assert counter.counts.forward.tokens == 16 and counter.counts.backward_tokens == 0


@pytest.mark.parametrize("adapter", TWINS)
def test_analytic_flops_match_flop_counter_mode(twins, adapter):
    backbone = twins[adapter]
    ids = ids_of(backbone, 3, 24)
    with ComputeCounter(backbone) as counter, torch.no_grad():
        measured = matmul_flops(lambda: backbone.logits(ids))
    assert counter.flops() == pytest.approx(measured, rel=AGREEMENT)

    selected = torch.zeros_like(ids, dtype=torch.bool)
    selected[:, 10:14] = True
    with ComputeCounter(backbone) as counter:  # forward + backward through trained weights
        measured = matmul_flops(lambda: backbone.logits_at(ids, selected).logsumexp(-1)
                                .sum().backward())
    backbone.model.zero_grad(set_to_none=True)
    assert counter.counts.backward_tokens == 72
    assert counter.flops() == pytest.approx(measured, rel=AGREEMENT)


def test_moe_counts_only_the_active_experts(twins):
    backbone = twins["llada-moe-twin"]
    shape = model_shape(backbone)
    matrices = sum(p.numel() for b in backbone.blocks() for p in b.parameters() if p.dim() >= 2)
    experts = sum(p.numel() for b in backbone.blocks() for p in b.mlp.experts.parameters())
    top_k, n_experts = backbone.blocks()[0].mlp.top_k, len(backbone.blocks()[0].mlp.experts)
    assert top_k < n_experts
    assert shape.active_matrix_params == matrices - experts + experts * top_k // n_experts


@pytest.mark.parametrize("layer", [0, 5])
def test_frozen_backward_is_an_upper_bound_of_one_forward(twins, layer):
    """ROME/MEMIT's value optimisation: only a delta at `layer` requires grad. The backward
    computes input gradients of the layers above it only: counted as one full forward, an
    upper bound that is tight at layer 0."""
    backbone = twins["llada-twin"]
    ids = ids_of(backbone, 3, 24)
    delta = torch.zeros(backbone.input_embeddings().weight.shape[1], requires_grad=True)
    at = [torch.full((3,), 2)]
    with ComputeCounter(backbone) as counter, frozen(backbone.model), \
            add_at_positions(backbone.mlp_out_proj(layer), delta, at):
        measured = matmul_flops(lambda: backbone.logits(ids).logsumexp(-1).sum().backward())
    counts = counter.counts
    assert counts.backward_frozen.tokens == 72 and counts.backward_trained.tokens == 0
    analytic = counter.flops()
    assert analytic == pytest.approx(2 * counts.forward_flops(counter.shape))
    assert measured <= analytic * (1 + AGREEMENT)
    if layer == 0:
        assert analytic == pytest.approx(measured, rel=0.05)


def test_a_deep_copy_of_the_model_reports_to_the_counter(twins):
    """NPO's frozen reference model is a deep copy taken inside the edit: its forwards are
    counted; after the block the copy counts nothing."""
    backbone = twins["llada-twin"]
    with ComputeCounter(backbone) as counter:
        reference = copy.deepcopy(backbone.model)
        with torch.no_grad():
            reference(ids_of(backbone, 2, 8))
    assert counter.counts.forward.tokens == 16
    with torch.no_grad():
        reference(ids_of(backbone, 2, 8))
    assert counter.counts.forward.tokens == 16


def test_optimizer_state_bytes_are_the_largest_state_an_optimizer_held(twins):
    backbone = twins["llada-twin"]
    params = [p for p in backbone.model.parameters()]
    n = sum(p.numel() for p in params)
    with ComputeCounter(backbone) as counter:
        small = torch.optim.Adam([torch.zeros(4, requires_grad=True)])
        small.param_groups[0]["params"][0].grad = torch.ones(4)
        small.step()
        optimizer = torch.optim.AdamW(params, lr=0.0)
        backbone.logits(ids_of(backbone, 1, 8)).sum().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    # AdamW: exp_avg and exp_avg_sq (float32) per parameter, and a float32 step per tensor.
    expected = 2 * 4 * n + 4 * len(params)
    assert optimizer_state_bytes(optimizer) == expected
    assert counter.optimizer_state_bytes == expected
    optimizer.step()  # after the block: not recorded
    with ComputeCounter(backbone) as idle:
        pass
    assert idle.optimizer_state_bytes == 0


def test_projection_reprices_the_same_passes(twins):
    shape = model_shape(twins["llada-twin"])
    counts = ComputeCounts(forward=PassTotals(1, 2, 64, 2 * 32 * 32, 64),
                           backward_trained=PassTotals(1, 2, 64, 2 * 32 * 32, 64))
    assert project_to(shape, counts) == 3 * shape.forward_flops(64, 2048, 64)
    bigger = type(shape)(n_layers=32, d_model=4096, d_attn=4096,
                         active_matrix_params=32 * 12 * 4096 * 4096, vocab=126464)
    assert project_to(bigger, counts) > 1000 * project_to(shape, counts)
    assert project_to(shape, counts, row_scale=2.0) == 2 * project_to(shape, counts)
    assert trace_row_scale(6, 32, 3) == pytest.approx((1 + 32 * 3) / (1 + 6 * 3))
    assert ComputeCounts.from_dict(counts.to_dict()) == counts
