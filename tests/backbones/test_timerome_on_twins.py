"""TimeROME-DLM runs on every twin: the edit lowers the forget log-prob, undo restores it."""

from __future__ import annotations

import pytest
import torch

from harness.data.fact import Fact, SubjectSource
from harness.evaluation.answer_logprob import score_facts
from harness.methods import get_method
from harness.methods.base import EditRequest
from tests.backbones.conftest import build_twin
from tests.backbones.twin_cases import CASE_IDS, CASES
from tests.timerome.conftest import fit_masked_diffusion

FORGET = [Fact("Where was Zarvo Keth born?", "Zarvo Keth was born in Brimholt.", "Zarvo Keth",
               SubjectSource.GIVEN, 0, "forget01", 0),
          Fact("Which award did Oswin Tarr win?", "Oswin Tarr won the Grey Quill Prize.",
               "Oswin Tarr", SubjectSource.GIVEN, 1, "forget01", 1)]
# The plain (ungated, unpreconditioned) memory at each fact's own TIE layer: no retain facts
# are needed, and the effect on the forget facts is the edit's alone.
CONFIG = {"alpha": 50.0, "lam": 0.1, "times": [1.0], "noise_samples": 1,
          "target": "suppress", "flag_threshold": 0.0, "edit_flagged": True,
          "precondition": "none", "gate": False, "positions": "subject", "tie_facts": None}
FIT_STEPS = 100
# Nats per fact. Measured with FIT_STEPS 100: every twin's smallest drop is above 20 nats
# (random-weight twins, not fitted, move it by under 0.4 nats, in either direction).
MIN_DROP = 10.0


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_timerome_edit_lowers_forget_logprob_and_undo_restores_it(case):
    backbone = build_twin(case)  # its own copy: fitted below
    fit_masked_diffusion(backbone, FORGET, steps=FIT_STEPS)
    before = score_facts(backbone, FORGET).logp
    outcome = get_method("timerome", CONFIG).apply(
        EditRequest(backbone=backbone, forget=FORGET, retain=[], seed=0))
    assert outcome.undo is not None
    try:
        edited = score_facts(outcome.backbone, FORGET).logp
    finally:
        outcome.undo()
    drop = before - edited
    assert bool((drop > MIN_DROP).all()), (before, edited)
    restored = score_facts(backbone, FORGET).logp
    assert torch.equal(restored, before)
