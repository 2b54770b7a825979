"""Shared fixtures: a tiny embedded backbone fine-tuned on a tiny synthetic corpus."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from harness.backbones.base import BackboneSpec
from harness.backbones.registry import adapter_class, load_backbone
from harness.data import load_corpus, write_synthetic
from harness.finetune import FinetuneConfig, corpus_texts, finetune

N_TRAIN = 12  # facts the tiny model memorises: the last 2 are the forget set


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> dict:
    root = write_synthetic(tmp_path_factory.mktemp("bl_corpus"), authors=8, facts_per_author=5,
                           seed=1, answer_style="restated")
    return load_corpus(root)


@pytest.fixture(scope="session")
def tiny_facts(tiny_corpus) -> tuple[list, list]:
    """(forget, retain) facts, all of them in the tiny model's training set."""
    facts = tiny_corpus["full"][-N_TRAIN:]
    return facts[-2:], facts[:-2]


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_corpus, tiny_facts) -> Path:
    torch.manual_seed(0)
    spec = BackboneSpec(name="tiny", adapter="llada-twin",
                        options={"size": "tiny", "vocab_size": 1000})
    backbone = adapter_class("llada-twin").initial(spec, corpus_texts(tiny_corpus), 0)
    forget, retain = tiny_facts
    finetune(backbone, [*retain, *forget],
             FinetuneConfig(epochs=150, lr=3e-3, batch_size=12, warmup_ratio=0.05),
             progress=False)
    out = tmp_path_factory.mktemp("bl_tiny_model")
    backbone.save_pretrained(str(out))
    return out


@pytest.fixture
def tiny_backbone(tiny_model_dir):
    """A fresh copy of the fine-tuned tiny model (methods edit it in place)."""
    return load_backbone(BackboneSpec(name="tiny", adapter="llada-twin",
                                      path=str(tiny_model_dir)))
