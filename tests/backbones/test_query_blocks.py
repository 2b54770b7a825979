"""Blocks that compute at query positions only (`ModelFamily.query_blocks`): the output at
those positions is the full block's, for every layer of every family that claims it; the
families on transformers decoder classes do not claim it."""

from __future__ import annotations

import pytest
import torch

from harness.hooks import block_queries, forward_hook, skipped_forwards
from tests.backbones.test_twin_structure import sample_ids
from tests.backbones.twin_cases import CASE_IDS, CASES

QUERY_FAMILIES = {"llada-8b-base-twin", "llada-8b-instruct-twin", "mmada-8b-twin",
                  "llada-moe-twin"}


def _block_output(backbone, layer: int, ids: torch.Tensor, queries=None) -> torch.Tensor:
    """Block `layer`'s output on `ids` (blocks above it skipped when `queries` is given)."""
    seen = []
    block = backbone.blocks()[layer]
    with torch.no_grad(), forward_hook(block, lambda m, i, out: seen.append(out)):
        if queries is None:
            backbone.logits(ids)
        else:
            width = backbone.input_embeddings().weight.shape[1]
            filler = torch.zeros((*ids.shape, width))
            with skipped_forwards(backbone.blocks()[layer + 1:], filler), \
                    block_queries(block, queries):
                backbone.logits(ids)
    return seen[0]


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_a_queried_block_returns_the_full_blocks_output_at_the_queries(twins, case):
    backbone = twins[case.name]
    assert backbone.query_blocks == (case.name in QUERY_FAMILIES)
    if not backbone.query_blocks:
        return
    ids = sample_ids(backbone)
    width = ids.shape[1]
    queries = torch.tensor([[3, 1, width - 1], [5, 0, 2]])  # per row, any order, any place
    for layer in range(backbone.num_layers):
        full = _block_output(backbone, layer, ids)
        part = _block_output(backbone, layer, ids, queries)
        assert part.shape == (2, 3, full.shape[-1])
        expected = full[torch.arange(2).unsqueeze(1), queries]
        assert torch.allclose(part, expected, atol=1e-6, rtol=1e-5), layer


def test_block_queries_is_removed_on_exit_and_on_error(twins):
    backbone = twins["llada-8b-base-twin"]
    block = backbone.blocks()[0]
    with pytest.raises(RuntimeError, match="boom"):
        with block_queries(block, torch.zeros((1, 1), dtype=torch.long)):
            raise RuntimeError("boom")
    assert not block._forward_pre_hooks
    ids = sample_ids(backbone)
    with torch.no_grad():
        assert backbone.logits(ids).shape[:2] == ids.shape  # full blocks again
