"""Cheaper TIE tracing as measured method variants (issue 16, deliverable 3).

Each variant is TimeROME-DLM's default config (harness/methods/defaults/timerome.yaml) with
a few tracing options changed (`VARIANTS`: fewer noise samples N, fewer levels T, only the
last subject token). For each split given (default: validation, the tuning split, and
forget01, Table 1's forget facts) and each variant, at one operating point (alpha, lam, q:
the tuning record's chosen point, or the defaults), this measures

- trace rows (`TraceResult.forwards`; per fact T x (1 + N x (1 + L x P_f)), P_f the
  fact's traced positions) and trace seconds (wall clock; contended on a shared machine);
- chosen coordinates: the fraction of facts whose chosen (layer, position) equals the
  reference's (`default`, both at tracing seed 0), and the "consensus agreement": the
  fraction equal to the coordinate that maximises the reference's TIE averaged over
  --seeds held-out tracing seeds (the coordinate the reference estimates); flagged facts;
- the forget and retain drops of the edit (mean full_mask log-prob before minus after, nats
  per sample, `harness.evaluation.mean_scores.mean_logprobs`), and, unless --no-grid, the
  best utility-safe point of the alpha grid at the point's (lam, q) (forget drop maximal
  with retain drop <= max_retain_drop, the tune job's rule).

Every variant, the reference included, is traced with --seeds tracing seeds (noise draws and
reveal orders): the table gives mean and sd over them, and `no_worse_within_noise` says
whether a variant's consensus agreement, forget drop and retain drop are no worse than the
reference's by more than `NOISE_SE` standard errors (`CRITERION`). Retain facts are the tune
job's (`harness.jobs.selection.tuning_retain`: a scored sample and calibration facts for the
edit's retain statistics, computed once and shared by every variant; they do not depend on
tracing). One JSON file (--out), and a
markdown table per split on stdout:

    python -m experiments.trace_variants --out results/trace_variants.json \
        --tuning results/tuning/llada-8b-base-twin/seed0.json
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from harness.workflow_config import DEFAULT_CONFIG_PATH, load_workflow_config

REFERENCE = "default"
# Variant name -> overrides of the default config. Names say what is changed.
VARIANTS: dict[str, dict[str, Any]] = {
    REFERENCE: {},
    "N2": {"noise_samples": 2},
    "N1": {"noise_samples": 1},
    "T2": {"times": [1.0, 0.5]},
    "N2T2": {"noise_samples": 2, "times": [1.0, 0.5]},
    "T1": {"times": [1.0]},
    "N8T1": {"noise_samples": 8, "times": [1.0]},  # T2's rows, spent on noise samples
    "last_subject": {"positions": "last_subject"},
}
DEFAULT_VARIANTS = ",".join(VARIANTS)
CONSENSUS_SEED0 = 1000  # held-out tracing seeds of the consensus coordinates: 1000, 1001, ...
COLUMNS = ["variant", "N", "T", "positions", "rows/fact", "trace s", "same coord (seed 0)",
           "consensus agreement", "flagged", "forget drop", "retain drop", "best safe alpha",
           "best forget drop", "best retain drop", "no worse within noise"]


@dataclass(frozen=True)
class OperatingPoint:
    alpha: float
    lam: float
    q: float
    source: str


def operating_point(tuning: str | None) -> OperatingPoint:
    from harness.timerome.config import TimeROMEConfig
    from harness.timerome.tuning import read_chosen

    if tuning is None:
        d = TimeROMEConfig()
        return OperatingPoint(d.alpha, d.lam, d.q, "harness/methods/defaults/timerome.yaml")
    chosen = read_chosen(tuning)
    if chosen is None:
        raise ValueError(f"{tuning}: the tuning found no utility-safe point")
    return OperatingPoint(float(chosen["alpha"]), float(chosen["lam"]), float(chosen["q"]),
                          str(tuning))


def drops(before: tuple[float, float], after: tuple[float, float]) -> dict[str, float]:
    return {"forget_drop": before[0] - after[0], "retain_drop": before[1] - after[1]}


def measure_variant(backbone, facts, retain, statistics, config, before, grid_alphas,
                    max_retain_drop) -> tuple[dict[str, Any], Any]:
    """Trace, edit at `config`'s point, score; then the alpha grid on the same memory."""
    from harness.evaluation.mean_scores import mean_logprobs
    from harness.timerome.editor import TimeROMEEditor

    editor = TimeROMEEditor(backbone, config, statistics=statistics)
    encoded, trace = editor.trace(facts)
    index = editor.selected(trace)
    memory = editor.new_memory()
    editor.solve(memory, editor.extract(encoded, trace, index))
    memory.attach(backbone)
    try:
        at_point = drops(before, mean_logprobs(backbone, facts, retain))
        grid = []
        for alpha in grid_alphas:
            memory.set_operating_point(alpha=alpha, q=config.q)
            grid.append({"alpha": alpha, **drops(before, mean_logprobs(backbone, facts, retain))})
    finally:
        memory.detach()
    safe = [p for p in grid if p["retain_drop"] <= max_retain_drop]
    best = max(safe, key=lambda p: (p["forget_drop"], -p["alpha"])) if safe else None
    row = {"noise_samples": config.noise_samples, "times": list(config.times),
           "positions": config.positions, "seed": config.seed,
           "n_layers": backbone.num_layers, "traced_positions": int(trace.valid.sum()),
           "rows": trace.forwards, "rows_per_fact": trace.forwards / len(facts),
           "trace_seconds": trace.seconds,
           "flagged": int(trace.flagged.sum()),
           "flagged_facts": [k for k, f in zip(trace.fact_keys, trace.flagged.tolist()) if f],
           "edited": len(index), **at_point, "grid": grid, "best_safe": best}
    return row, trace


