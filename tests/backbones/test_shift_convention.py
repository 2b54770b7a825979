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
