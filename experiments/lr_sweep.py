"""Learning-rate sweep of the gradient baselines: at which rate does each collapse the model?

    python -m experiments.lr_sweep --backbone-dir DIR --tofu-dir DIR --out sweep.csv

For every method x learning rate the fine-tuned backbone is reloaded and unlearned on
the forget split for a fixed step budget (no matched-efficacy target, plateau stop off),
with the collapse detector on (retain log-prob drop > `--collapse-retain-drop` nats per
sample, degenerate greedy generations, non-finite loss). One row per run: forget and
retain drops (full_mask, nats per sample), steps, collapsed + reason, seconds. Written
atomically as CSV and as a Markdown table next to it (same stem, `.md`).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import pandas as pd
import torch

from harness.backbones.base import BackboneSpec
from harness.backbones.registry import load_backbone
from harness.data import load_split, retain_split_for
from harness.methods import EditRequest, get_method
from harness.atomic import write_text_atomic as write_atomic

GRADIENT_METHODS = ("gradient_ascent", "graddiff", "npo")
DEFAULT_LRS = (1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2)


@dataclass
class SweepRow:
    method: str
    lr: float
    steps: int
    forget_drop: float | None
    retain_drop: float | None
    collapsed: bool
    collapse_reason: str
    stop_reason: str
    seconds: float


def sweep(backbone_dir: str, tofu_dir: str, forget_split: str = "forget01",
          methods: Sequence[str] = GRADIENT_METHODS, lrs: Sequence[float] = DEFAULT_LRS,
          max_steps: int = 50, eval_every: int = 5, collapse_retain_drop: float = 5.0,
          seed: int = 0, adapter: str = "llada-twin", progress: bool = False
          ) -> list[SweepRow]:
    forget = load_split(tofu_dir, forget_split)
    retain = load_split(tofu_dir, retain_split_for(forget_split))
    spec = BackboneSpec(name=Path(backbone_dir).name, adapter=adapter, path=str(backbone_dir))
    rows: list[SweepRow] = []
    for method in methods:
        for lr in lrs:
            backbone = load_backbone(spec)
            config = {"lr": lr, "max_steps": max_steps, "eval_every": eval_every,
                      "plateau_rel_tol": 0.0, "collapse_retain_drop": collapse_retain_drop,
                      "progress": progress}
            start = time.perf_counter()
            out = get_method(method, config).apply(EditRequest(backbone, forget, retain,
                                                               seed=seed))
            d = out.details
            rows.append(SweepRow(method, lr, out.steps or 0, d.get("forget_drop"),
                                 d.get("retain_drop"), out.collapsed, out.collapse_reason or "",
                                 d.get("stop_reason", ""), time.perf_counter() - start))
            print(f"{method} lr={lr:g}: steps={out.steps} forget_drop={d.get('forget_drop')} "
                  f"retain_drop={d.get('retain_drop')} collapsed={out.collapsed}",
                  file=sys.stderr, flush=True)
    return rows


def collapse_table(rows: Sequence[SweepRow]) -> pd.DataFrame:
    """Per method: the smallest learning rate that collapsed the model (None: none did)."""
    frame = pd.DataFrame([asdict(r) for r in rows])
    out = []
    for method, group in frame.groupby("method", sort=False):
        bad = group[group["collapsed"]]
        ok = group[~group["collapsed"]]
        out.append({"method": method,
                    "first_collapse_lr": float(bad["lr"].min()) if len(bad) else None,
                    "largest_stable_lr": float(ok["lr"].max()) if len(ok) else None})
    return pd.DataFrame(out)


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if value == value else ""
    return "" if value is None else str(value)


def markdown(frame: pd.DataFrame) -> str:
    cols = list(frame.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, row in frame.iterrows():
        lines.append("| " + " | ".join(_fmt(row[c]) for c in cols) + " |")
    return "\n".join(lines) + "\n"




def write_outputs(rows: Sequence[SweepRow], out: Path) -> None:
    frame = pd.DataFrame([asdict(r) for r in rows])
    write_atomic(out, frame.to_csv(index=False))
    md = ("## Learning-rate sweep\n\n" + markdown(frame) +
          "\n## Collapse threshold per method\n\n" + markdown(collapse_table(rows)))
    write_atomic(out.with_suffix(".md"), md)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m experiments.lr_sweep", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbone-dir", required=True, help="fine-tuned checkpoint directory")
    p.add_argument("--tofu-dir", required=True, help="TOFU-format corpus directory")
    p.add_argument("--out", required=True, help="CSV to write (Markdown goes beside it)")
    p.add_argument("--adapter", default="llada-twin")
    p.add_argument("--forget-split", default="forget01")
    p.add_argument("--methods", nargs="+", default=list(GRADIENT_METHODS))
    p.add_argument("--lrs", nargs="+", type=float, default=list(DEFAULT_LRS))
    p.add_argument("--max-steps", type=int, default=50)
    p.add_argument("--eval-every", type=int, default=5)
    p.add_argument("--collapse-retain-drop", type=float, default=5.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if not Path(args.backbone_dir).is_dir():
        raise SystemExit(f"--backbone-dir: not a directory: {args.backbone_dir}")
    rows = sweep(args.backbone_dir, args.tofu_dir, args.forget_split, args.methods, args.lrs,
                 args.max_steps, args.eval_every, args.collapse_retain_drop, args.seed,
                 args.adapter)
    write_outputs(rows, Path(args.out))
    print(markdown(collapse_table(rows)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
