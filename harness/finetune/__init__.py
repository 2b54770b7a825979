"""TOFU-style masked-diffusion fine-tuning of a backbone (and of the retain-only model).

`python -m harness.finetune --help` for the command line.
"""

from harness.finetune.config import EMBEDDED_OPTIONS, FinetuneConfig, FinetuneReport
from harness.finetune.loop import finetune, lr_factor
from harness.finetune.train import REPORT_FILE, TRAIN_SPLITS, corpus_texts, train_backbone, training_facts

__all__ = ["EMBEDDED_OPTIONS", "FinetuneConfig", "FinetuneReport", "REPORT_FILE", "TRAIN_SPLITS",
           "corpus_texts", "finetune", "lr_factor", "train_backbone", "training_facts"]
