"""Run every baseline at its default settings and tabulate efficacy, cost and peak memory.

    python -m experiments.measure_defaults --backbone-dir DIR --tofu-dir DIR --out table.csv

Each method runs in its own fresh Python process on a freshly loaded backbone, so that
the process's peak resident set size (getrusage ru_maxrss) is that method's alone; a
further process measures plain inference (full_mask scoring of the forget set and of the
retain evaluation subset, what every method also does for its before/after report).
Columns: forget/retain drop (full_mask, nats per sample), wall-clock (sum of
phase_seconds), steps, converged, collapsed, peak RSS, and the ratio of the method's
peak to the inference peak (also as a ratio of increments over the RSS of the loaded
model). CSV + Markdown (same stem, `.md`), written atomically.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any, Sequence

import pandas as pd
import psutil
import torch

from experiments.lr_sweep import markdown
from harness.atomic import write_text_atomic as write_atomic
from harness.evaluation.mean_scores import mean_logprobs
from harness.evaluation.retain_sample import seeded_blocks
from harness.backbones.base import BackboneSpec
from harness.backbones.registry import load_backbone
from harness.data import load_split, retain_split_for
from harness.methods import EditRequest, get_method

METHODS = ("gradient_ascent", "graddiff", "npo", "rome", "memit")
INFERENCE = "inference"


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def run_child(method: str, backbone_dir: str, tofu_dir: str, forget_split: str, seed: int,
              target: float | None, adapter: str, config: dict[str, Any]) -> dict[str, Any]:
    """One measurement inside this process (call it in a fresh process)."""
    forget = load_split(tofu_dir, forget_split)
    retain = load_split(tofu_dir, retain_split_for(forget_split))
    spec = BackboneSpec(name=Path(backbone_dir).name, adapter=adapter, path=backbone_dir)
    backbone = load_backbone(spec)
    loaded_mb = psutil.Process().memory_info().rss / 2**20
    if method == INFERENCE:
        scored = seeded_blocks(retain, [32], seed, last_may_be_short=True)[0]
        mean_logprobs(backbone, forget, scored)
        return {"method": method, "loaded_rss_mb": loaded_mb, "peak_rss_mb": _peak_mb()}
    out = get_method(method, config).apply(EditRequest(backbone, forget, retain, seed=seed,
                                                       target_forget_drop=target))
    d = out.details
    return {"method": method, "loaded_rss_mb": loaded_mb, "peak_rss_mb": _peak_mb(),
            "forget_before": d["forget_logp_before"], "forget_after": d["forget_logp_after"],
            "forget_drop": d["forget_drop"], "retain_drop": d["retain_drop"],
            "wall_clock_s": out.wall_clock_s, "steps": out.steps, "converged": out.converged,
            "collapsed": out.collapsed, "collapse_reason": out.collapse_reason or "",
            "stop_reason": d.get("stop_reason", ""), "lr": d.get("lr"),
            "phase_seconds": json.dumps({k: round(v, 3) for k, v in out.phase_seconds.items()})}


def measure(backbone_dir: str, tofu_dir: str, forget_split: str = "forget01",
            methods: Sequence[str] = METHODS, seed: int = 0, target: float | None = None,
            adapter: str = "llada-twin", threads: int | None = None) -> pd.DataFrame:
    rows = []
    for method in (INFERENCE, *methods):
        cmd = [sys.executable, "-m", "experiments.measure_defaults", "--child", method,
               "--backbone-dir", backbone_dir, "--tofu-dir", tofu_dir, "--forget-split",
               forget_split, "--seed", str(seed), "--adapter", adapter, "--out", "-"]
        if target is not None:
            cmd += ["--target-drop", str(target)]
        if threads:
            cmd += ["--threads", str(threads)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"measurement of '{method}' failed:\n{done.stderr[-2000:]}")
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    frame = pd.DataFrame(rows)
    inf_peak = float(frame.loc[frame.method == INFERENCE, "peak_rss_mb"].iloc[0])
    loaded = float(frame.loc[frame.method == INFERENCE, "loaded_rss_mb"].iloc[0])
    frame["peak_over_inference"] = frame["peak_rss_mb"] / inf_peak
    frame["peak_delta_mb"] = frame["peak_rss_mb"] - inf_peak
    frame["increment_ratio"] = (frame["peak_rss_mb"] - loaded) / max(inf_peak - loaded, 1e-9)
    return frame


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m experiments.measure_defaults", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbone-dir", required=True)
    p.add_argument("--tofu-dir", required=True)
    p.add_argument("--out", required=True, help="CSV path (Markdown beside it)")
    p.add_argument("--forget-split", default="forget01")
    p.add_argument("--methods", nargs="+", default=list(METHODS))
    p.add_argument("--target-drop", type=float, default=None,
                   help="matched-efficacy target for the training baselines (nats)")
    p.add_argument("--adapter", default="llada-twin")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        config = {"progress": False} if args.child in ("gradient_ascent", "graddiff", "npo") else {}
        print(json.dumps(run_child(args.child, args.backbone_dir, args.tofu_dir,
                                   args.forget_split, args.seed, args.target_drop, args.adapter,
                                   config)))
        return 0
    frame = measure(args.backbone_dir, args.tofu_dir, args.forget_split, args.methods,
                    args.seed, args.target_drop, args.adapter, args.threads)
    out = Path(args.out)
    write_atomic(out, frame.to_csv(index=False))
    cols = ["method", "forget_drop", "retain_drop", "wall_clock_s", "steps", "converged",
            "collapsed", "peak_rss_mb", "peak_over_inference", "increment_ratio"]
    table = markdown(frame[[c for c in cols if c in frame.columns]])
    write_atomic(out.with_suffix(".md"), table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
