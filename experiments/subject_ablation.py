"""How much of each answer flows through the subject's positions? (issue 17, deliverable 3)

TimeROME-DLM adds its update to an MLP output at the fact's subject tokens. What the
subject's tokens wrote into other positions (the answer's masked tokens, the question)
through the attention of that block and of the blocks below does not pass through there.
This experiment ablates the subject positions of a trained backbone, with no memory and no
gate, and scores a fact split:

- `embeddings`: the input embeddings of the subject tokens replaced by the mask token's
  (`mask`), set to zero (`zero`), or with the trace's Gaussian noise added (`noise`,
  3 x the embedding std: tracing.noise_scale);
- `mlp<l>`: block l's MLP output (`Backbone.mlp_out_proj(l)`) at the subject tokens set to
  zero (`zero`), negated (`negate`), or swamped (`swamp`: x -100);

each scored as the change of the answers' full-mask log-probability (nats per fact, the
Table 1 forget column's estimator; the mean and every fact's). These ablations are not an
upper bound of an edit there: an update in a chosen direction can do more (on the 6-layer
base twin the tuned edit at layer 0 removes 16.95 nats, the strongest ablation there 8.26;
docs/measurements/memory_variants.md). A fact that no ablation at any layer moves is one
whose answer the model reads from elsewhere.

    python -m experiments.subject_ablation --out results/subject_ablation.json

One JSON file (--out, atomically) and a markdown table on stdout.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Callable, Sequence

import torch

from harness.workflow_config import DEFAULT_CONFIG_PATH, load_workflow_config

Change = Callable[[torch.Tensor], torch.Tensor]  # subject rows [N, d] -> replacement
MLP_CHANGES: dict[str, Change] = {
    "zero": lambda rows: torch.zeros_like(rows),
    "negate": lambda rows: -rows,
    "swamp": lambda rows: -100.0 * rows,
}
NOISE_MULTIPLIER = 3.0  # the trace's default (TimeROMEConfig.noise_multiplier)


def answer_logp(backbone, facts: Sequence, site=None, change: Change | None = None,
                batch_size: int = 64) -> torch.Tensor:
    """[F] full-mask answer log-probabilities, with `change` applied to `site`'s output at
    each row's subject positions (None: no intervention)."""
    from harness.diffusion.batching import batches, encode_facts
    from harness.evaluation.answer_logprob import full_mask_logprob
    from harness.hooks import forward_hooks

    out = torch.zeros(len(facts))
    for rows, batch in batches(backbone, encode_facts(backbone, facts), batch_size):
        subject = batch.subject_mask.to(backbone.device)

        def hook(_module, _inputs, output):
            output = output.clone()
            output[subject] = change(output[subject]).to(output.dtype)
            return output

        hooks = [(site, hook)] if site is not None else []
        with torch.inference_mode(), forward_hooks(hooks):
            out[torch.tensor(rows)] = full_mask_logprob(backbone, batch).float()
    return out


def interventions(backbone) -> list[tuple[str, str, Any, Change]]:
    """(site name, change name, module, change) for every intervention of the table."""
    from harness.diffusion.seeding import fact_generator

    emb = backbone.input_embeddings()
    mask = emb.weight[backbone.mask_token_id].detach()
    scale = NOISE_MULTIPLIER * float(emb.weight.detach().float().std())

    def noise(rows: torch.Tensor) -> torch.Tensor:
        gen = fact_generator(0, "subject_ablation", salt=1)
        return rows + scale * torch.randn(rows.shape, generator=gen).to(rows.device)

    out = [("embeddings", "mask", emb, lambda rows: mask.expand_as(rows)),
           ("embeddings", "zero", emb, lambda rows: torch.zeros_like(rows)),
           ("embeddings", "noise", emb, noise)]
    for layer in range(backbone.num_layers):
        out += [(f"mlp{layer}", name, backbone.mlp_out_proj(layer), fn)
                for name, fn in MLP_CHANGES.items()]
    return out


def run(backbone, facts: Sequence) -> list[dict[str, Any]]:
    base = answer_logp(backbone, facts)
    rows = []
    for site, name, module, change in interventions(backbone):
        drop = answer_logp(backbone, facts, module, change) - base
        rows.append({"site": site, "change": name, "forget_drop": float(drop.mean()),
                     "per_fact": [round(float(d), 3) for d in drop]})
        print(f"[subject_ablation] {backbone.name} {site} {name}: {float(drop.mean()):.2f}",
              file=sys.stderr, flush=True)
    return rows


def markdown(results: dict[str, list[dict[str, Any]]]) -> str:
    """One row per backbone: the embeddings' mean drops, then per layer the strongest MLP
    ablation's."""
    lines = []
    for name, rows in results.items():
        cells = {f"{r['site']} {r['change']}": r["forget_drop"] for r in rows}
        layers = sorted({r["site"] for r in rows if r["site"].startswith("mlp")},
                        key=lambda s: int(s[3:]))
        best = {l: min(r["forget_drop"] for r in rows if r["site"] == l) for l in layers}
        if not lines:
            lines = ["| backbone | embeddings mask / zero / noise | "
                     + " | ".join(f"{l} (strongest)" for l in layers) + " |",
                     "|" + "---|" * (2 + len(layers))]
        emb = " / ".join(f"{cells[f'embeddings {c}']:.2f}" for c in ("mask", "zero", "noise"))
        lines.append(f"| {name} | {emb} | " + " | ".join(f"{best[l]:.2f}" for l in layers)
                     + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.subject_ablation",
                                description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="JSON file written (atomically)")
    p.add_argument("--config", default=str(DEFAULT_CONFIG_PATH))
    p.add_argument("--backbones", default=None, help="comma list (default: every backbone "
                                                     "of the config)")
    p.add_argument("--models", default="models", help="<models>/<backbone>/finetuned")
    p.add_argument("--tofu-dir", default="results/corpus/ca10d666ebd8")
    p.add_argument("--split", default=None, help="default: config data.forget_split")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)

    from harness.atomic import write_json_atomic
    from harness.backbones.registry import load_backbone
    from harness.data import load_split
    from harness.jobs.spec import backbone_spec

    torch.set_num_threads(args.threads)
    cfg = load_workflow_config(args.config)
    names = args.backbones.split(",") if args.backbones else list(cfg["backbones"])
    unknown = [n for n in names if n not in cfg["backbones"]]
    if unknown:
        print(f"error: unknown backbone(s) {', '.join(unknown)}; known: "
              f"{', '.join(cfg['backbones'])}", file=sys.stderr)
        return 2
    split = args.split or cfg["data"]["forget_split"]
    facts = load_split(args.tofu_dir, split)
    results = {}
    for name in names:
        backbone = load_backbone(backbone_spec(name, cfg["backbones"][name],
                                               f"{args.models}/{name}/finetuned"))
        results[name] = run(backbone, facts)
    write_json_atomic(args.out, {"split": split, "tofu_dir": args.tofu_dir,
                                 "facts": len(facts), "backbones": results})
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
