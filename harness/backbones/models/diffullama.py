"""DiffuLLaMA (diffusionfamily/diffullama) as transformers' own Llama made bidirectional.

DiffuLLaMA is LLaMA-2-7B adapted to masked diffusion; its checkpoint is a plain `LlamaForCausalLM`
(`model_type: "llama"`) and upstream runs it with an all-zero additive 4-D attention mask, i.e. full
bidirectional attention (HKUNLP/DiffuLLaMA `model.py:100,175-187`, `attention_patch.py:305-309`).
Training reads the prediction for position p at p-1 (`DiffuLLaMA-training/train.py`: `logits[:, :-1]`
against `loss_mask[:, 1:]`), so logits stay shifted like Dream's; the adapter unshifts. The mask token is
not in the config (see docs/backbones/dream_diffullama.md: default id 811).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM

from harness.backbones.bidirectional import make_bidirectional
from harness.backbones.models.family import ModelFamily, TinyDims, TokenIds, UnsupportedConfig
from harness.backbones.models.hf_decoder import DecoderGeometry, geometry_fields, logits_forward, reset_rotary_buffers

MODEL_TYPE = "llama"
ARCHITECTURES = ["LlamaForCausalLM"]
# DiffuLLaMA-training/train.py:304 (`--mask_token` default) and LLaMA-Factory loader.py:151-152
UPSTREAM_MASK_TOKEN_ID = 811


@dataclass(frozen=True)
class DiffuLlamaConfig(DecoderGeometry):
    """DiffuLLaMA's config.json fields (LLaMA-2 names) that the forward pass depends on."""

    bos_token_id: int | None
    eos_token_id: int | None
    pad_token_id: int | None = None
    mask_token_id: int | None = None  # absent from the real config.json; tiny twins record one
    hidden_act: str = "silu"
    attention_bias: bool = False
    mlp_bias: bool = False
    attention_dropout: float = 0.0
    pretraining_tp: int = 1
    rope_scaling: None = None
    initializer_range: float = 0.02
    torch_dtype: str | None = "bfloat16"
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def to_llama_config(self) -> LlamaConfig:
        cfg = LlamaConfig(
            **self.transformers_kwargs(), hidden_act=self.hidden_act,
            initializer_range=self.initializer_range, pad_token_id=self.pad_token_id,
            bos_token_id=self.bos_token_id, eos_token_id=self.eos_token_id, pretraining_tp=1,
            attention_bias=False, attention_dropout=0.0, mlp_bias=False)
        cfg.is_causal = False
        return cfg


_KNOWN = {f for f in DiffuLlamaConfig.__dataclass_fields__ if f != "extra"} | {
    "architectures", "model_type", "use_cache", "transformers_version", "_name_or_path", "head_dim"}


def parse_config(raw: dict[str, Any], source: str) -> DiffuLlamaConfig:
    model_type = raw.get("model_type", MODEL_TYPE)
    if model_type != MODEL_TYPE:
        raise UnsupportedConfig(source, "model_type", model_type, f"'{MODEL_TYPE}'")
    checks = (("rope_scaling", None, "null (plain RoPE)"), ("attention_bias", False, "false"),
              ("mlp_bias", False, "false"), ("pretraining_tp", 1, "1"),
              ("hidden_act", "silu", "'silu'"), ("attention_dropout", 0.0, "0.0"))
    for name, ok, supported in checks:
        if name in raw and raw[name] != ok:
            raise UnsupportedConfig(source, name, raw[name], supported)
    return DiffuLlamaConfig(
        **geometry_fields(raw, source),
        bos_token_id=raw.get("bos_token_id", 1), eos_token_id=raw.get("eos_token_id", 2),
        pad_token_id=raw.get("pad_token_id"), mask_token_id=raw.get("mask_token_id"),
        initializer_range=float(raw.get("initializer_range", 0.02)),
        torch_dtype=raw.get("torch_dtype", "bfloat16"),
        extra={k: v for k, v in raw.items() if k not in _KNOWN})


def config_json(cfg: DiffuLlamaConfig) -> dict[str, Any]:
    out: dict[str, Any] = {k: v for k, v in asdict(cfg).items() if k != "extra"}
    if out["mask_token_id"] is None:
        del out["mask_token_id"]  # the real config has no such field
    out.update(cfg.extra)
    out.update({"architectures": list(ARCHITECTURES), "model_type": MODEL_TYPE, "use_cache": False})
    return dict(sorted(out.items()))


class DiffuLlamaLM(LlamaForCausalLM):
    """LlamaForCausalLM whose call returns the (shifted) logits tensor, attention bidirectional."""

    def forward(self, input_ids, attention_mask=None, **_: Any):  # type: ignore[override]
        return logits_forward(super().forward, input_ids, attention_mask)


def build(cfg: DiffuLlamaConfig) -> nn.Module:
    return make_bidirectional(DiffuLlamaLM(cfg.to_llama_config()))


def tiny_config(dims: TinyDims, ids: TokenIds) -> DiffuLlamaConfig:
    return DiffuLlamaConfig(
        vocab_size=ids.vocab_size, hidden_size=dims.d_model, intermediate_size=dims.mlp_hidden,
        num_hidden_layers=dims.n_layers, num_attention_heads=dims.n_heads,
        num_key_value_heads=dims.n_kv_heads, max_position_embeddings=dims.max_positions,
        rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=False,
        bos_token_id=ids.bos_token_id, eos_token_id=ids.eos_token_id,
        pad_token_id=ids.pad_token_id, mask_token_id=ids.mask_token_id, torch_dtype="float32")


def config_mask_token_id(cfg: DiffuLlamaConfig) -> int | None:
    return cfg.mask_token_id


DIFFULLAMA_FAMILY = ModelFamily(name="diffullama", parse_config=parse_config,
                                config_json=config_json, build=build,
                                reset_buffers=reset_rotary_buffers, tiny_config=tiny_config,
                                config_mask_token_id=config_mask_token_id)
