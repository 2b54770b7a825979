"""The adapter's logit shift matches each family's own training convention.

Each twin is trained with its family's native objective (see copy_task.py: LLaDA's
aligned masked cross-entropy, or the transformers class's own shifted `labels=` loss), not
through the adapter; `backbone.logits` must then read the masked token where that
objective put it, and reading with the opposite shift must score it clearly lower.
"""

from __future__ import annotations

import pytest

from tests.backbones.conftest import build_twin
from tests.backbones.copy_task import read_scores, train_native
from tests.backbones.twin_cases import CASES

# One case per distinct (model family, convention); Instruct/MMaDA share LLaDA's module code.
SHIFT_CASES = [c for c in CASES if c.name in
               ("llada-8b-base-twin", "dream-7b-twin", "diffullama-7b-twin", "llada-moe-twin")]


@pytest.mark.parametrize("case", SHIFT_CASES, ids=[c.name for c in SHIFT_CASES])
def test_adapter_shift_reads_the_natively_trained_prediction(case):
    backbone = build_twin(case, seed=0)
    train_native(backbone, case.native_loss, steps=60, lr=5e-3)
    right, wrong, accuracy = read_scores(backbone)
    assert accuracy >= 0.8, (right, wrong, accuracy)
    assert right > wrong + 0.5, (right, wrong)


@pytest.mark.parametrize("case", SHIFT_CASES, ids=[c.name for c in SHIFT_CASES])
def test_logits_at_equals_the_selected_rows_of_logits(case, twins):
    """`logits_at` runs the output head on the selected rows only; the rows must be exactly
    those of the full aligned logits, shift included (position 0 of a shifted model too)."""
    import torch

    backbone = twins[case.name]
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, backbone.emittable_vocab_size, (3, 11), generator=gen)
    positions = torch.rand(3, 11, generator=gen) < 0.4
    positions[0, 0] = positions[0, 1] = True  # both read raw row 0 on a shifted model
    positions[2] = False  # a row with nothing selected
    with torch.no_grad():
        full = backbone.logits(ids)[positions]
        picked = backbone.logits_at(ids, positions)
    assert picked.shape == full.shape
    torch.testing.assert_close(picked, full, rtol=1e-5, atol=1e-5)
