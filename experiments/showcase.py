"""The measurements TimeROME must show, on one fine-tuned backbone and a TOFU-format corpus.

python -m experiments.showcase --backbone-dir CKPT --tofu-dir DIR --out results.json

Sections (each timed with the monotonic clock, all numbers nats per sample, full_mask):
tuning (validation split; retain tuning sample), forget01 edit at the tuned point
(forget/retain log-prob drops, greedy-generation ROUGE-L recall before/after; with
--reference-dir, the retain model's forget log-prob and ROUGE-L beside the edit's),
sequential insertion of validation facts one at a time (retain log-prob after each, time
per insertion), tracing throughput next to plain batched inference at the same batch shape,
peak RSS of an edit next to plain inference, and the scoring-time overhead of a 400-fact
memory (tuned config, and the same without the gate and preconditioning).
Retain samples exclude validation and forget authors; the evaluation retain sample is
disjoint from the tuning one.
"""

from __future__ import annotations

import argparse
import threading
import time
from typing import Callable

import psutil
import torch

from harness.backbones.base import BackboneSpec
from harness.backbones.registry import load_backbone
from harness.data import load_corpus
from harness.diffusion.batching import collate, encode_facts
from harness.evaluation.answer_logprob import score_facts
from harness.timerome.config import TimeROMEConfig
from harness.timerome.editor import TimeROMEEditor
from harness.atomic import write_json_atomic
from harness.timerome.tracing import trace_encoded
from harness.evaluation.retain_sample import seeded_blocks, without
from harness.timerome.tuning import TuningGrid, read_tuned_config, tune, write_tuning
from harness.workflow_config import load_workflow_config


def peak_rss_delta(fn: Callable[[], object], interval: float = 0.002) -> tuple[float, object]:
    """(peak RSS above the starting RSS in MiB while `fn` runs, fn's result)."""
    proc = psutil.Process()
    start = proc.memory_info().rss
    peak = [start]
    done = threading.Event()

    def watch():
        while not done.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            time.sleep(interval)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        result = fn()
    finally:
        done.set()
        thread.join()
    peak[0] = max(peak[0], proc.memory_info().rss)
    return (peak[0] - start) / 2 ** 20, result


def rouge(backbone, facts, steps):
    from harness.diffusion.sampling import generate
    from harness.evaluation.rouge import rouge_l_recall

    texts = generate(backbone, facts, steps=steps)
    return rouge_l_recall(texts, [f.answer for f in facts]), texts


