"""Twin size sweep (issue 13): does a deeper, narrow twin give TimeROME's tracing a signal?

For each (adapter, n_layers, d_model, mlp_hidden, epochs, lr): build the twin on the default
synthetic corpus (written once), fine-tune it with the project's recipe
(`harness.finetune`, FinetuneConfig with the overrides), then measure

- fine-tune wall seconds (the training loop, `FinetuneReport.seconds`);
- memorisation: mean full_mask answer log-prob (nats per answer) on forget01 and on the
  40-fact Table 1 retain sample, greedy ROUGE-L recall on both (`harness.evaluation.mean_scores`);
- the TIE summary (`harness.timerome.tie_summary.summarize_trace`) of tracing the forget01
  facts with the default TimeROME config (positions "window" as harness.jobs.tie, or
  "subject").

One CSV row per configuration (and tracing position mode: --positions window,subject
traces the same fine-tuned twin twice), the whole file rewritten atomically after each
one, so a partial sweep survives. Example:

    python -m experiments.size_sweep --out results/size_sweep.csv \
        --sizes 2x64x192,6x64x192,8x64x256 --epochs 100,60 --lrs 3e-3 --threads 1

Sizes are LAYERSxD_MODELxMLP_HIDDEN[xN_HEADS] (heads default: --n-heads).
"""

from __future__ import annotations

import argparse
import csv
import io
import itertools
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
import yaml

from harness.workflow_config import DEFAULT_CONFIG_PATH, load_workflow_config


FIELDS = ["adapter", "n_layers", "d_model", "n_heads", "mlp_hidden", "params", "epochs", "lr",
          "batch_size", "seed", "finetune_seconds", "final_loss", "forget_logp", "retain_logp",
          "forget_rougeL", "retain_rougeL", "positions", "tie_facts", "corruption_effect",
          "chosen_tie", "median_abs_tie", "located_ratio", "flagged_fraction", "chosen_layers",
          "meets_corruption", "meets_ratio", "meets_flagged", "meets_all", "trace_seconds",
          "eval_seconds", "threads", "overrides", "corpus"]


def parse_size(text: str, n_heads: int) -> dict[str, int]:
    parts = [int(p) for p in text.lower().split("x")]
    if len(parts) not in (3, 4):
        raise argparse.ArgumentTypeError(f"size '{text}': want LAYERSxD_MODELxMLP[xHEADS]")
    dims = {"n_layers": parts[0], "d_model": parts[1], "mlp_hidden": parts[2],
            "n_heads": parts[3] if len(parts) == 4 else n_heads}
    if dims["d_model"] % dims["n_heads"]:
        raise argparse.ArgumentTypeError(f"size '{text}': d_model not divisible by heads")
    return dims


def _list(kind):
    return lambda text: [kind(x) for x in text.split(",") if x.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m experiments.size_sweep", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="CSV to write (rows appended atomically)")
    p.add_argument("--adapters", type=_list(str), default=["llada-twin"])
    p.add_argument("--sizes", type=str, default="2x64x192")
    p.add_argument("--n-heads", type=int, default=2, help="heads when a size does not say")
    p.add_argument("--epochs", type=_list(int), default=None, help="comma list (default recipe)")
    p.add_argument("--lrs", "--lr", dest="lrs", type=_list(float), default=None,
                   help="comma list (default recipe)")
    p.add_argument("--seed", type=int, default=0, help="fine-tune and init seed")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                   help="another FinetuneConfig field (repeatable), e.g. --set batch_size=64")
    p.add_argument("--vocab-size", type=int, default=2048)
    p.add_argument("--tofu-dir", default=None,
                   help="corpus dir (written with the default synthetic config if missing)")
    p.add_argument("--config", default=str(DEFAULT_CONFIG_PATH), help="workflow config (data, "
                   "method_config.timerome, retain_eval_size)")
    p.add_argument("--positions", type=_list(str), default=["window"],
                   help="comma list of tracing position modes (window | subject | "
                        "last_subject); one row per mode, from one fine-tune")
    p.add_argument("--no-rouge", action="store_true", help="skip greedy ROUGE-L")
    p.add_argument("--save-dir", default=None, help="save each fine-tuned twin under DIR/NAME")
    p.add_argument("--option", dest="options", action="append", default=[], metavar="KEY=VALUE",
                   help="another backbone option (repeatable), e.g. --option prompt_format=chat")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--skip-done", action="store_true",
                   help="skip configurations already in --out")
    return p.parse_args(argv)