def coordinates(trace) -> torch.Tensor:
    """[F, 2] chosen (layer, absolute position) of each fact."""
    return torch.stack([trace.layer, trace.position], 1)


def consensus_coordinates(traces: Sequence[Any]) -> torch.Tensor:
    """[F, 2] (layer, position) maximising the TIE averaged over `traces` (the same facts
    and candidate offsets, different tracing seeds), among subject positions as tracing."""
    first = traces[0]
    tie = torch.stack([t.tie for t in traces]).mean(0)  # nan where not traced, in every trace
    eligible = (first.valid & first.is_subject).unsqueeze(1).expand_as(tie)
    n_off = tie.shape[2]
    best = tie.masked_fill(~eligible | tie.isnan(), float("-inf")).flatten(1).argmax(1)
    last_subject = first.position - torch.tensor(first.offsets)[first.offset_index]
    position = last_subject + torch.tensor(first.offsets)[best % n_off]
    return torch.stack([best // n_off, position], 1)


def same_fraction(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a == b).all(1).float().mean())


def mean_sd(values: Sequence[float]) -> dict[str, float]:
    t = torch.tensor(list(values), dtype=torch.float64)
    return {"mean": float(t.mean()), "sd": float(t.std()) if len(t) > 1 else 0.0}


def summarize(name: str, runs: Sequence[tuple[dict[str, Any], Any]], reference_seed0: Any,
              consensus: torch.Tensor) -> dict[str, Any]:
    """One variant over its tracing seeds: costs of seed 0, the rest as mean and sd."""
    rows = [r for r, _ in runs]
    first, first_trace = runs[0]
    bests = [r["best_safe"] for r in rows]
    return {
        "variant": name, "overrides": VARIANTS[name],
        **{k: first[k] for k in ("noise_samples", "times", "positions", "n_layers",
                                 "traced_positions", "rows", "rows_per_fact")},
        "seeds": [r["seed"] for r in rows],
        "trace_seconds": mean_sd([r["trace_seconds"] for r in rows]),
        "same_coordinates_seed0": same_fraction(coordinates(first_trace),
                                                coordinates(reference_seed0)),
        "same_layer_seed0": float((first_trace.layer == reference_seed0.layer).float().mean()),
        # each seed's trace against the reference at seed 0 (for the reference: reseeding)
        "same_coordinates_by_seed": [same_fraction(coordinates(t), coordinates(reference_seed0))
                                     for _, t in runs],
        "consensus_agreement": mean_sd([same_fraction(coordinates(t), consensus)
                                        for _, t in runs]),
        "flagged": mean_sd([r["flagged"] for r in rows]),
        "forget_drop": mean_sd([r["forget_drop"] for r in rows]),
        "retain_drop": mean_sd([r["retain_drop"] for r in rows]),
        "best_safe_alpha": [None if b is None else b["alpha"] for b in bests],
        "best_safe_forget_drop": (mean_sd([b["forget_drop"] for b in bests])
                                  if all(bests) and bests else None),
        "best_safe_retain_drop": (mean_sd([b["retain_drop"] for b in bests])
                                  if all(bests) and bests else None),
        "per_seed": rows,
    }


# The criterion: (key, direction in which a variant is worse). A variant is "no worse than
# the reference within noise" when, for each key, its seed mean is not worse than the
# reference's by more than NOISE_SE standard errors of the difference of the two means.
CRITERION = (("consensus_agreement", -1), ("forget_drop", -1), ("retain_drop", +1))
NOISE_SE = 2.0


def no_worse_within_noise(row: dict[str, Any], reference: dict[str, Any]) -> bool | None:
    k_row, k_ref = len(row["seeds"]), len(reference["seeds"])
    if k_row < 2 or k_ref < 2:
        return None  # no seed spread to judge against
    for key, worse in CRITERION:
        a, b = row[key], reference[key]
        se = (a["sd"] ** 2 / k_row + b["sd"] ** 2 / k_ref) ** 0.5
        if worse * (a["mean"] - b["mean"]) > NOISE_SE * se:
            return False
    return True


def run_split(backbone, facts, retain, statistics, base, variants, seeds, grid_alphas,
              max_retain_drop) -> dict[str, Any]:
    from harness.evaluation.mean_scores import mean_logprobs
    from harness.timerome.tracing import trace_facts

    before = mean_logprobs(backbone, facts, retain)
    # The target coordinates: the reference's TIE averaged over held-out tracing seeds.
    held_out = [CONSENSUS_SEED0 + s for s in range(len(seeds))]
    consensus = consensus_coordinates([trace_facts(backbone, facts, base.with_overrides(seed=s))
                                       for s in held_out])
    rows: dict[str, dict[str, Any]] = {}
    reference_seed0 = None
    for name in variants:
        runs = []
        for seed in seeds:
            config = base.with_overrides(**VARIANTS[name], seed=seed)
            runs.append(measure_variant(backbone, facts, retain, statistics, config, before,
                                        grid_alphas, max_retain_drop))
        if name == REFERENCE:
            reference_seed0 = runs[0][1]
        rows[name] = summarize(name, runs, reference_seed0, consensus)
        r = rows[name]
        print(f"[trace_variants] {name}: rows {r['rows']}, consensus agreement "
              f"{r['consensus_agreement']['mean']:.2f}, forget drop "
              f"{r['forget_drop']['mean']:.3f}, retain drop {r['retain_drop']['mean']:.3f}",
              file=sys.stderr, flush=True)
    for name, row in rows.items():
        row["no_worse_within_noise"] = (None if name == REFERENCE
                                        else no_worse_within_noise(row, rows[REFERENCE]))
    return {"facts": len(facts), "retain_facts": len(retain),
            "before": {"forget_logp": before[0], "retain_logp": before[1]},
            "consensus_seeds": held_out, "variants": [rows[n] for n in variants]}


def _cell(value: Any) -> str:
    if isinstance(value, dict):  # mean and sd over seeds
        return f"{value['mean']:.3f} ± {value['sd']:.3f}"
    if isinstance(value, float):
        return f"{value:.3f}"
    return "-" if value is None else str(value)


def markdown(split: dict[str, Any]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in split["variants"]:
        alphas = sorted({a for a in r["best_safe_alpha"] if a is not None})
        cells = [r["variant"], r["noise_samples"], len(r["times"]), r["positions"],
                 f"{r['rows_per_fact']:.1f}", f"{r['trace_seconds']['mean']:.2f}",
                 r["same_coordinates_seed0"], r["consensus_agreement"], r["flagged"]["mean"],
                 r["forget_drop"], r["retain_drop"], ",".join(f"{a:g}" for a in alphas) or None,
                 r["best_safe_forget_drop"], r["best_safe_retain_drop"],
                 r["no_worse_within_noise"]]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.trace_variants", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="JSON file written (atomically)")
    p.add_argument("--config", default=str(DEFAULT_CONFIG_PATH),
                   help="workflow config: backbone entry, data keys, tuning grid")
    p.add_argument("--backbone", default="llada-8b-base-twin",
                   help="backbone entry of the config (adapter and options)")
    p.add_argument("--model", default=None,
                   help="checkpoint directory (default: models/<backbone>/finetuned)")
    p.add_argument("--tofu-dir", default="results/corpus/ca10d666ebd8")
    p.add_argument("--splits", default="validation,forget01")
    p.add_argument("--variants", default=DEFAULT_VARIANTS,
                   help=f"comma-separated names of {', '.join(VARIANTS)}; "
                        f"'{REFERENCE}' is always run first")
    p.add_argument("--tuning", default=None,
                   help="tuning record whose chosen (alpha, lam, q) is used (default: the "
                        "method defaults)")
    p.add_argument("--retain-eval-size", type=int, default=None,
                   help="default: config data.retain_eval_size")
    p.add_argument("--retain-train-size", type=int, default=None,
                   help="default: config data.retain_train_size")
    p.add_argument("--grid-alphas", default=None,
                   help="comma-separated alphas (default: config tuning.grid.alpha)")
    p.add_argument("--no-grid", action="store_true", help="only the operating point")
    p.add_argument("--seeds", type=int, default=5,
                   help="tracing seeds 0..K-1 per variant, and K held-out seeds for the "
                        "consensus coordinates")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)

    unknown = [v for v in args.variants.split(",") if v and v not in VARIANTS]
    if unknown:
        print(f"error: unknown variant(s) {', '.join(unknown)}; known: {', '.join(VARIANTS)}",
              file=sys.stderr)
        return 2
    variants = [REFERENCE] + [v for v in args.variants.split(",") if v and v != REFERENCE]

    from harness.atomic import write_json_atomic
    from harness.backbones.registry import load_backbone
    from harness.data import load_split
    from harness.jobs.selection import tuning_retain
    from harness.jobs.spec import backbone_spec
    from harness.timerome.config import TimeROMEConfig
    from harness.timerome.editor import TimeROMEEditor

    torch.set_num_threads(args.threads)
    cfg = load_workflow_config(args.config)
    data = cfg["data"]
    model = args.model or f"models/{args.backbone}/finetuned"
    point = operating_point(args.tuning)
    grid_alphas = [] if args.no_grid else (
        [float(a) for a in args.grid_alphas.split(",")] if args.grid_alphas
        else [float(a) for a in cfg["tuning"]["grid"]["alpha"]])
    max_retain_drop = float(cfg["tuning"]["max_retain_drop"])
    retain, calibration = tuning_retain(
        args.tofu_dir, data["forget_split"], data["retain_split"],
        args.retain_eval_size or int(data["retain_eval_size"]), int(data["eval_seed"]),
        args.retain_train_size or int(data["retain_train_size"]), data["validation_split"])
    backbone = load_backbone(backbone_spec(args.backbone, cfg["backbones"][args.backbone], model))
    # every fact traced: the variants are compared on the coordinates their TIE chooses
    base = TimeROMEConfig().with_overrides(alpha=point.alpha, lam=point.lam, q=point.q,
                                           tie_facts=None)
    start = time.monotonic()
    statistics = TimeROMEEditor(backbone, base, retain=calibration).backbone_statistics()
    statistics_seconds = time.monotonic() - start

    result: dict[str, Any] = {
        "command": "python -m experiments.trace_variants " + shlex.join(argv or sys.argv[1:]),
        "backbone": backbone.identity(), "model": model, "tofu_dir": args.tofu_dir,
        "operating_point": vars(point), "base_config": base.to_dict(),
        "reference": REFERENCE, "seeds": list(range(args.seeds)),
        "criterion": {"keys": dict(CRITERION), "standard_errors": NOISE_SE},
        "grid_alphas": grid_alphas, "max_retain_drop": max_retain_drop,
        "calibration_facts": len(calibration), "statistics_seconds": statistics_seconds,
        "threads": args.threads, "load_average_start": os.getloadavg()[0], "splits": {}}
    for split in [s for s in args.splits.split(",") if s]:
        facts = load_split(args.tofu_dir, split)
        result["splits"][split] = run_split(backbone, facts, retain, statistics, base,
                                            variants, list(range(args.seeds)), grid_alphas,
                                            max_retain_drop)
        write_json_atomic(args.out, result)  # a partial run keeps its finished splits
        print(f"\n## {split} ({len(facts)} facts)\n\n{markdown(result['splits'][split])}")
    result["load_average_end"] = os.getloadavg()[0]
    write_json_atomic(Path(args.out), result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