def reference_scores(reference_dir, forget, retain, steps) -> dict:
    """Forget log-prob and forget/retain ROUGE-L of the retain model (never trained on forget)."""
    reference = load_backbone(BackboneSpec(name="llada-twin-retain", adapter="llada-twin",
                                           path=reference_dir))
    rf, texts = rouge(reference, forget, steps)
    rr, _ = rouge(reference, retain, steps)
    return {"backbone_dir": reference_dir,
            "forget_logp": float(score_facts(reference, forget).logp.mean()),
            "forget_rougeL_recall": float(sum(rf) / len(rf)),
            "retain_rougeL_recall": float(sum(rr) / len(rr)), "generations": texts[:3]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--backbone-dir", required=True)
    p.add_argument("--tofu-dir", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--tuned", help="reuse a tuning JSON instead of tuning")
    p.add_argument("--tuning-out", default=None)
    p.add_argument("--config", default="{}", help="JSON overrides of TimeROMEConfig")
    p.add_argument("--sequential", type=int, default=50)
    data = load_workflow_config()["data"]  # the workflow's sample sizes and seed
    p.add_argument("--retain-size", type=int, default=data["retain_eval_size"],
                   help="facts of each scored retain sample (tuning, evaluation)")
    p.add_argument("--calibration-size", type=int, default=data["retain_train_size"],
                   help="retain facts (disjoint from the scored ones) for the edit's statistics")
    p.add_argument("--eval-seed", type=int, default=data["eval_seed"],
                   help="seed of the retain samples")
    p.add_argument("--grid", default="{}", help="JSON TuningGrid fields, e.g. {\"qs\": [1.0]}")
    p.add_argument("--variants", default='{"default": {}}',
                   help="JSON {name: TimeROMEConfig overrides} tuned side by side")
    p.add_argument("--gen-steps", type=int, default=None)
    p.add_argument("--sections", default="tune,forget,sequential,throughput,memory,hook")
    p.add_argument("--reference-dir", default=None,
                   help="a checkpoint fine-tuned without forget01 (the retain model): the "
                        "forget section reports its forget log-prob and ROUGE-L beside the "
                        "edit's, the level an exact unlearning would reach")
    args = p.parse_args(argv)
    import json

    sections = set(args.sections.split(","))
    backbone = load_backbone(BackboneSpec(name="llada-twin", adapter="llada-twin",
                                          path=args.backbone_dir))
    corpus = load_corpus(args.tofu_dir, ["forget01", "validation", "retain99"])
    forget, validation = corpus["forget01"], corpus["validation"]
    exclude = {f.author_id for f in validation} | {f.author_id for f in forget}
    # One seeded permutation of the pool, cut as the workflow cuts it: the evaluation retain
    # sample, the tuning one, and the edit's statistics (covariance, gate) from facts
    # disjoint from both scored samples.
    r_eval, r_tune, calib = seeded_blocks(
        without(corpus["retain99"], exclude), [args.retain_size, args.retain_size,
                                               args.calibration_size],
        args.eval_seed, last_may_be_short=True)
    base = TimeROMEConfig.from_dict(json.loads(args.config))
    out: dict = {"backbone_dir": args.backbone_dir, "tofu_dir": args.tofu_dir,
                 "estimator": "full_mask", "torch_threads": torch.get_num_threads()}

    def save():
        write_json_atomic(args.out, out)

    if args.tuned:
        config = read_tuned_config(args.tuned, base)
    elif "tune" in sections:
        variants = json.loads(args.variants)
        grid = TuningGrid(**{k: tuple(v) for k, v in json.loads(args.grid).items()})
        traces: dict[str, object] = {}
        best = None
        out["tuning"] = {}
        for name, overrides in variants.items():
            cfg = base.with_overrides(**overrides)
            if cfg.positions not in traces:
                traces[cfg.positions] = trace_encoded(backbone, encode_facts(backbone, validation), cfg)
            result = tune(backbone, validation, r_tune, cfg, grid, calibration=calib,
                          trace=traces[cfg.positions])
            write_tuning(result, (args.tuning_out or args.out) + f".tuning.{name}.json")
            out["tuning"][name] = {"chosen": result.to_dict()["chosen"], "seconds": result.seconds,
                                   "flagged": result.flagged,
                                   "grid": [g.__dict__ for g in result.grid]}
            save()
            if result.chosen is not None and (best is None or
                                              result.chosen.forget_drop > best[0]):
                best = (result.chosen.forget_drop, name, result.config())
        config = best[2] if best is not None else base
        out["tuning_choice"] = None if best is None else best[1]
    else:
        config = base
    out["config"] = config.to_dict()
    save()

    if "forget" in sections:
        pre_f = score_facts(backbone, forget).logp
        pre_r = score_facts(backbone, r_eval).logp
        rf_pre, _ = rouge(backbone, forget, args.gen_steps)
        rr_pre, _ = rouge(backbone, r_eval, args.gen_steps)
        editor = TimeROMEEditor(backbone, config, retain=calib)
        _, report = editor.edit(forget)
        post_f = score_facts(backbone, forget).logp
        post_r = score_facts(backbone, r_eval).logp
        rf_post, texts = rouge(backbone, forget, args.gen_steps)
        rr_post, _ = rouge(backbone, r_eval, args.gen_steps)
        editor.undo()
        mean = lambda xs: float(sum(xs) / len(xs))  # noqa: E731
        out["forget01"] = {
            "forget_logp_pre": float(pre_f.mean()), "forget_logp_post": float(post_f.mean()),
            "forget_drop": float((pre_f - post_f).mean()),
            "retain_logp_pre": float(pre_r.mean()), "retain_drop": float((pre_r - post_r).mean()),
            "forget_rougeL_recall_pre": mean(rf_pre), "forget_rougeL_recall_post": mean(rf_post),
            "retain_rougeL_recall_pre": mean(rr_pre), "retain_rougeL_recall_post": mean(rr_post),
            "edited": report.n_edited, "flagged": [f["fact"] for f in report.flagged],
            "coordinates": report.coordinates, "phase_seconds": report.phase_seconds,
            "post_generations": texts[:3]}
        if args.reference_dir:
            out["forget01"]["reference"] = reference_scores(args.reference_dir, forget, r_eval,
                                                            args.gen_steps)
        save()

    if "sequential" in sections:
        pre_r = score_facts(backbone, r_eval).logp
        editor = TimeROMEEditor(backbone, config, retain=calib)
        rows = []
        for fact in validation[:args.sequential]:
            start = time.monotonic()
            editor.insert(fact)
            seconds = time.monotonic() - start
            drop = float((pre_r - score_facts(backbone, r_eval).logp).mean())
            rows.append({"fact": fact.key, "seconds": seconds, "retain_drop": drop,
                         "memory_facts": editor.memory.n_facts})
        editor.undo()
        out["sequential"] = {"rows": rows, "max_retain_drop": max(r["retain_drop"] for r in rows),
                             "first_s": rows[0]["seconds"], "last_s": rows[-1]["seconds"]}
        save()

    encoded = encode_facts(backbone, forget)
    if "throughput" in sections:
        trace = trace_encoded(backbone, encoded, config)
        width = int(collate(backbone, encoded).input_ids.shape[1])
        ids = collate(backbone, encoded).input_ids
        rows_n = config.trace_batch_rows
        ids = ids.repeat(rows_n // len(ids) + 1, 1)[:rows_n]
        with torch.inference_mode():
            backbone.logits(ids)
            start = time.monotonic()
            reps = 5
            for _ in range(reps):
                backbone.logits(ids)
            plain_s = (time.monotonic() - start) / reps
        out["throughput"] = {"trace_forwards": trace.forwards, "trace_seconds": trace.seconds,
                             "trace_rows_per_s": trace.forwards / trace.seconds,
                             "plain_rows_per_s": rows_n / plain_s, "rows": rows_n,
                             "width": width}
        out["throughput"]["ratio"] = out["throughput"]["trace_rows_per_s"] / \
            out["throughput"]["plain_rows_per_s"]
        save()

    if "memory" in sections:
        ids = collate(backbone, encoded).input_ids
        ids = ids.repeat(config.trace_batch_rows // len(ids) + 1, 1)[:config.trace_batch_rows]

        def plain():
            with torch.inference_mode():
                return backbone.logits(ids).shape

        def edit():
            editor = TimeROMEEditor(backbone, config, retain=calib)
            editor.edit(forget)
            editor.undo()

        plain()
        plain_mib, _ = peak_rss_delta(plain)
        edit_mib, _ = peak_rss_delta(edit)
        plain_mib2, _ = peak_rss_delta(plain)
        out["peak_rss"] = {"plain_inference_mib": max(plain_mib, plain_mib2),
                           "edit_mib": edit_mib, "rows": config.trace_batch_rows,
                           "baseline_rss_mib": psutil.Process().memory_info().rss / 2 ** 20}
        save()

    if "hook" in sections:
        # A real 400-fact memory (traced and solved by the method; flagged facts included so
        # the count is exact) under the tuned config and ungated (no gate, no
        # preconditioning: the plain memory). Scored: the evaluation retain sample and validation.
        used = {f.key for f in r_tune + r_eval + calib + validation}
        pool = [f for f in corpus["retain99"] if f.key not in used]
        if len(pool) < 400:
            raise ValueError(f"hook section: need 400 unused retain facts, {len(pool)} left")
        facts = r_eval + validation

        def timed() -> float:
            start = time.monotonic()
            score_facts(backbone, facts)
            return time.monotonic() - start

        out["hook_overhead"] = {}
        for name, cfg in (("config", config),
                          ("ungated", config.with_overrides(gate=False, precondition="none"))):
            editor = TimeROMEEditor(backbone, cfg.with_overrides(edit_flagged=True), retain=calib)
            editor.edit(pool[:400])
            memory = editor.memory
            memory.detach()
            timed()
            ratios = []  # interleaved (plain, hooked) pairs: robust to drifting load
            for _ in range(11):
                plain_s = timed()
                memory.attach(backbone)
                paths = {l: memory.hook_path(l) for l in memory.factors}
                ratios.append(timed() / plain_s)
                memory.detach()
            ratios.sort()
            out["hook_overhead"][name] = {
                "facts_in_memory": memory.n_facts, "gate": cfg.gate,
                "facts_per_layer": {l: f.n for l, f in memory.factors.items()},
                "hook_paths": paths,
                "scored_facts": len(facts), "ratios": ratios,
                "overhead": ratios[len(ratios) // 2] - 1.0}
            save()
    print(json.dumps(out, indent=1, default=str)[:4000])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
