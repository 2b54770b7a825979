"""CLI: python -m harness.finetune --tofu-dir DIR --out DIR [--exclude-split forget01 ...]"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields, replace

import torch

from harness.backbones.native import TwinBackbone
from harness.backbones.registry import adapter_class

from harness.backbones.base import BackboneSpec
from harness.finetune.config import EMBEDDED_OPTIONS, FinetuneConfig
from harness.finetune.train import train_backbone


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    defaults = FinetuneConfig()
    p = argparse.ArgumentParser(prog="python -m harness.finetune", description=__doc__)
    p.add_argument("--tofu-dir", required=True, help="TOFU-format corpus directory")
    p.add_argument("--out", required=True, help="checkpoint directory to write")
    p.add_argument("--adapter", default="llada-twin")
    p.add_argument("--name", default=None, help="backbone name (default: the adapter key)")
    p.add_argument("--size", default=EMBEDDED_OPTIONS["size"], help="twin size (twin adapters)")
    p.add_argument("--vocab-size", type=int, default=EMBEDDED_OPTIONS["vocab_size"])
    p.add_argument("--exclude-split", action="append", default=[],
                   help="drop this split's facts from training (repeatable; retain model)")
    p.add_argument("--epochs", type=int, default=defaults.epochs)
    p.add_argument("--lr", type=float, default=defaults.lr)
    p.add_argument("--batch-size", type=int, default=defaults.batch_size)
    p.add_argument("--seed", type=int, default=defaults.seed)
    p.add_argument("--eps", type=float, default=defaults.eps, help="t ~ U(eps, 1]")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    twin = issubclass(adapter_class(args.adapter), TwinBackbone)  # type: ignore[arg-type]
    options = {"size": args.size, "vocab_size": args.vocab_size} if twin else {}
    spec = BackboneSpec(name=args.name or args.adapter, adapter=args.adapter,
                        device=args.device, options=options)
    known = {f.name for f in fields(FinetuneConfig)}
    overrides = {k: v for k, v in vars(args).items() if k in known}
    cfg = replace(FinetuneConfig(), **overrides)
    report = train_backbone(spec, args.tofu_dir, args.out, cfg, tuple(args.exclude_split),
                            progress=not args.no_progress)
    summary = {"checkpoint": report.checkpoint_dir, "seconds": round(report.seconds, 1),
               "cpu_seconds": round(report.cpu_seconds, 1),
               "n_facts": report.n_facts, "final_loss": round(report.final_loss, 4)}
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
