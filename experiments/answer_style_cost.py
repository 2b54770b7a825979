"""What an answer style costs on the CPU (issue 13): the same facts in each answer style.

For each style (harness.data.synth.ANSWER_STYLES): write the default-size synthetic corpus in
that style, build the default twin (random weights: costs do not depend on what a model has
learnt) and time, single-threaded,

- one fine-tuning epoch over the training splits (the second of two; the first warms up);
- TimeROME-DLM's edit of the forget01 facts (trace + retain statistics + solve) with the
  default config's `method_config.timerome`, retain statistics from `retain_train_size`
  retain facts;
- full_mask scoring of the forget01 + `retain_eval_size` retain facts;
- greedy generation of the forget01 answers.

Mean answer words and tokens are reported with them. One markdown table on stdout:

    python -m experiments.answer_style_cost --styles object,restated,tofu
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
import yaml

from harness.workflow_config import DEFAULT_CONFIG_PATH, load_workflow_config

COLUMNS = ["style", "answer words", "answer tokens", "prompt tokens", "epoch s", "edit s",
           "score s", "generate s"]


def measure(style: str, cfg: dict[str, Any], adapter: str, options: dict[str, Any],
            workdir: Path) -> dict[str, Any]:
    from harness.backbones.base import BackboneSpec
    from harness.backbones.registry import adapter_class
    from harness.data import available_splits, load_corpus, write_synthetic
    from harness.diffusion.batching import encode_facts
    from harness.diffusion.sampling import generate
    from harness.evaluation.answer_logprob import score_facts
    from harness.finetune import FinetuneConfig, corpus_texts, finetune, training_facts
    from harness.jobs.selection import split_selection
    from harness.timerome.config import TimeROMEConfig
    from harness.timerome.editor import TimeROMEEditor

    data = cfg["data"]
    synth = data.get("synthetic") or {}
    tofu_dir = write_synthetic(workdir / style, int(synth.get("authors", 100)),
                               int(synth.get("facts_per_author", 10)), int(synth.get("seed", 0)),
                               answer_style=style)
    corpus = load_corpus(tofu_dir, available_splits(tofu_dir))
    facts, _, _ = training_facts(corpus)
    spec = BackboneSpec(name=f"{adapter}-{style}", adapter=adapter, options=dict(options))
    backbone = adapter_class(adapter).initial(spec, corpus_texts(corpus), 0)
    encoded = encode_facts(backbone, facts)
    selection = split_selection(str(tofu_dir), data["forget_split"], data["retain_split"],
                                int(data["retain_eval_size"]), int(data["eval_seed"]),
                                int(data["retain_train_size"]), data["validation_split"])
    finetune(backbone, facts, replace(FinetuneConfig(), epochs=1), progress=False)  # warm-up
    epoch_s = finetune(backbone, facts, replace(FinetuneConfig(), epochs=1),
                       progress=False).seconds

    tr_cfg = TimeROMEConfig.from_dict(cfg["method_config"].get("timerome", {}))
    start = time.perf_counter()
    editor = TimeROMEEditor(backbone, tr_cfg, retain=selection.retain_train)
    editor.edit(selection.forget)
    edit_s = time.perf_counter() - start
    editor.undo()

    start = time.perf_counter()
    score_facts(backbone, [*selection.forget, *selection.retain_eval], estimator="full_mask",
                batch_size=32, seed=0)
    score_s = time.perf_counter() - start
    start = time.perf_counter()
    generate(backbone, selection.forget, seed=0)
    generate_s = time.perf_counter() - start
    return {"style": style,
            "answer words": statistics.mean(len(f.answer.split()) for f in facts),
            "answer tokens": statistics.mean(len(e.answer_ids) for e in encoded),
            "prompt tokens": statistics.mean(len(e.prompt_ids) for e in encoded),
            "epoch s": epoch_s, "edit s": edit_s, "score s": score_s, "generate s": generate_s}


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        lines.append("| " + " | ".join(f"{row[c]:.2f}" if isinstance(row[c], float) else str(row[c])
                                       for c in COLUMNS) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.answer_style_cost",
                                description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--styles", default="object,restated,tofu")
    p.add_argument("--config", default=str(DEFAULT_CONFIG_PATH))
    p.add_argument("--backbone", default="llada-8b-base-twin",
                   help="backbone entry of the config whose adapter and options are timed")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = load_workflow_config(args.config)
    entry = cfg["backbones"][args.backbone]
    rows = []
    with tempfile.TemporaryDirectory(prefix="style_cost_") as tmp:
        for style in [s for s in args.styles.split(",") if s]:
            rows.append(measure(style, cfg, entry["adapter"], entry.get("options", {}),
                                Path(tmp)))
            print(f"[answer_style_cost] {rows[-1]}", file=sys.stderr, flush=True)
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
