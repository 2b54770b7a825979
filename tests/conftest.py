"""Shared session fixtures: a tiny synthetic corpus and tiny embedded backbones.

- `tiny_corpus_dir` / `tiny_corpus`: write_synthetic(12 authors x 4 facts, seed 0, "restated"
  answers, the style the fixtures' recipes were tuned on) and its `load_corpus` dict.
- `random_backbone`: embedded-llada "tiny", random weights, tokenizer trained on the corpus.
- `finetuned_checkpoint_dir`: that model fine-tuned (harness.finetune.train_backbone) on
  the `full` split (48 facts; the general-knowledge splits are left out to keep the
  suite fast) until it memorises it; saved once per session.
- `make_finetuned_backbone()`: a fresh copy loaded from the checkpoint (safe to mutate).
- `finetuned_backbone`: one shared loaded copy. Tests must NOT mutate it (weights, hooks
  left behind); use `make_finetuned_backbone()` for that.
- `retain_checkpoint_dir`: the same recipe without the `forget10` split (retain model).
Session fixtures are built lazily: a test run that does not use them does not pay for them.

Torch runs single-threaded in tests (override with TIMEROME_TEST_THREADS=N): the models
are tiny, and on a loaded 2-core machine multi-threaded kernels are many times slower.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Callable

import os

os.environ.setdefault("RAYON_NUM_THREADS", "1")  # tokenizer training threads (see above)

import pytest  # noqa: E402
import torch  # noqa: E402

from harness.backbones.base import Backbone, BackboneSpec
from harness.backbones.registry import adapter_class, load_backbone
from harness.data import load_corpus, write_synthetic
from harness.finetune import FinetuneConfig, corpus_texts, train_backbone

torch.set_num_threads(int(os.environ.get("TIMEROME_TEST_THREADS", "1")))

TINY_SPEC = BackboneSpec(name="tiny-embedded", adapter="llada-twin",
                         options={"size": "tiny", "vocab_size": 1024})
# Recipe that makes the tiny model memorise the tiny corpus's 48 `full` facts.
TINY_FINETUNE = FinetuneConfig(epochs=200, lr=3e-3, batch_size=16, warmup_ratio=0.05, eps=0.3)
TINY_TRAIN_SPLITS = ("full",)
RETAIN_EXCLUDED_SPLIT = "forget10"


@pytest.fixture(scope="session")
def tiny_corpus_dir(tmp_path_factory) -> Path:
    return write_synthetic(tmp_path_factory.mktemp("tiny_corpus"), authors=12,
                           facts_per_author=4, seed=0, answer_style="restated")


@pytest.fixture(scope="session")
def tiny_corpus(tiny_corpus_dir) -> dict:
    return load_corpus(tiny_corpus_dir)


@pytest.fixture(scope="session")
def random_backbone(tiny_corpus) -> Backbone:
    """Random-weight tiny model; shared: do not mutate."""
    return adapter_class(TINY_SPEC.adapter).initial(TINY_SPEC, corpus_texts(tiny_corpus), 0)


def _train(tmp_path_factory, corpus_dir: Path, name: str, exclude: tuple[str, ...]) -> Path:
    out = tmp_path_factory.mktemp(name) / "checkpoint"
    with torch.random.fork_rng():
        train_backbone(TINY_SPEC, corpus_dir, out, TINY_FINETUNE, exclude_splits=exclude,
                       progress=False, train_splits=TINY_TRAIN_SPLITS)
    return out


@pytest.fixture(scope="session")
def finetuned_checkpoint_dir(tmp_path_factory, tiny_corpus_dir) -> Path:
    return _train(tmp_path_factory, tiny_corpus_dir, "tiny_finetuned", ())


@pytest.fixture(scope="session")
def retain_checkpoint_dir(tmp_path_factory, tiny_corpus_dir) -> Path:
    return _train(tmp_path_factory, tiny_corpus_dir, "tiny_retain", (RETAIN_EXCLUDED_SPLIT,))


def load_checkpoint(directory: Path) -> Backbone:
    return load_backbone(replace(TINY_SPEC, path=str(directory)))


@pytest.fixture(scope="session")
def make_finetuned_backbone(finetuned_checkpoint_dir) -> Callable[[], Backbone]:
    """Factory: each call loads a fresh, independent copy of the fine-tuned model."""
    return lambda: load_checkpoint(finetuned_checkpoint_dir)


@pytest.fixture(scope="session")
def finetuned_backbone(make_finetuned_backbone) -> Backbone:
    """Shared fine-tuned model; do not mutate (use make_finetuned_backbone())."""
    return make_finetuned_backbone()
