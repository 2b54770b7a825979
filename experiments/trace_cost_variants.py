"""Cheaper tracing at the tuned operating points (issue 16, deliverable 3): which of the
trace-cost options keeps TimeROME-DLM's edit as good on validation as the full trace?

Variants (`VARIANTS`) change tracing options only: `restore_span: subject` (one restored run
per layer patching every subject token, ROME's window), `tie_facts` (null: every fact traced;
K: restored runs for a seeded sample of K facts, the others take the sample's peak layer;
0, the default: every fact takes the peak layer of the backbone's TIE profile, traced on the
calibration retain facts), fewer levels. For each
tracing seed, variant and fact-count regime of the tuning record (`chosen_by_facts`: e.g. 10,
50 and the extrapolated 400) the first min(n, |validation|) validation facts are traced as
an edit of that many facts would trace them, and the regime's own operating point is
applied to them with the
tune job's protocol (`harness.timerome.tuning.tune` on a one-point grid: the tune job's
scored retain facts and calibration facts), giving the forget drop, the retain drop, the
expected gate openings per retain fact and the chosen layers. A variant's numbers differ
from the default's only through what its trace chose (the operating point is the same).

    python -m experiments.trace_cost_variants --out results/trace_cost_variants.json \\
        --tuning results/tuning/llada-8b-base-twin/seed0.json --seeds 5

One JSON file (--out, atomically) and a markdown table on stdout.
"""

from __future__ import annotations

import argparse
import shlex
import statistics as stats
import sys
import time
from pathlib import Path
from typing import Any

import torch

from harness.workflow_config import DEFAULT_CONFIG_PATH, load_workflow_config

REFERENCE = "default"
VARIANTS: dict[str, dict[str, Any]] = {
    REFERENCE: {},  # tie_facts 0: every fact at the backbone's TIE profile layer
    "every fact traced": {"tie_facts": None},
    "tie 10 facts": {"tie_facts": 10},
    "subject span": {"restore_span": "subject", "tie_facts": None},
    "subject span + tie 10 facts": {"restore_span": "subject", "tie_facts": 10},
    "subject span + T2": {"restore_span": "subject", "times": [1.0, 0.5], "tie_facts": None},
    "T2": {"times": [1.0, 0.5]},
    "N2": {"noise_samples": 2},
    "every fact traced + T2": {"tie_facts": None, "times": [1.0, 0.5]},
}


def mean_sd(values: list[float]) -> dict[str, float]:
    return {"mean": stats.fmean(values), "sd": stats.stdev(values) if len(values) > 1 else 0.0}


