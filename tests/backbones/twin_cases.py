"""The six twin backbone rows of the CPU default and their documented facts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

LLADA_FF_OUT = "model.transformer.blocks.{layer}.ff_out"
QWEN_LLAMA_DOWN = "model.layers.{layer}.mlp.down_proj"


@dataclass(frozen=True)
class TwinCase:
    name: str
    adapter: str
    options: dict[str, Any]
    twin_path: str  # documented twin path of mlp_out_proj (docs/backbones.md)
    real_adapter: str
    real_path: str  # documented real path of mlp_out_proj (docs/backbones.md)
    shifted: bool
    native_loss: str  # the family's own training convention: "aligned" | "hf_causal_labels"


CASES = [
    TwinCase("llada-8b-base-twin", "llada-twin", {}, LLADA_FF_OUT, "llada-hf", LLADA_FF_OUT,
             False, "aligned"),
    TwinCase("llada-8b-instruct-twin", "llada-twin", {"prompt_format": "chat"}, LLADA_FF_OUT,
             "llada-hf", LLADA_FF_OUT, False, "aligned"),
    TwinCase("mmada-8b-twin", "mmada-twin", {}, LLADA_FF_OUT, "mmada-hf", LLADA_FF_OUT,
             False, "aligned"),
    TwinCase("dream-7b-twin", "dream-twin", {}, QWEN_LLAMA_DOWN, "dream-hf", QWEN_LLAMA_DOWN,
             True, "hf_causal_labels"),
    TwinCase("diffullama-7b-twin", "diffullama-twin", {}, QWEN_LLAMA_DOWN, "diffullama-hf",
             QWEN_LLAMA_DOWN, True, "hf_causal_labels"),
    TwinCase("llada-moe-twin", "llada-moe-twin", {}, "model.layers.{layer}.mlp.combine",
             "llada-moe-hf", "model.layers.{layer}.mlp.combine", False, "aligned"),
]
CASE_IDS = [c.name for c in CASES]
