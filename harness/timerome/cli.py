"""Command line: `python -m harness.timerome {forget,tune,figure} ...`.

forget: trace + edit the facts of a JSON-lines file, save the memory (safetensors) and a
        JSON report next to it (`<out>.report.json`).
tune:   grid search on the validation split of a TOFU-format directory; writes the chosen
        point and the whole grid as JSON.
figure: trace facts with the "window" positions and draw the TIE heatmaps.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Callable, Sequence

from harness.backbones.base import Backbone, BackboneSpec
from harness.backbones.registry import load_backbone
from harness.timerome.config import TimeROMEConfig
from harness.atomic import write_json_atomic
from harness.timerome.facts_io import read_facts


def _backbone(args: argparse.Namespace) -> Backbone:
    spec = BackboneSpec(name=args.name or args.adapter, adapter=args.adapter,
                        path=str(args.backbone_dir), device=args.device)
    return load_backbone(spec)


def _config(args: argparse.Namespace) -> TimeROMEConfig:
    config = TimeROMEConfig()
    if getattr(args, "tuned", None):
        from harness.timerome.tuning import read_tuned_config

        config = read_tuned_config(args.tuned)
    overrides = {k: getattr(args, k) for k in ("alpha", "lam", "q", "seed", "target")
                 if getattr(args, k, None) is not None}
    return config.with_overrides(**overrides)


def cmd_forget(args: argparse.Namespace) -> int:
    from harness.timerome.editor import TimeROMEEditor

    backbone = _backbone(args)
    facts = read_facts(args.facts)
    editor = TimeROMEEditor(backbone, _config(args))
    _, report = editor.edit(facts)
    editor.memory.save(args.out)
    report_path = Path(str(args.out) + ".report.json")
    write_json_atomic(report_path, report.to_dict())
    print(json.dumps({"memory": str(args.out), "report": str(report_path),
                      "edited": report.n_edited, "flagged": len(report.flagged),
                      "phase_seconds": report.phase_seconds}))
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    from harness.data import load_corpus
    from harness.timerome.tuning import retain_sample, tune, write_tuning

    backbone = _backbone(args)
    corpus = load_corpus(args.tofu_dir, ["validation", args.retain_split])
    validation = corpus["validation"]
    retain = retain_sample(corpus[args.retain_split], args.retain_n,
                           {f.author_id for f in validation}, phase=0)
    result = tune(backbone, validation, retain, _config(args))
    write_tuning(result, args.out)
    print(json.dumps({"out": str(args.out), "chosen": result.to_dict()["chosen"],
                      "seconds": result.seconds, "grid_edge": result.grid_edge}))
    if result.edge_warning():
        print(result.edge_warning(), file=sys.stderr)
    return 0 if result.chosen is not None else 1


def cmd_figure(args: argparse.Namespace) -> int:
    from harness.timerome.figure import tie_figure
    from harness.timerome.tracing import trace_facts

    backbone = _backbone(args)
    trace = trace_facts(backbone, read_facts(args.facts),
                        _config(args).with_overrides(positions="window"))
    paths = tie_figure(trace, args.out, title=f"TIE, {backbone.name}")
    print(json.dumps({"figures": [str(p) for p in paths]}))
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "forget": cmd_forget, "tune": cmd_tune, "figure": cmd_figure}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m harness.timerome")
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--backbone-dir", required=True, type=Path)
        p.add_argument("--adapter", default="llada-twin")
        p.add_argument("--name", default=None, help="backbone name (default: the adapter key)")
        p.add_argument("--device", default="cpu")
        p.add_argument("--tuned", type=Path, help="tuning JSON whose chosen point to use")
        p.add_argument("--alpha", type=float)
        p.add_argument("--lam", type=float)
        p.add_argument("--q", type=float)
        p.add_argument("--seed", type=int)
        p.add_argument("--target", choices=("corrupt", "suppress"))

    forget = sub.add_parser("forget", help="edit facts and save the memory")
    common(forget)
    forget.add_argument("--facts", required=True, type=Path)
    forget.add_argument("--out", required=True, type=Path)
    tune_p = sub.add_parser("tune", help="grid search on the validation split")
    common(tune_p)
    tune_p.add_argument("--tofu-dir", required=True, type=Path)
    tune_p.add_argument("--retain-split", default="retain99")
    tune_p.add_argument("--retain-n", type=int, default=40)
    tune_p.add_argument("--out", required=True, type=Path)
    fig = sub.add_parser("figure", help="TIE heatmaps (PNG + PDF)")
    common(fig)
    fig.add_argument("--facts", required=True, type=Path)
    fig.add_argument("--out", required=True, type=Path, help="output prefix")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return COMMANDS[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
