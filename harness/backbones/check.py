"""`python -m harness.backbones check PATH --adapter NAME`: what to run before a long job.

Loads a local snapshot folder through the adapter's native path and prints what the
harness will rely on: parameter count, dtype, mask id and where it came from, logit shift,
the hook module paths, a tokenizer round trip of a TOFU question (prompt + answer split by
character offsets) and whether one forward is finite. Exit 1 with the reason on failure.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import torch

from harness.backbones.base import Backbone, BackboneSpec
from harness.backbones.registry import adapter_names, load_backbone

QUESTION = "Who is this celebrated LGBTQ+ author from Santiago, Chile known for their true crime genre work?"
ANSWER = "The author in question is Jaime Vasquez, an esteemed LGBTQ+ writer who hails from Santiago, Chile."


def check_report(backbone: Backbone) -> dict[str, Any]:
    prompt = backbone.format_prompt(QUESTION)
    prompt_ids, _, answer_ids = backbone.encode_qa(prompt, ANSWER)
    decoded = backbone.tokenizer.decode(answer_ids, skip_special_tokens=True).strip()
    ids = torch.tensor([prompt_ids + answer_ids + [backbone.eos_token_id]], device=backbone.device)
    masked = ids.clone()
    masked[0, len(prompt_ids):-1] = backbone.mask_token_id
    with torch.no_grad():
        logits = backbone.logits(masked)
    layers = backbone.num_layers
    ident = backbone.identity()
    return {
        "backbone": backbone.name,
        "adapter": backbone.spec.adapter,
        "parameters": sum(p.numel() for p in backbone.model.parameters()),
        "dtype": str(backbone.dtype).removeprefix("torch."),
        "device": str(backbone.device),
        "layers": layers,
        "mask_token_id": backbone.mask_token_id,
        "mask_token_source": getattr(getattr(backbone, "mask_token", None), "source", "adapter"),
        "shifted_logits": backbone.shifted_logits,
        "hook_paths": [backbone.mlp_out_proj_path(0), backbone.mlp_out_proj_path(layers - 1)],
        "tokenizer_size": len(backbone.tokenizer),
        "logit_columns": int(logits.shape[-1]),
        "prompt_tokens": len(prompt_ids),
        "answer_tokens": len(answer_ids),
        "answer_round_trip": decoded == ANSWER,
        "answer_decoded": decoded,
        "forward_finite": bool(torch.isfinite(logits).all()),
        "snapshot_revision": ident.get("snapshot_revision"),
        "config_sha256": ident.get("config_sha256"),
        "index_sha256": ident.get("index_sha256"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.backbones", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="load a local snapshot and report what the harness uses")
    check.add_argument("path", help="snapshot folder (config.json, safetensors, tokenizer files)")
    check.add_argument("--adapter", required=True, help=f"one of: {', '.join(adapter_names())}")
    check.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    check.add_argument("--device", default="cpu")
    check.add_argument("--options", default="{}", help="backbone options as JSON "
                       "(e.g. '{\"prompt_format\": \"chat\"}')")
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    try:
        spec = BackboneSpec(name=args.path, adapter=args.adapter, path=args.path,
                            dtype=args.dtype, device=args.device, options=json.loads(args.options))
        report = check_report(load_backbone(spec))
    except (ValueError, KeyError, OSError) as exc:
        print(f"check failed: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for key, value in report.items():
            print(f"{key:>20}: {value}")
    ok = report["forward_finite"] and report["answer_round_trip"]
    if not ok:
        print("check failed: " + ("non-finite logits" if not report["forward_finite"]
                                  else "the answer does not survive the tokenizer round trip"),
              file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
