"""Edit-memory variants on validation (issue 17, deliverable 1): which key metric and gate
keep the retain drop within budget as the memory grows.

Each variant is TimeROME-DLM's default config with memory options changed (`VARIANTS`:
the key metric `precondition` none / retain_cov / null_space (AlphaEdit's projector, at
several `null_space_threshold`s), the key gate on or off). Tracing does not depend on them:
the validation facts are traced once with the default tracing options and every variant is
solved from the same trace. For each fact count n (--counts; the first n validation facts)
and each variant, the tune job's grid search runs unchanged (`harness.timerome.tuning.tune`,
the tune job's retain samples `harness.jobs.selection.tuning_retain`: a scored sample and
disjoint calibration facts for the retain statistics) over --grid (default: config
tuning.grid, lambda widened); the row is the variant's best utility-safe point (mean
forget drop maximal with mean retain drop <= tuning.max_retain_drop nats per sample), and
the null-space dimension per layer for null_space variants.

    python -m experiments.memory_variants --out results/memory_variants.json

One JSON file (--out, atomically) and a markdown table on stdout.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from typing import Any

import torch

from harness.workflow_config import DEFAULT_CONFIG_PATH, load_workflow_config

REFERENCE = "default"
# Variant name -> overrides of the default config. Names say what is changed.
VARIANTS: dict[str, dict[str, Any]] = {
    REFERENCE: {},
    "retain_cov ungated": {"gate": False},
    "ridge gated": {"precondition": "none"},
    "null_space 1e-2 gated": {"precondition": "null_space", "null_space_threshold": 1e-2},
    "null_space 1e-2 ungated": {"precondition": "null_space", "null_space_threshold": 1e-2,
                                "gate": False},
    "null_space 1e-1 gated": {"precondition": "null_space", "null_space_threshold": 1e-1},
    "null_space 1e-1 ungated": {"precondition": "null_space", "null_space_threshold": 1e-1,
                                "gate": False},
    "null_space 3e-1 ungated": {"precondition": "null_space", "null_space_threshold": 3e-1,
                                "gate": False},
    "margin 0.25": {"gate_margin": 0.25},
    "margin 0.5": {"gate_margin": 0.5},
    "margin 0.75": {"gate_margin": 0.75},
    "suppress": {"target": "suppress"},
    "suppress margin 0.5": {"target": "suppress", "gate_margin": 0.5},
    "null_space 1e-1 margin 0.5": {"precondition": "null_space", "null_space_threshold": 1e-1,
                                   "gate_margin": 0.5},
    "sites subject": {"sites": "subject"},
    "sites subject_through": {"sites": "subject_through"},
    "sites subject_layers": {"sites": "subject_layers"},
    "sites subject margin 0.25": {"sites": "subject", "gate_margin": 0.25},
    "sites subject_through margin 0.25": {"sites": "subject_through", "gate_margin": 0.25},
    "sites subject_layers margin 0.25": {"sites": "subject_layers", "gate_margin": 0.25},
    "span gate": {"gate_span": True},
    "span gate margin 0.25": {"gate_span": True, "gate_margin": 0.25},
    "span gate margin 0.5": {"gate_span": True, "gate_margin": 0.5},
    "span gate own floor": {"gate_span": True, "gate_own_floor": True},
}
DEFAULT_LAMS = "0.01,0.1,1,10"
COLUMNS = ["facts", "variant", "best alpha", "best lam", "best q", "forget drop",
           "retain drop", "safe points", "null-space dim per layer"]


def null_dims(statistics: dict[str, torch.Tensor]) -> list[int] | None:
    from harness.backbone_statistics import per_layer
    from harness.timerome.retain_stats import KEY_METRICS, null_space_rank

    projectors = per_layer(KEY_METRICS["null_space"].statistic, statistics)
    return [null_space_rank(projectors[l]) for l in sorted(projectors)] or None


def run(backbone, validation, retain, calibration, counts, grid, variants,
        max_retain_drop) -> list[dict[str, Any]]:
    from harness.timerome.config import TimeROMEConfig
    from harness.timerome.editor import TimeROMEEditor
    from harness.timerome.tuning import tune

    base = TimeROMEConfig()
    rows = []
    for n in counts:
        facts = validation[:n]
        _, trace = TimeROMEEditor(backbone, base).trace(facts)
        for name in variants:
            config = base.with_overrides(**VARIANTS[name])
            start = time.monotonic()
            statistics = TimeROMEEditor(backbone, config, retain=calibration
                                        ).backbone_statistics()
            result = tune(backbone, facts, retain, config, grid, max_retain_drop,
                          trace=trace, calibration=calibration, statistics=statistics)
            best = result.chosen
            rows.append({
                "facts": n, "variant": name, "overrides": VARIANTS[name],
                "best": None if best is None else vars(best),
                "safe_points": sum(p.safe for p in result.grid),
                "grid": [vars(p) for p in result.grid],
                "null_space_dims": null_dims(statistics) if config.precondition == "null_space"
                else None,
                "flagged": result.flagged, "seconds": time.monotonic() - start})
            b = rows[-1]["best"]
            print(f"[memory_variants] n={n} {name}: "
                  + ("no safe point" if b is None else
                     f"alpha {b['alpha']:g} lam {b['lam']:g} q {b['q']:g}: forget "
                     f"{b['forget_drop']:.3f} retain {b['retain_drop']:.3f}"),
                  file=sys.stderr, flush=True)
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in rows:
        b = r["best"] or {}
        cells = [r["facts"], r["variant"], b.get("alpha"), b.get("lam"), b.get("q"),
                 b.get("forget_drop"), b.get("retain_drop"), r["safe_points"],
                 r["null_space_dims"]]
        lines.append("| " + " | ".join("-" if c is None else
                                       (f"{c:.3f}" if isinstance(c, float) else str(c))
                                       for c in cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.memory_variants", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="JSON file written (atomically)")
    p.add_argument("--config", default=str(DEFAULT_CONFIG_PATH))
    p.add_argument("--backbone", default=None, help="default: config tuning.backbone")
    p.add_argument("--model", default=None,
                   help="checkpoint directory (default: models/<backbone>/finetuned)")
    p.add_argument("--tofu-dir", default="results/corpus/ca10d666ebd8")
    p.add_argument("--counts", default="10,50", help="validation fact counts")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--lams", default=DEFAULT_LAMS, help="lambda grid")
    p.add_argument("--alphas", default=None, help="alpha grid (default: config tuning.grid)")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    variants = [v for v in args.variants.split(",") if v]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        print(f"error: unknown variant(s) {', '.join(unknown)}; known: {', '.join(VARIANTS)}",
              file=sys.stderr)
        return 2

    from harness.atomic import write_json_atomic
    from harness.backbones.registry import load_backbone
    from harness.data import load_split
    from harness.jobs.selection import tuning_retain
    from harness.jobs.spec import backbone_spec
    from harness.timerome.tuning import TuningGrid

    torch.set_num_threads(args.threads)
    cfg = load_workflow_config(args.config)
    data, tuning = cfg["data"], cfg["tuning"]
    name = args.backbone or tuning["backbone"]
    model = args.model or f"models/{name}/finetuned"
    grid = TuningGrid.from_config({**tuning["grid"],
                                   "lam": [float(x) for x in args.lams.split(",")],
                                   **({"alpha": [float(x) for x in args.alphas.split(",")]}
                                      if args.alphas else {})})
    retain, calibration = tuning_retain(
        args.tofu_dir, data["forget_split"], data["retain_split"], int(data["retain_eval_size"]),
        int(data["eval_seed"]), int(data["retain_train_size"]), data["validation_split"])
    validation = load_split(args.tofu_dir, data["validation_split"])
    counts = [int(c) for c in args.counts.split(",")]
    if max(counts) > len(validation):
        print(f"error: --counts {max(counts)} > {len(validation)} validation facts",
              file=sys.stderr)
        return 2
    backbone = load_backbone(backbone_spec(name, cfg["backbones"][name], model))
    rows = run(backbone, validation, retain, calibration, counts, grid, variants,
               float(tuning["max_retain_drop"]))
    write_json_atomic(args.out, {
        "command": "python -m experiments.memory_variants " + shlex.join(argv or sys.argv[1:]),
        "backbone": backbone.identity(), "model": model, "tofu_dir": args.tofu_dir,
        "grid": vars(grid), "max_retain_drop": float(tuning["max_retain_drop"]),
        "retain_facts": len(retain), "calibration_facts": len(calibration), "rows": rows})
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
