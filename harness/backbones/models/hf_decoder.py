"""Pieces shared by the families that run on a transformers decoder class made bidirectional
(Dream on `Qwen2ForCausalLM`, DiffuLLaMA on `LlamaForCausalLM`): the config checks both
configuration formats share, the logits-tensor forward, and the rotary buffers after a
meta-device build."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from harness.backbones.models.family import UnsupportedConfig, require_fields

@dataclass(frozen=True)
class DecoderGeometry:
    """The config.json fields Qwen2 (Dream) and Llama (DiffuLLaMA) share, under their names."""

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    max_position_embeddings: int
    rms_norm_eps: float
    rope_theta: float
    tie_word_embeddings: bool

    def transformers_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of the transformers config class for the shared fields. transformers
        5 keeps rotary settings in `rope_parameters`; rope_scaling null (the only value the
        parsers accept) is plain RoPE with base rope_theta, i.e. rope_type "default"."""
        return {"vocab_size": self.vocab_size, "hidden_size": self.hidden_size,
                "intermediate_size": self.intermediate_size,
                "num_hidden_layers": self.num_hidden_layers,
                "num_attention_heads": self.num_attention_heads,
                "num_key_value_heads": self.num_key_value_heads,
                "max_position_embeddings": self.max_position_embeddings,
                "rms_norm_eps": self.rms_norm_eps, "use_cache": False,
                "tie_word_embeddings": self.tie_word_embeddings,
                "rope_parameters": {"rope_type": "default", "rope_theta": float(self.rope_theta)}}


REQUIRED = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
            "num_attention_heads", "max_position_embeddings")


def head_layout(raw: dict[str, Any], source: str) -> tuple[int, int]:
    """(attention heads, key/value heads) after the checks both formats share: required
    fields present, no explicit head_dim other than hidden/heads, heads divisible by kv
    heads, a single EOS id, an untied output head."""
    require_fields(raw, source, REQUIRED)
    heads = int(raw["num_attention_heads"])
    kv = int(raw.get("num_key_value_heads") or heads)  # upstream: None means = heads
    if raw.get("head_dim") not in (None, raw["hidden_size"] // max(1, heads)):
        raise UnsupportedConfig(source, "head_dim", raw["head_dim"],
                                "hidden_size // num_attention_heads")
    if raw["hidden_size"] % heads or heads % kv:
        raise UnsupportedConfig(source, "num_key_value_heads", kv,
                                "hidden_size divisible by num_attention_heads, heads by kv heads")
    if isinstance(raw.get("eos_token_id"), list):
        raise UnsupportedConfig(source, "eos_token_id", raw["eos_token_id"], "a single id")
    if raw.get("tie_word_embeddings", False):
        # Dream-7B and LLaMA-2 ship a separate lm_head; the snapshot loader assigns each
        # checkpoint tensor to one parameter and does not re-tie shared ones.
        raise UnsupportedConfig(source, "tie_word_embeddings", raw["tie_word_embeddings"],
                                "false (a separate lm_head.weight)")
    return heads, kv


def geometry_fields(raw: dict[str, Any], source: str) -> dict[str, Any]:
    """`DecoderGeometry`'s fields from a config.json, after `head_layout`'s checks (defaults
    for absent keys as the transformers configuration classes set them)."""
    heads, kv = head_layout(raw, source)
    return {"vocab_size": int(raw["vocab_size"]), "hidden_size": int(raw["hidden_size"]),
            "intermediate_size": int(raw["intermediate_size"]),
            "num_hidden_layers": int(raw["num_hidden_layers"]), "num_attention_heads": heads,
            "num_key_value_heads": kv,
            "max_position_embeddings": int(raw["max_position_embeddings"]),
            "rms_norm_eps": float(raw.get("rms_norm_eps", 1e-6)),
            "rope_theta": float(raw.get("rope_theta", 10000.0)),
            "tie_word_embeddings": bool(raw.get("tie_word_embeddings", False))}


def logits_forward(forward: Callable[..., Any], input_ids: torch.Tensor,
                   attention_mask: torch.Tensor | None) -> torch.Tensor:
    """Call a transformers causal-LM forward and return its logits tensor. With a padding
    mask, positions are `cumsum(mask) - 1` (padding set to 1), as Dream's sampler does
    (`generation_utils.py:394-395`), so padding never moves real tokens' rotary phases."""
    position_ids = None
    if attention_mask is not None:
        keep = attention_mask.to(torch.long)
        position_ids = (keep.cumsum(-1) - 1).masked_fill(keep == 0, 1)
    out = forward(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                  use_cache=False, return_dict=True)
    return out.logits


def reset_rotary_buffers(model: nn.Module) -> None:
    """Recompute every rotary `inv_freq` (non-persistent) on the CPU from the model's config."""
    found = False
    for module in model.modules():
        if hasattr(module, "inv_freq") and hasattr(module, "compute_default_rope_parameters"):
            if module.rope_type != "default":
                raise UnsupportedConfig("<model>", "rope_parameters.rope_type", module.rope_type,
                                        "'default'")
            inv_freq, scaling = module.compute_default_rope_parameters(module.config, device="cpu")
            module.inv_freq = inv_freq.to("cpu")
            if hasattr(module, "original_inv_freq"):
                module.original_inv_freq = inv_freq.clone().to("cpu")
            module.attention_scaling = scaling
            found = True
    if not found:
        raise TypeError(f"{type(model).__name__}: no rotary embedding with inv_freq found")
