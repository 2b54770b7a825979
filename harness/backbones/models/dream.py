"""Dream-v0 (Dream-org/Dream-v0-Base-7B) as transformers' own Qwen2 made bidirectional.

Dream's checkpoint is a Qwen2.5-7B layout (`model.embed_tokens`, `model.layers.{i}.self_attn.{q,k,v}_proj`
with bias, `o_proj` without, SwiGLU MLP, RMSNorm, untied `lm_head`) whose attention is run without a
causal mask (upstream `DreamSdpaAttention` passes `is_causal=False`, ZHZisZZ/dllm
`dllm/pipelines/dream/models/modeling_dream.py:262,430`). Its `config.json` carries `model_type: "Dream"`
and an `auto_map` to remote code; here it is parsed field by field into a `Qwen2Config` and nothing from
the hub is executed. See docs/backbones/dream_diffullama.md for the citations.

With a padding mask, positions follow upstream's `generation_utils.py:394-395`
(`cumsum(mask) - 1`, padding positions set to 1) so that left or right padding does not move the
rotary phases of real tokens. Logits stay shifted (prediction for p is read at p-1); the adapter unshifts.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn
from transformers import Qwen2Config, Qwen2ForCausalLM

from harness.backbones.bidirectional import make_bidirectional
from harness.backbones.models.family import ModelFamily, TinyDims, TokenIds, UnsupportedConfig
from harness.backbones.models.hf_decoder import DecoderGeometry, geometry_fields, logits_forward, reset_rotary_buffers

MODEL_TYPE = "Dream"
ARCHITECTURES = ["DreamModel"]
# as published in Dream-org/Dream-v0-Base-7B/config.json (see docs/backbones/dream_diffullama.md)
AUTO_MAP = {"AutoConfig": "configuration_dream.DreamConfig", "AutoModel": "modeling_dream.DreamModel"}


@dataclass(frozen=True)
class DreamConfig(DecoderGeometry):
    """Dream's config.json fields (upstream names) that the forward pass depends on."""

    mask_token_id: int | None
    pad_token_id: int | None
    bos_token_id: int | None
    eos_token_id: int | None
    hidden_act: str = "silu"
    attention_dropout: float = 0.0
    initializer_range: float = 0.02
    rope_scaling: None = None
    use_sliding_window: bool = False
    sliding_window: int | None = None
    max_window_layers: int = 28
    torch_dtype: str | None = "bfloat16"
    extra: dict[str, Any] = field(default_factory=dict, compare=False)  # informational fields kept

    def to_qwen2_config(self) -> Qwen2Config:
        cfg = Qwen2Config(
            **self.transformers_kwargs(), hidden_act=self.hidden_act,
            initializer_range=self.initializer_range, use_sliding_window=False, sliding_window=None, max_window_layers=self.max_window_layers,
            attention_dropout=self.attention_dropout, pad_token_id=self.pad_token_id,
            bos_token_id=self.bos_token_id, eos_token_id=self.eos_token_id)
        cfg.is_causal = False
        return cfg


_KNOWN = {f for f in DreamConfig.__dataclass_fields__ if f != "extra"} | {
    "architectures", "auto_map", "model_type", "use_cache", "transformers_version", "_name_or_path"}


def _check_attention(raw: dict[str, Any], source: str) -> None:
    # fields that other Qwen2-family configs carry; Dream's modelling code has none of these
    if "attention_bias" in raw and raw["attention_bias"] is not True:
        raise UnsupportedConfig(source, "attention_bias", raw["attention_bias"],
                                "absent or true (Dream's q/k/v always carry a bias, o_proj none)")


def parse_config(raw: dict[str, Any], source: str) -> DreamConfig:
    """Dream's config.json -> DreamConfig; values the native model lacks raise UnsupportedConfig."""
    model_type = raw.get("model_type", MODEL_TYPE)
    if model_type != MODEL_TYPE:
        raise UnsupportedConfig(source, "model_type", model_type, f"'{MODEL_TYPE}'")
    if raw.get("rope_scaling") is not None:
        raise UnsupportedConfig(source, "rope_scaling", raw["rope_scaling"], "null (plain RoPE)")
    if raw.get("use_sliding_window", False):
        raise UnsupportedConfig(source, "use_sliding_window", raw["use_sliding_window"], "false")
    if raw.get("hidden_act", "silu") != "silu":
        raise UnsupportedConfig(source, "hidden_act", raw["hidden_act"], "'silu'")
    if float(raw.get("attention_dropout", 0.0)) != 0.0:
        raise UnsupportedConfig(source, "attention_dropout", raw["attention_dropout"], "0.0")
    _check_attention(raw, source)
    eos = raw.get("eos_token_id")
    return DreamConfig(
        **geometry_fields(raw, source),
        # upstream DreamConfig defaults (configuration_dream.py:48-49)
        mask_token_id=raw.get("mask_token_id", 151666), pad_token_id=raw.get("pad_token_id", 151643),
        bos_token_id=raw.get("bos_token_id"), eos_token_id=eos,
        hidden_act="silu", attention_dropout=float(raw.get("attention_dropout", 0.0)),
        initializer_range=float(raw.get("initializer_range", 0.02)), rope_scaling=None,
        use_sliding_window=False, sliding_window=raw.get("sliding_window"),
        max_window_layers=int(raw.get("max_window_layers", 28)),
        torch_dtype=raw.get("torch_dtype", "bfloat16"),
        extra={k: v for k, v in raw.items() if k not in _KNOWN})


def config_json(cfg: DreamConfig) -> dict[str, Any]:
    """DreamConfig -> config.json in Dream's on-disk format (keys sorted as transformers writes)."""
    out: dict[str, Any] = {k: v for k, v in asdict(cfg).items() if k != "extra"}
    out.update(cfg.extra)
    out.update({"architectures": list(ARCHITECTURES), "auto_map": dict(AUTO_MAP),
                "model_type": MODEL_TYPE, "use_cache": False})
    return dict(sorted(out.items()))


class DreamLM(Qwen2ForCausalLM):
    """Qwen2ForCausalLM whose call returns the (shifted) logits tensor, attention bidirectional."""

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                **_: Any) -> torch.Tensor:  # type: ignore[override]
        return logits_forward(super().forward, input_ids, attention_mask)


def build(cfg: DreamConfig) -> nn.Module:
    model = DreamLM(cfg.to_qwen2_config())
    return make_bidirectional(model)


def tiny_config(dims: TinyDims, ids: TokenIds) -> DreamConfig:
    return DreamConfig(
        vocab_size=ids.vocab_size, hidden_size=dims.d_model, intermediate_size=dims.mlp_hidden,
        num_hidden_layers=dims.n_layers, num_attention_heads=dims.n_heads,
        num_key_value_heads=dims.n_kv_heads, max_position_embeddings=dims.max_positions,
        rms_norm_eps=1e-6, rope_theta=1000000.0, tie_word_embeddings=False,
        mask_token_id=ids.mask_token_id, pad_token_id=ids.pad_token_id,
        bos_token_id=ids.bos_token_id if ids.bos_token_id is not None else ids.eos_token_id,
        eos_token_id=ids.eos_token_id, max_window_layers=dims.n_layers, torch_dtype="float32")


def config_mask_token_id(cfg: DreamConfig) -> int | None:
    return cfg.mask_token_id


DREAM_FAMILY = ModelFamily(name="dream", parse_config=parse_config, config_json=config_json,
                           build=build, reset_buffers=reset_rotary_buffers,
                           tiny_config=tiny_config, config_mask_token_id=config_mask_token_id)
