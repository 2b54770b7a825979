"""The embedded backbone is bidirectional and its checkpoints round-trip exactly."""

from __future__ import annotations

from dataclasses import replace

import torch

from harness.backbones.registry import load_backbone
from harness.diffusion.batching import collate, encode_facts


def test_changing_a_later_token_changes_earlier_logits(random_backbone, tiny_corpus):
    batch = collate(random_backbone, encode_facts(random_backbone, tiny_corpus["full"][:1]))
    ids = batch.input_ids
    last = int(batch.prompt_lengths[0] + batch.answer_lengths[0]) - 1
    changed = ids.clone()
    changed[0, last] = (ids[0, last] + 7) % len(random_backbone.tokenizer)
    with torch.inference_mode():
        a, b = random_backbone.logits(ids), random_backbone.logits(changed)
    earlier = (a[0, :last] - b[0, :last]).abs().amax(-1)
    # Every earlier position sees the change (a causal model would leave them all equal).
    assert bool((earlier > 1e-6).all()), earlier


def test_save_and_load_give_identical_logits(random_backbone, tiny_corpus, tmp_path):
    random_backbone.save_pretrained(str(tmp_path / "ckpt"))
    reloaded = load_backbone(replace(random_backbone.spec, path=str(tmp_path / "ckpt")))
    batch = collate(random_backbone, encode_facts(random_backbone, tiny_corpus["full"][:3]))
    with torch.inference_mode():
        assert torch.equal(random_backbone.logits(batch.input_ids),
                           reloaded.logits(batch.input_ids))
    assert reloaded.tokenizer.get_vocab() == random_backbone.tokenizer.get_vocab()
