"""Complete job descriptions, as the workflow passes them (every spec field given), for the
job tests; each test overrides what it is about."""

from __future__ import annotations

from pathlib import Path
from typing import Any

TINY_ENTRY = {"adapter": "llada-twin", "options": {"size": "tiny", "vocab_size": 384}}
EVALUATION = {"rouge": True, "gen_steps": None, "batch_size": 32, "forget_quality": True,
              "model_utility": True, "utility_size": 20}


def _backbone(model: str) -> dict[str, Any]:
    return {"backbone": "tiny", "backbone_entry": TINY_ENTRY, "backbone_path": model,
            "threads": 1}


def method_payload(model: str, tofu: str, out: str, method: str, **kw: Any) -> dict[str, Any]:
    """harness.jobs.run_method (MethodJob), Table 1 on forget05 of a tiny corpus."""
    evaluation = {**EVALUATION, **kw.pop("evaluation", {})}
    return {**_backbone(model), "experiment": "table1", "method": method, "method_config": {},
            "tofu_dir": tofu, "forget_split": "forget05", "retain_split": "retain95",
            "validation_split": "validation", "out": out, "n_facts": None, "max_n_facts": None, "retain_model_path": None,
            "tuned_config": None, "retain_eval_size": 6, "retain_train_size": 400,
            "eval_seed": 0, "seed": 0, "estimator": "full_mask", "target_forget_drop": None,
            "target_from_record": None, "evaluation": evaluation, "config_hash": "test",
            "statistics": None,
            **kw}


def tune_payload(model: str, tofu: str, out: str, **kw: Any) -> dict[str, Any]:
    """harness.jobs.tune (TuneJob)."""
    return {**_backbone(model), "tofu_dir": tofu, "validation_split": "validation",
            "retain_split": "retain95", "forget_split": "forget05", "retain_eval_size": 4,
            "retain_train_size": 8, "eval_seed": 0, "seed": 0,
            "grid": {"alpha": [8.0], "lam": [1.0], "q": [0.5, 1.0]}, "max_retain_drop": 1.0,
            "on_no_safe_point": "fail", "groups": 1, "method_config": {}, "out": out, **kw}


def sequential_payload(model: str, tofu: str, out: str, **kw: Any) -> dict[str, Any]:
    """harness.jobs.sequential (SequentialJob)."""
    return {**_backbone(model), "method": "timerome", "tofu_dir": tofu, "n_facts": 3,
            "eval_every": 1,
            "retain_eval_size": 4, "retain_train_size": 8, "eval_seed": 0, "seed": 0,
            "estimator": "full_mask", "batch_size": 32, "method_config": {},
            "tuned_config": None, "out": out, "config_hash": "test", **kw}


def tie_payload(model: str, tofu: str, out: str, **kw: Any) -> dict[str, Any]:
    """harness.jobs.tie (TieJob)."""
    return {**_backbone(model), "tofu_dir": tofu, "forget_split": "forget05", "n_facts": 2,
            "method_config": {}, "out": out, **kw}


def finetune_payload(tofu: str, out: str, **kw: Any) -> dict[str, Any]:
    """harness.jobs.finetune_backbone (FinetuneJob)."""
    return {"backbone": "tiny", "backbone_entry": TINY_ENTRY, "tofu_dir": tofu, "out": out,
            "exclude_splits": [], "threads": 1, **kw}


def write_tiny_setup(root: Path) -> Path:
    """A tiny synthetic corpus (20 authors x 5 facts) in root/data and a random tiny llada
    twin for it saved in root/model (the job tests' backbone_path); returns the corpus dir."""
    from harness.backbones.base import BackboneSpec
    from harness.backbones.registry import adapter_class
    from harness.data import load_corpus, write_synthetic
    from harness.finetune import corpus_texts

    tofu = write_synthetic(root / "data", authors=20, facts_per_author=5, seed=1)
    spec = BackboneSpec(name="tiny", **TINY_ENTRY)
    backbone = adapter_class("llada-twin").initial(spec, corpus_texts(load_corpus(tofu)), seed=0)
    backbone.save_pretrained(str(root / "model"))
    return tofu
