"""The subject-ablation experiment: its interventions act at the subject tokens only, the
embedding `mask` row equals scoring questions whose subject tokens are the mask token, and
the model is unchanged afterwards."""

from __future__ import annotations

import torch

from experiments import subject_ablation
from harness.data import load_split
from harness.diffusion.batching import batches, encode_facts
from harness.evaluation.answer_logprob import full_mask_logprob


def test_masking_the_subject_embeddings_equals_mask_tokens_in_the_question(
        tiny_corpus_dir, finetuned_backbone):
    backbone = finetuned_backbone
    facts = load_split(tiny_corpus_dir, "forget01")
    emb = backbone.input_embeddings()
    mask_row = emb.weight[backbone.mask_token_id].detach()
    got = subject_ablation.answer_logp(backbone, facts, emb,
                                        lambda rows: mask_row.expand_as(rows))
    want = torch.zeros(len(facts))
    for rows, batch in batches(backbone, encode_facts(backbone, facts), 64):
        ids = batch.input_ids.masked_fill(batch.subject_mask, backbone.mask_token_id)
        with torch.inference_mode():
            want[torch.tensor(rows)] = full_mask_logprob(
                backbone, type(batch)(**{**vars(batch), "input_ids": ids})).float()
    assert torch.allclose(got, want, atol=1e-4)
    base = subject_ablation.answer_logp(backbone, facts)
    assert float((got - base).abs().max()) > 0.1  # the subject matters to this model


def test_every_site_is_measured_and_the_model_is_unchanged_afterwards(
        tiny_corpus_dir, finetuned_backbone):
    backbone = finetuned_backbone
    facts = load_split(tiny_corpus_dir, "forget01")
    before = subject_ablation.answer_logp(backbone, facts)
    rows = subject_ablation.run(backbone, facts)
    assert [(r["site"], r["change"]) for r in rows[:3]] == [
        ("embeddings", "mask"), ("embeddings", "zero"), ("embeddings", "noise")]
    assert len(rows) == 3 + 3 * backbone.num_layers
    assert all(len(r["per_fact"]) == len(facts) for r in rows)
    # negating an MLP output at the subject tokens changes the answers' log-probability
    assert any(abs(r["forget_drop"]) > 1e-3 for r in rows if r["change"] == "negate")
    assert torch.equal(subject_ablation.answer_logp(backbone, facts), before)
    table = subject_ablation.markdown({backbone.name: rows})
    assert table.count("\n") == 2 and "mlp0 (strongest)" in table
