"""TimeROME-DLM runs on every twin: the edit moves the forget log-prob, undo restores it."""

from __future__ import annotations

import pytest
import torch

from harness.data.fact import Fact, SubjectSource
from harness.diffusion.scoring import score_facts
from harness.methods import get_method
from harness.methods.base import EditRequest
from tests.backbones.twin_cases import CASE_IDS, CASES

FORGET = [Fact("Where was Zarvo Keth born?", "Zarvo Keth was born in Brimholt.", "Zarvo Keth",
               SubjectSource.GIVEN, 0, "forget01", 0),
          Fact("Which award did Oswin Tarr win?", "Oswin Tarr won the Grey Quill Prize.",
               "Oswin Tarr", SubjectSource.GIVEN, 1, "forget01", 1)]
CONFIG = {"alpha": 50.0, "lam": 0.1, "times": [1.0], "noise_samples": 1,
          "target": "suppress", "flag_threshold": 0.0, "edit_flagged": True}


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_timerome_edit_changes_forget_logprob_and_undo_restores_it(twins, case):
    backbone = twins[case.name]
    before = score_facts(backbone, FORGET).logp
    outcome = get_method("timerome", CONFIG).apply(
        EditRequest(backbone=backbone, forget=FORGET, retain=[], seed=0))
    assert outcome.undo is not None
    try:
        edited = score_facts(outcome.backbone, FORGET).logp
    finally:
        outcome.undo()
    # Random-weight twins: the edit's effect is small but far above float noise (~1e-5).
    assert (edited - before).abs().max().item() > 1e-3, (before, edited)
    restored = score_facts(backbone, FORGET).logp
    assert torch.equal(restored, before)