def regime_points(tuning: str) -> dict[int, dict[str, Any]]:
    import json

    record = json.loads(Path(tuning).read_text())
    points = record.get("chosen_by_facts") or {}
    if not points:
        raise ValueError(f"{tuning}: no 'chosen_by_facts' (a per-regime tuning record)")
    return {int(n): p for n, p in sorted(points.items(), key=lambda kv: int(kv[0])) if p}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.trace_cost_variants",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--config", default=str(DEFAULT_CONFIG_PATH))
    p.add_argument("--backbone", default="llada-8b-base-twin")
    p.add_argument("--model", default=None, help="default: models/<backbone>/finetuned")
    p.add_argument("--tofu-dir", default="results/corpus/ca10d666ebd8")
    p.add_argument("--tuning", required=True, help="the tune job's record (per regime)")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--seeds", type=int, default=3, help="how many tracing seeds")
    p.add_argument("--first-seed", type=int, default=0,
                   help="the first tracing seed (the tune job traces with seed 0: start at 1 "
                        "for seeds the operating point was not chosen on)")
    p.add_argument("--retain-eval-size", type=int, default=None,
                   help="scored retain facts (default: config data.retain_eval_size)")
    p.add_argument("--retain-train-size", type=int, default=None,
                   help="calibration retain facts (default: config data.retain_train_size)")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    variants = [v for v in args.variants.split(",") if v]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        p.error(f"unknown variant(s) {unknown}; known: {', '.join(VARIANTS)}")

    from harness.atomic import write_json_atomic
    from harness.backbones.registry import load_backbone
    from harness.data import load_split
    from harness.jobs.selection import tuning_retain
    from harness.jobs.spec import backbone_spec
    from harness.timerome.config import TimeROMEConfig
    from harness.timerome.editor import TimeROMEEditor
    from harness.timerome.tuning import TuningGrid, tune

    torch.set_num_threads(args.threads)
    cfg = load_workflow_config(args.config)
    data = cfg["data"]
    model = args.model or f"models/{args.backbone}/finetuned"
    points = regime_points(args.tuning)
    retain, calibration = tuning_retain(
        args.tofu_dir, data["forget_split"], data["retain_split"],
        args.retain_eval_size or int(data["retain_eval_size"]), int(data["eval_seed"]),
        args.retain_train_size or int(data["retain_train_size"]), data["validation_split"])
    backbone = load_backbone(backbone_spec(args.backbone, cfg["backbones"][args.backbone], model))
    validation = load_split(args.tofu_dir, data["validation_split"])
    statistics = TimeROMEEditor(backbone, TimeROMEConfig(),
                                retain=calibration).backbone_statistics()
    runs: list[dict[str, Any]] = []
    reference_layers: dict[tuple[int, int], torch.Tensor] = {}  # (seed, facts) -> layers
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    for seed in seeds:
        for name in variants:
            base = TimeROMEConfig().with_overrides(**VARIANTS[name], seed=seed)
            editor = TimeROMEEditor(backbone, base, retain=calibration, statistics=statistics)
            traces: dict[int, Any] = {}
            for n in sorted({min(n, len(validation)) for n in points}):
                start = time.monotonic()  # each count traced as a job of n facts would
                traces[n] = (editor.trace(validation[:n])[1], time.monotonic() - start)
            for n, point in points.items():
                facts = validation[:min(n, len(validation))]
                trace, seconds = traces[len(facts)]
                if name == REFERENCE:
                    reference_layers[seed, len(facts)] = trace.layer.clone()
                ref = reference_layers.get((seed, len(facts)))  # None: default not run first
                same = None if ref is None else float((trace.layer == ref).float().mean())
                config = base.with_overrides(
                    **{k: point[k] for k in ("alpha", "lam", "q", "gate_margin", "sites")
                       if point.get(k) is not None})
                grid = TuningGrid(alphas=(config.alpha,), lams=(config.lam,), qs=(config.q,),
                                  gate_margins=(config.gate_margin,), sites=(config.sites,))
                result = tune(backbone, facts, retain, config, grid, trace=trace,
                              calibration=calibration, statistics=statistics)
                g = result.grid[0]
                runs.append({"variant": name, "seed": seed, "regime": n, "facts": len(facts),
                             "forget_drop": g.forget_drop, "retain_drop": g.retain_drop,
                             "expected_gate_opens": g.expected_gate_opens,
                             "trace_rows_per_fact": trace.forwards / len(facts),
                             "trace_seconds": seconds, "same_layer_as_default": same,
                             "layers": trace.layer[:len(facts)].tolist()})
                print(f"[trace_cost_variants] seed {seed} {name} regime {n}: forget "
                      f"{g.forget_drop:.3f} retain {g.retain_drop:.3f} rows/fact "
                      f"{trace.forwards / len(facts):.1f}", file=sys.stderr, flush=True)
    table = []
    for name in variants:
        for n in points:
            rows = [r for r in runs if r["variant"] == name and r["regime"] == n]
            table.append({"variant": name, "regime": n, "facts": rows[0]["facts"],
                          **{k: mean_sd([r[k] for r in rows])
                             for k in ("forget_drop", "retain_drop", "expected_gate_opens",
                                       "trace_rows_per_fact", "trace_seconds")},
                          "same_layer_as_default": None if rows[0]["same_layer_as_default"] is None
                          else mean_sd([r["same_layer_as_default"] for r in rows])})
    out = {"command": "python -m experiments.trace_cost_variants "
                      + shlex.join(argv if argv is not None else sys.argv[1:]),
           "backbone": backbone.identity(), "model": model, "tuning": args.tuning,
           "points": {str(n): p for n, p in points.items()}, "seeds": seeds,
           "retain_facts": len(retain), "calibration_facts": len(calibration),
           "validation_facts": len(validation), "table": table, "runs": runs}
    write_json_atomic(Path(args.out), out)
    cols = ["variant", "regime (facts edited)", "rows/fact", "trace s", "same layer as default",
            "forget drop", "retain drop", "expected gate openings / retain fact"]
    print("| " + " | ".join(cols) + " |\n|" + "---|" * len(cols))
    for t in table:
        cell = lambda v, f=".3f": f"{v['mean']:{f}} ± {v['sd']:{f}}"  # noqa: E731
        print(f"| {t['variant']} | {t['regime']} ({t['facts']}) | "
              f"{t['trace_rows_per_fact']['mean']:.1f} | {t['trace_seconds']['mean']:.2f} | "
              f"{'-' if t['same_layer_as_default'] is None else cell(t['same_layer_as_default'], '.2f')}"
              f" | {cell(t['forget_drop'])} | "
              f"{cell(t['retain_drop'])} | {cell(t['expected_gate_opens'], '.4f')} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
