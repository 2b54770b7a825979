"""Input length limits come from the backbone's config (`Backbone.max_positions`) and are
checked when a fact is encoded, before any forward: a 3000-word answer on a twin whose
context is 1024 positions used to run (77 s and 3.8 GB on a tiny twin) instead of failing."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from harness.backbones import BackboneSpec, load_backbone
from harness.backbones.base import Backbone
from harness.backbones.registry import adapter_class
from harness.data.fact import Fact, SubjectSource
from harness.diffusion.batching import InputTooLong, encode_fact
from harness.diffusion.sampling import DEFAULT_EXTRA_TOKENS, sample_answers
from harness.evaluation.answer_logprob import score_facts

TEXTS = ["Where was Zarvo Keth born? Zarvo Keth was born in Brimholt.",
         "Which award did Oswin Tarr win? Oswin Tarr won the Grey Quill Prize."] * 4
# The upstream field each family reads its context length from.
FIELDS = {"llada-twin": "max_sequence_length", "mmada-twin": "max_sequence_length",
          "dream-twin": "max_position_embeddings", "diffullama-twin": "max_position_embeddings",
          "llada-moe-twin": "max_position_embeddings"}
ADAPTERS = sorted(FIELDS)


def twin(adapter: str = "llada-twin"):
    spec = BackboneSpec(name=adapter, adapter=adapter,
                        options={"size": "micro", "vocab_size": 320})
    torch.set_num_threads(1)
    return adapter_class(adapter).initial(spec, TEXTS, 0)


def fact(answer: str) -> Fact:
    return Fact("Where was Zarvo Keth born?", answer, "Zarvo Keth", SubjectSource.GIVEN, 0,
                "forget01", 7)


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_max_positions_is_read_from_the_family_config(adapter, tmp_path):
    backbone = twin(adapter)
    expected = getattr(backbone.model_config, FIELDS[adapter])
    assert isinstance(expected, int) and expected > 0
    assert backbone.max_positions == expected
    backbone.save_pretrained(str(tmp_path / "ckpt"))
    real = adapter.replace("-twin", "-hf")
    loaded = load_backbone(BackboneSpec(name="x", adapter=real, path=str(tmp_path / "ckpt")))
    assert loaded.max_positions == expected


def test_base_backbone_has_no_limit_by_default():
    assert Backbone.max_positions.fget(object()) is None


def test_long_answer_fails_by_name_before_any_forward(monkeypatch):
    backbone = twin()
    limit = backbone.max_positions

    def no_forward(*args, **kwargs):
        raise AssertionError("a forward ran on an input longer than the backbone's context")

    monkeypatch.setattr(backbone.model, "forward", no_forward)
    long = fact(" ".join(["Brimholt"] * 3000))
    with pytest.raises(InputTooLong,
                       match=rf"^fact forget01:7: \d+ tokens exceed the backbone's "
                             rf"max_positions {limit}") as info:
        score_facts(backbone, [long])
    assert info.value.n_tokens > limit and info.value.max_positions == limit
    with pytest.raises(InputTooLong):
        sample_answers(backbone, [long])


def test_limit_counts_prompt_answer_eos_and_generation_extra():
    backbone = twin()
    short = fact("Brimholt town.")
    encoded = encode_fact(backbone, short)
    needed = len(encoded.prompt_ids) + len(encoded.answer_ids) + 1 + DEFAULT_EXTRA_TOKENS
    backbone.model_config = dataclasses.replace(backbone.model_config,
                                                max_sequence_length=needed)
    assert backbone.max_positions == needed
    encode_fact(backbone, short)  # exactly fits
    backbone.model_config = dataclasses.replace(backbone.model_config,
                                                max_sequence_length=needed - 1)
    with pytest.raises(InputTooLong, match=rf"{needed} tokens exceed the backbone's "
                                           rf"max_positions {needed - 1}"):
        encode_fact(backbone, short)
