"""Contracts of the shared layer: adapter registry, fact encoding and batch layout."""

from __future__ import annotations

import pytest
import torch

from harness.backbones import BackboneSpec, load_backbone
from harness.backbones.registry import adapter_class
from harness.data.fact import Fact, SubjectSource
from harness.diffusion.batching import collate, encode_fact, encode_facts
from harness.methods import get_method

TEXTS = ["Question: Where was Zarvo Keth born?\nAnswer: Zarvo Keth was born in Brimholt."] * 4


@pytest.fixture(scope="module")
def backbone():
    spec = BackboneSpec(name="tiny", adapter="llada-twin", options={"size": "tiny", "vocab_size": 300})
    return adapter_class("llada-twin").initial(spec, TEXTS, 0)


def fact(question: str, answer: str, subject: str | None, index: int = 0) -> Fact:
    source = SubjectSource.GIVEN if subject else SubjectSource.FALLBACK_LAST_TOKEN
    return Fact(question, answer, subject, source, 0, "full", index)


def test_unknown_adapter_names_the_backbone_and_known_adapters():
    with pytest.raises(KeyError, match="unknown backbone adapter 'nope' for backbone 'x'.*llada-twin"):
        load_backbone(BackboneSpec(name="x", adapter="nope"))


def test_unknown_method_lists_known_methods():
    with pytest.raises(KeyError, match="unknown method 'nope'"):
        get_method("nope")


def test_subject_positions_cover_exactly_the_subject_tokens(backbone):
    enc = encode_fact(backbone, fact("Where was Zarvo Keth born?", "Brimholt", "Zarvo Keth"))
    prompt = backbone.format_prompt("Where was Zarvo Keth born?")
    decoded = backbone.tokenizer.decode([enc.prompt_ids[i] for i in enc.subject_positions])
    assert decoded.strip() == "Zarvo Keth"
    assert max(enc.subject_positions) < len(enc.prompt_ids)
    assert "Zarvo Keth" in prompt


def test_fallback_subject_is_the_last_question_token(backbone):
    enc = encode_fact(backbone, fact("Where was Zarvo Keth born?", "Brimholt", None))
    assert len(enc.subject_positions) == 1
    assert backbone.tokenizer.decode([enc.prompt_ids[enc.subject_positions[0]]]).endswith("?")


def test_empty_answer_is_rejected_naming_the_fact(backbone):
    with pytest.raises(ValueError, match="full:3: empty answer"):
        encode_fact(backbone, fact("Where was Zarvo Keth born?", "  ", "Zarvo Keth", index=3))


def test_collate_layout_is_prompt_answer_then_eos_padding(backbone):
    facts = [fact("Where was Zarvo Keth born?", "Brimholt", "Zarvo Keth"),
             fact("Where was Zarvo Keth born?", "Zarvo Keth was born in Brimholt.", "Zarvo Keth", 1)]
    encoded = encode_facts(backbone, facts)
    batch = collate(backbone, encoded)
    eos = backbone.eos_token_id
    for r, e in enumerate(encoded):
        p, a = len(e.prompt_ids), len(e.answer_ids)
        assert batch.input_ids[r, :p].tolist() == list(e.prompt_ids)
        assert batch.input_ids[r, p:p + a].tolist() == list(e.answer_ids)
        assert torch.all(batch.input_ids[r, p + a:] == eos)
        assert batch.answer_mask[r].sum() == a
        assert batch.target_mask[r].sum() == batch.input_ids.shape[1] - p
        assert batch.last_subject_pos[r] == e.subject_positions[-1]
