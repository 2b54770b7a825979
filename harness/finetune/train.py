"""Build, fine-tune and save a backbone on a TOFU-format corpus (the "TOFU model").

The training set is the `full` split plus the general-knowledge splits
(real_authors_perturbed, world_facts_perturbed; they stand in for pretraining knowledge),
minus the facts of `exclude_splits`: excluding the forget split gives TOFU's *retain
model*, the reference for the forget-quality metric. The tokenizer of an embedded model
is trained on every text of every split, whatever is excluded, so that the full and the
retain model share it (as TOFU's models share their pretrained tokenizer).
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Iterable, Sequence

from harness.backbones.base import Backbone, BackboneSpec, spec_to_dict
from harness.backbones.registry import adapter_class
from harness.data import available_splits, load_corpus
from harness.data.fact import Fact
from harness.finetune.config import FinetuneConfig, FinetuneReport
from harness.finetune.loop import finetune
from harness.atomic import write_json_atomic

TRAIN_SPLITS: tuple[str, ...] = ("full", "real_authors_perturbed", "world_facts_perturbed")
REPORT_FILE = "finetune_report.json"


def _fact_id(fact: Fact) -> tuple[str, str]:
    return fact.question, fact.answer


def training_facts(corpus: dict[str, list[Fact]], exclude_splits: Sequence[str] = (),
                   train_splits: Sequence[str] = TRAIN_SPLITS
                   ) -> tuple[list[Fact], dict[str, int], int]:
    """(facts, per-split counts, number excluded) of the training set of `corpus`."""
    missing = [s for s in (*train_splits, *exclude_splits) if s not in corpus]
    if missing:
        raise KeyError(f"corpus lacks split(s) {', '.join(missing)} needed for fine-tuning")
    excluded = {_fact_id(f) for s in exclude_splits for f in corpus[s]}
    facts: list[Fact] = []
    counts: dict[str, int] = {}
    dropped = 0
    for split in train_splits:
        kept = [f for f in corpus[split] if _fact_id(f) not in excluded]
        dropped += len(corpus[split]) - len(kept)
        counts[split] = len(kept)
        facts += kept
    if exclude_splits and dropped == 0:
        raise ValueError(f"excluded split(s) {', '.join(exclude_splits)} share no fact with "
                         f"the training splits {', '.join(train_splits)}")
    return facts, counts, dropped


def corpus_texts(corpus: dict[str, list[Fact]]) -> list[str]:
    """Every question/answer text of the corpus, in a fixed order (tokenizer training)."""
    texts: list[str] = []
    for split in sorted(corpus):
        for f in corpus[split]:
            texts += [f.question, f.answer]
            texts += [t for t in (f.paraphrased_question, f.paraphrased_answer) if t]
            texts += list(f.perturbed_answers)
    return texts


def initial_backbone(spec: BackboneSpec, texts: Iterable[str], seed: int) -> Backbone:
    return adapter_class(spec.adapter).initial(spec, list(texts), seed)  # type: ignore[attr-defined]




def train_backbone(spec: BackboneSpec, tofu_dir: str | os.PathLike, out_dir: str | os.PathLike,
                   cfg: FinetuneConfig = FinetuneConfig(), exclude_splits: Sequence[str] = (),
                   progress: bool = True, train_splits: Sequence[str] = TRAIN_SPLITS
                   ) -> FinetuneReport:
    """Initial backbone -> fine-tuned on the corpus -> saved to `out_dir` with its report.

    `train_splits` defaults to full + the general-knowledge splits; tests may narrow it."""
    corpus = load_corpus(tofu_dir, available_splits(tofu_dir))
    facts, counts, dropped = training_facts(corpus, exclude_splits, train_splits)
    backbone = initial_backbone(spec, corpus_texts(corpus), cfg.seed)
    report = finetune(backbone, facts, cfg, progress=progress)
    out = Path(out_dir)
    backbone.save_pretrained(str(out))
    report.splits = counts
    report.excluded_splits = list(exclude_splits)
    report.excluded_facts = dropped
    report.backbone = spec_to_dict(replace(spec, path=str(out)))
    report.checkpoint_dir = str(out)
    write_json_atomic(out / REPORT_FILE, {**report.to_dict(), "tofu_dir": str(tofu_dir)})
    return report