def read_rows(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def append_row(path: Path, row: dict[str, Any]) -> None:
    """Rewrite `path` atomically with its rows plus `row`."""
    from harness.atomic import write_text_atomic

    rows = read_rows(path) + [row]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(path, buffer.getvalue())


def ensure_corpus(tofu_dir: str | None, data_cfg: dict[str, Any]) -> Path:
    from harness.data import write_synthetic

    synth = data_cfg.get("synthetic", {})
    directory = Path(tofu_dir) if tofu_dir else Path(tempfile.mkdtemp(prefix="size_sweep_"))
    if not (directory / "full.json").exists():
        style = {"answer_style": synth["answer_style"]} if "answer_style" in synth else {}
        write_synthetic(directory, int(synth.get("authors", 100)),
                        int(synth.get("facts_per_author", 10)), int(synth.get("seed", 0)),
                        **style)
    return directory


def finetune_overrides(items: list[str]) -> dict[str, Any]:
    """FIELD=VALUE strings -> FinetuneConfig overrides (values parsed as YAML scalars)."""
    from dataclasses import fields

    from harness.finetune import FinetuneConfig

    known = {f.name for f in fields(FinetuneConfig)}
    out: dict[str, Any] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or name not in known:
            raise SystemExit(f"--set {item!r}: want FIELD=VALUE with FIELD one of "
                             f"{', '.join(sorted(known))}")
        out[name] = yaml.safe_load(value)
    return out


def _round(value: Any, digits: int = 4) -> Any:
    return None if value is None else round(float(value), digits)


def run_one(adapter: str, dims: dict[str, int], epochs: int | None, lr: float | None,
            args: argparse.Namespace, tofu_dir: Path, cfg: dict[str, Any]
            ) -> list[dict[str, Any]]:
    from harness.backbones.base import BackboneSpec
    from harness.backbones.registry import adapter_class
    from harness.data import available_splits, load_corpus
    from harness.finetune import FinetuneConfig, corpus_texts, finetune, training_facts
    from harness.evaluation.mean_scores import mean_logp, rouge_recall
    from harness.jobs.selection import split_selection
    from harness.timerome.config import TimeROMEConfig
    from harness.timerome.editor import TimeROMEEditor
    from harness.timerome.tie_summary import summarize_trace

    data = cfg["data"]  # schema defaults filled (harness.workflow_config)
    batch = int(cfg["evaluation"]["batch_size"])
    estimator = cfg["estimator"]
    eval_seed = int(data["eval_seed"])

    overrides: dict[str, Any] = {"seed": args.seed, **finetune_overrides(args.overrides)}
    if epochs is not None:
        overrides["epochs"] = epochs
    if lr is not None:
        overrides["lr"] = lr
    ft_cfg = replace(FinetuneConfig(), **overrides)
    spec = BackboneSpec(name=f"{adapter}-{dims['n_layers']}x{dims['d_model']}x"
                             f"{dims['mlp_hidden']}", adapter=adapter, device="cpu",
                        options={"size": "tiny", "vocab_size": args.vocab_size, **dims,
                                 **{k: yaml.safe_load(v) for k, _, v in
                                    (o.partition("=") for o in args.options)}})
    corpus = load_corpus(tofu_dir, available_splits(tofu_dir))
    facts, _, _ = training_facts(corpus)
    backbone = adapter_class(adapter).initial(spec, corpus_texts(corpus), ft_cfg.seed)
    n_params = sum(p.numel() for p in backbone.model.parameters())
    print(f"[size_sweep] {spec.name}: {n_params} params, epochs {ft_cfg.epochs}, lr {ft_cfg.lr}",
          flush=True)
    report = finetune(backbone, facts, ft_cfg, progress=False)
    print(f"[size_sweep]   fine-tune {report.seconds:.1f} s, final loss {report.final_loss:.3f}; "
          f"loss every 10 epochs: {[round(x, 3) for x in report.epoch_losses[9::10]]}",
          flush=True)
    if args.save_dir:
        backbone.save_pretrained(str(Path(args.save_dir) / spec.name))

    selection = split_selection(str(tofu_dir), data["forget_split"], data["retain_split"],
                                int(data["retain_eval_size"]), eval_seed,
                                int(data["retain_train_size"]), data["validation_split"])
    start = time.perf_counter()
    forget_logp = mean_logp(backbone, selection.forget, estimator, batch, eval_seed)
    retain_logp = mean_logp(backbone, selection.retain_eval, estimator, batch, eval_seed)
    forget_rouge = retain_rouge = None
    if not args.no_rouge:
        steps = evaluation.get("gen_steps")
        forget_rouge = rouge_recall(backbone, selection.forget, steps, batch, eval_seed)
        retain_rouge = rouge_recall(backbone, selection.retain_eval, steps, batch, eval_seed)
    eval_seconds = time.perf_counter() - start

    rows = []
    for positions in args.positions:
        tr_cfg = TimeROMEConfig.from_dict({**cfg["method_config"].get("timerome", {}),
                                           "positions": positions, "tie_facts": None})
        start = time.perf_counter()
        _, trace = TimeROMEEditor(backbone, tr_cfg).trace(selection.forget)
        trace_seconds = time.perf_counter() - start
        summary = summarize_trace(trace)
        bars = summary.meets_bars()
        row = {"adapter": adapter, **dims, "params": n_params, "epochs": ft_cfg.epochs,
               "lr": ft_cfg.lr, "batch_size": ft_cfg.batch_size, "seed": ft_cfg.seed,
               "finetune_seconds": _round(report.seconds, 1),
               "final_loss": _round(report.final_loss),
               "forget_logp": _round(forget_logp), "retain_logp": _round(retain_logp),
               "forget_rougeL": _round(forget_rouge), "retain_rougeL": _round(retain_rouge),
               "positions": positions, "tie_facts": summary.n_facts,
               "corruption_effect": _round(summary.corruption_effect),
               "chosen_tie": _round(summary.chosen_tie, 5),
               "median_abs_tie": _round(summary.median_abs_tie, 6),
               "located_ratio": _round(summary.located_ratio, 2),
               "flagged_fraction": _round(summary.flagged_fraction, 3),
               "chosen_layers": " ".join(str(l) for l in summary.chosen_layers),
               "meets_corruption": bars["corruption_effect"],
               "meets_ratio": bars["located_ratio"], "meets_flagged": bars["flagged_fraction"],
               "meets_all": all(bars.values()), "trace_seconds": _round(trace_seconds, 1),
               "eval_seconds": _round(eval_seconds, 1), "threads": torch.get_num_threads(),
               "overrides": " ".join(args.overrides + args.options), "corpus": str(tofu_dir)}
        print("[size_sweep]   " + json.dumps({k: row[k] for k in FIELDS[10:24]}), flush=True)
        rows.append(row)
    return rows


def _key(adapter: str, dims: dict[str, int], epochs: Any, lr: Any) -> tuple[str, ...]:
    return (adapter, str(dims["n_layers"]), str(dims["d_model"]), str(dims["mlp_hidden"]),
            str(epochs), str(float(lr)))


def _row_key(row: dict[str, str]) -> tuple[str, ...]:
    return (row["adapter"], row["n_layers"], row["d_model"], row["mlp_hidden"], row["epochs"],
            str(float(row["lr"])))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    from harness.finetune import FinetuneConfig

    cfg = load_workflow_config(args.config)
    tofu_dir = ensure_corpus(args.tofu_dir, cfg["data"])
    print(f"[size_sweep] corpus {tofu_dir}", flush=True)
    out = Path(args.out)
    defaults = FinetuneConfig()
    sizes = [parse_size(s, args.n_heads) for s in args.sizes.split(",") if s.strip()]
    done = {_row_key(r) for r in read_rows(out)} if args.skip_done else set()
    for adapter, dims, epochs, lr in itertools.product(
            args.adapters, sizes, args.epochs or [defaults.epochs], args.lrs or [defaults.lr]):
        if _key(adapter, dims, epochs, lr) in done:
            print(f"[size_sweep] skip {adapter} {dims} {epochs} {lr} (in {out})", flush=True)
            continue
        for row in run_one(adapter, dims, epochs, lr, args, tofu_dir, cfg):
            append_row(out, row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
