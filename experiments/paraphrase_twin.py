"""Does an edit remove a fact, or one wording of its question? (issue 17)

The default twins are fine-tuned on one question per fact and do not know the answers to
the paraphrased questions of the corpus (the fine-tuned base twin: -116.41 nats per fact
there against -1.58 on the trained ones; docs/measurements/memory_variants.md), so on them
no edit can show that it removes more than one phrasing. This experiment trains twins that
do know both: the default recipe (harness.finetune.config) on the training facts of the
default workflow, each fact asked twice, with its question and with its relation's
paraphrased question (harness.data.synth.paraphrased_question). Then it edits the forget
split with each site rule at a tuned point and scores, as nats per fact of the full-mask
log-probability (Table 1's estimator):

- forget: the forget facts as edited;
- forget paraphrased: the same facts asked with their paraphrased question;
- retain, retain paraphrased: the Table 1 retain sample, both ways.

    python -m experiments.paraphrase_twin train --backbone llada-moe-twin --out models_para
    python -m experiments.paraphrase_twin edit --backbones llada-moe-twin --models models_para \\
        --tuned results/tuning/llada-8b-base-twin/seed0.json --out results/paraphrase_twin.json

`edit` writes one JSON file (--out, atomically) and prints a markdown table. Statistics
(retain keys, TIE profile) are computed for each trained model inside the run, not read
from the workflow's files (those belong to the default twins).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

import torch

from harness.workflow_config import DEFAULT_CONFIG_PATH, load_workflow_config

# The site rules compared, each at a best utility-safe point for 10 facts on the base
# twin's validation groups (docs/measurements/memory_variants.md): `subject` at the tune
# job's best subject point (the default's point until 7a0ea97), `window` at the point the
# tune job chose for it with both rules in its grid and the span gate anchored on every
# column ("Edit sites around the subject"), with the method's default positions (the 4 prompt
# tokens after the subject); the window rule runs with either anchor. With
# --tuned, the tuning record's chosen point for the forget split's size runs too.
SUBJECT_POINT: dict[str, Any] = {"sites": "subject", "alpha": 1024.0, "lam": 100.0, "q": 1.0,
                                 "gate_margin": 0.25, "gate_span": True, "gate_own_floor": True}
WINDOW_POINT: dict[str, Any] = {"sites": "window", "alpha": 1024.0, "lam": 1.0, "q": 1.0,
                                "gate_margin": 0.0, "gate_span": True, "gate_own_floor": True}


def paraphrased(facts: Sequence) -> list:
    """The facts asked with their paraphrased question (facts without one are dropped)."""
    from harness.data.synth import paraphrased_question

    out = []
    for fact in facts:
        question = fact.paraphrased_question or paraphrased_question(fact.question, fact.subject)
        if question:
            out.append(replace(fact, question=question))
    return out


def train(name: str, entry: dict[str, Any], tofu_dir: str, out: str, threads: int) -> None:
    """Fine-tune backbone `name` (its config entry) on every training fact asked both ways."""
    from harness.atomic import write_json_atomic
    from harness.data import available_splits, load_corpus
    from harness.finetune import FinetuneConfig
    from harness.finetune.loop import finetune
    from harness.finetune.train import corpus_texts, initial_backbone, training_facts
    from harness.jobs.spec import backbone_spec

    torch.set_num_threads(threads)
    spec = backbone_spec(name, entry, None)
    cfg = FinetuneConfig(**(entry.get("finetune") or {}))
    corpus = load_corpus(tofu_dir, available_splits(tofu_dir))
    facts, _, _ = training_facts(corpus)
    both = facts + paraphrased(facts)
    backbone = initial_backbone(spec, corpus_texts(corpus) + [f.question for f in both],
                                cfg.seed)
    report = finetune(backbone, both, cfg, progress=False)
    target = Path(out) / name / "finetuned"
    backbone.save_pretrained(str(target))
    write_json_atomic(target / "paraphrase_twin.json",
                      {"facts": len(facts), "trained_rows": len(both), "tofu_dir": tofu_dir,
                       "seconds": report.seconds, "final_loss": report.final_loss})
    print(f"[paraphrase_twin] {name}: {len(both)} rows, {report.seconds:.0f} s, "
          f"final loss {report.final_loss:.4f}", file=sys.stderr)


def score(backbone, facts: Sequence) -> float:
    from harness.evaluation.answer_logprob import score_facts

    return float(score_facts(backbone, facts).logp.mean())


def edit(backbone, selection, variants: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Each variant's change of the four scores (nats per fact), and the scores unedited."""
    from harness.methods import get_method
    from harness.timerome.config import TimeROMEConfig
    from harness.timerome.editor import TimeROMEEditor

    sets = {"forget": selection.forget, "forget_paraphrased": paraphrased(selection.forget),
            "retain": selection.retain_eval,
            "retain_paraphrased": paraphrased(selection.retain_eval)}
    before = {k: score(backbone, facts) for k, facts in sets.items()}
    out: dict[str, Any] = {"unedited": before, "facts": {k: len(v) for k, v in sets.items()}}
    for label, method_config in variants.items():
        config = TimeROMEConfig.from_dict(dict(get_method("timerome", method_config).config))
        editor = TimeROMEEditor(backbone, config, retain=selection.retain_train)
        editor.edit(selection.forget)
        out[label] = {k: score(backbone, facts) - before[k] for k, facts in sets.items()}
        editor.undo()
        print(f"[paraphrase_twin] {backbone.name} {label}: "
              + ", ".join(f"{k} {v:+.2f}" for k, v in out[label].items()), file=sys.stderr)
    return out


