"""The paraphrase experiment: each fact asked with its paraphrased question (shipped or
derived from its relation), and an edit scored four ways with the model unchanged after."""

from __future__ import annotations

import pytest
import torch

from experiments import paraphrase_twin
from harness.data import load_split
from harness.data.synth import paraphrased_question
from harness.evaluation.answer_logprob import score_facts
from harness.jobs.selection import FactSelection


def test_paraphrased_keeps_the_answer_and_asks_the_relation_s_other_question(tiny_corpus_dir):
    shipped = load_split(tiny_corpus_dir, "forget01_perturbed")
    plain = load_split(tiny_corpus_dir, "retain99")[:6]
    got = paraphrase_twin.paraphrased(shipped + plain)
    assert [f.question for f in got[:len(shipped)]] == [f.paraphrased_question for f in shipped]
    assert [f.question for f in got[len(shipped):]] == [
        paraphrased_question(f.question, f.subject) for f in plain]
    assert [f.answer for f in got] == [f.answer for f in shipped + plain]
    assert all(g.question != f.question for g, f in zip(got, shipped + plain))
    odd = plain[0].__class__(**{**vars(plain[0]), "question": "Who edits it?"})
    assert paraphrase_twin.paraphrased([odd]) == []


def test_an_edit_is_scored_four_ways_and_undone(tiny_corpus_dir, finetuned_backbone):
    backbone = finetuned_backbone
    forget = load_split(tiny_corpus_dir, "forget01")
    retain = load_split(tiny_corpus_dir, "retain99")
    selection = FactSelection(forget, retain[8:24], retain[:8], "forget01")
    before = score_facts(backbone, forget).logp.clone()
    variant = {"times": [1.0, 0.5], "noise_samples": 2, "alpha": 4.0, "gate": False,
               "precondition": "none", "sites": "subject", "positions": "subject"}
    out = paraphrase_twin.edit(backbone, selection, {"subject": variant})
    assert out["facts"] == {"forget": len(forget), "forget_paraphrased": len(forget),
                            "retain": 8, "retain_paraphrased": 8}
    assert set(out["subject"]) == {"forget", "forget_paraphrased", "retain",
                                   "retain_paraphrased"}
    assert out["subject"]["forget"] < -0.1  # the edit moved the forget answers
    assert torch.equal(score_facts(backbone, forget).logp, before)
    table = paraphrase_twin.markdown({backbone.name: out})
    assert "| subject (Δ) |" in table and table.count("\n") == 3