def markdown(results: dict[str, dict[str, Any]]) -> str:
    lines = ["| backbone | variant | forget | forget paraphrased | retain | retain paraphrased |",
             "|---|---|---|---|---|---|"]
    keys = ("forget", "forget_paraphrased", "retain", "retain_paraphrased")
    for name, res in results.items():
        lines.append(f"| {name} | unedited (log-prob) | "
                     + " | ".join(f"{res['unedited'][k]:.2f}" for k in keys) + " |")
        for label in (k for k in res if k not in ("unedited", "facts")):
            lines.append(f"| {name} | {label} (Δ) | "
                         + " | ".join(f"{res[label][k]:+.2f}" for k in keys) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.paraphrase_twin", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("stage", choices=("train", "edit"))
    p.add_argument("--backbones", required=True, help="comma list of the config's backbones")
    p.add_argument("--models", required=True,
                   help="train: where <backbone>/finetuned is written; edit: read")
    p.add_argument("--config", default=str(DEFAULT_CONFIG_PATH))
    p.add_argument("--tofu-dir", default="results/corpus/ca10d666ebd8")
    p.add_argument("--tuned", help="edit: a tuning record; its chosen point runs too")
    p.add_argument("--out", help="edit: JSON file written (atomically)")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)

    cfg = load_workflow_config(args.config)
    names = args.backbones.split(",")
    unknown = [n for n in names if n not in cfg["backbones"]]
    if unknown:
        print(f"error: unknown backbone(s) {', '.join(unknown)}; known: "
              f"{', '.join(cfg['backbones'])}", file=sys.stderr)
        return 2
    if args.stage == "train":
        for name in names:
            train(name, cfg["backbones"][name], args.tofu_dir, args.models, args.threads)
        return 0
    if not args.out:
        print("error: edit needs --out", file=sys.stderr)
        return 2

    from harness.atomic import write_json_atomic
    from harness.backbones.registry import load_backbone
    from harness.jobs.selection import split_selection
    from harness.jobs.spec import backbone_spec
    from harness.methods import method_info
    from harness.timerome.tuning import apply_tuning

    torch.set_num_threads(args.threads)
    data = cfg["data"]
    selection = split_selection(args.tofu_dir, data["forget_split"], data["retain_split"],
                                int(data["retain_eval_size"]), int(data["eval_seed"]),
                                int(data["retain_train_size"]), data["validation_split"])
    base = dict(cfg.get("method_config", {}).get("timerome") or {})
    variants = {"subject": {**base, **SUBJECT_POINT},
                "window, span_anchor span": {**base, **WINDOW_POINT, "span_anchor": "span"},
                "window, span_anchor subject": {**base, **WINDOW_POINT,
                                                "span_anchor": "subject"}}
    if args.tuned:
        variants["tuned (record)"], _ = apply_tuning(
            base, args.tuned, method_info("timerome").tunable_keys, len(selection.forget))
    results = {}
    for name in names:
        backbone = load_backbone(backbone_spec(name, cfg["backbones"][name],
                                               f"{args.models}/{name}/finetuned"))
        results[name] = edit(backbone, selection, variants)
    write_json_atomic(args.out, {"tofu_dir": args.tofu_dir, "tuned": args.tuned,
                                 "variants": variants, "backbones": results})
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
