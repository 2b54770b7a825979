"""LLaDA (and MMaDA's language tower), written natively: no hub code is executed.

The module tree reproduces the parameter names of the checkpoints published as
`LLaDAModelLM` (GSAI-ML/LLaDA-8B-Base, -Instruct) and `MMadaModelLM` (Gen-Verse/MMaDA-8B-*):

    model.transformer.wte.weight                      [embedding_size or vocab_size, d_model]
    model.transformer.blocks.{i}.attn_norm.weight     RMSNorm before attention
    model.transformer.blocks.{i}.{q,k,v}_proj.weight  (+ .bias if include_bias or include_qkv_bias)
    model.transformer.blocks.{i}.attn_out.weight      (+ .bias if include_bias)
    model.transformer.blocks.{i}.ff_norm.weight       RMSNorm before the MLP
    model.transformer.blocks.{i}.{ff_proj,up_proj,ff_out}.weight   silu(ff_proj(x)) * up_proj(x) -> ff_out
    model.transformer.ln_f.weight                     final RMSNorm
    model.transformer.ff_out.weight                   output head (absent when weight_tying)

Only the "llama" block with RMSNorm, SiLU gating and rotary positions is implemented (that is
what the released 8B checkpoints use); any other value of a config field that changes the
numbers raises `UnsupportedConfig`. Attention is bidirectional; `attention_mask` only hides
padding keys. Sources for every fact are listed in docs/backbones/llada.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from harness.backbones.models.family import (MissingConfigField, ModelFamily, TinyDims, TokenIds,
                                             UnsupportedConfig, at_queries)


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LLaDAConfig:
    """The config.json fields LLaDA's text forward depends on, under their upstream names.

    `n_kv_heads` and `mlp_hidden_size` hold the *effective* values (upstream resolves
    n_kv_heads=None / multi_query_attention and mlp_hidden_size=None / mlp_ratio the same way).
    Fields whose only supported value is the default are kept so that the config is explicit.
    """

    d_model: int
    n_heads: int
    n_kv_heads: int
    n_layers: int
    mlp_hidden_size: int
    vocab_size: int
    embedding_size: int | None
    max_sequence_length: int
    rope_theta: float
    rms_norm_eps: float = 1e-5
    rope_full_precision: bool = True
    include_bias: bool = False
    include_qkv_bias: bool = False
    bias_for_layer_norm: bool | None = None  # None: follows include_bias (upstream rule)
    layer_norm_with_affine: bool = True
    weight_tying: bool = False
    mask_token_id: int | None = None
    eos_token_id: int | None = None
    pad_token_id: int | None = None
    mlp_ratio: int = 4
    # Fields with a single supported value (anything else raises UnsupportedConfig).
    activation_type: str = "silu"
    block_type: str = "llama"
    layer_norm_type: str = "rms"
    rope: bool = True
    alibi: bool = False
    attention_layer_norm: bool = False
    input_emb_norm: bool = False
    scale_logits: bool = False
    block_group_size: int = 1
    # Unknown config.json keys (e.g. MMaDA's VQ/vision settings), kept verbatim for writing.
    extra: tuple[tuple[str, Any], ...] = field(default=(), compare=True)

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def n_embeddings(self) -> int:
        """Rows of wte / columns of the logits: embedding_size if set, else vocab_size."""
        return self.embedding_size or self.vocab_size

    @property
    def norm_has_weight(self) -> bool:
        return self.layer_norm_with_affine

    @property
    def norm_has_bias(self) -> bool:
        if not self.layer_norm_with_affine:
            return False
        return self.include_bias if self.bias_for_layer_norm is None else self.bias_for_layer_norm


# Upstream `ModelConfig` fields (and HF bookkeeping keys) that do not change the eval forward
# numbers or the parameter names. They are written by `config_json` at the values of the
# released 8B config and never kept in `extra`.
_NON_FORWARD_DEFAULTS: dict[str, Any] = {
    "alibi_bias_max": 8.0,
    "attention_dropout": 0.0,
    "attention_layer_norm_with_affine": True,
    "embedding_dropout": 0.0,
    "flash_attention": False,
    "init_cutoff_factor": None,
    "init_device": "meta",
    "init_fn": "mitchell",
    "init_std": 0.02,
    "multi_query_attention": None,
    "precision": "amp_bf16",
    "residual_dropout": 0.0,
    "use_cache": False,
}
_BOOKKEEPING_KEYS = {"architectures", "auto_map", "model_type", "transformers_version",
                     "torch_dtype", "dtype", "_name_or_path"}

# name -> (supported value(s), human description of what is supported)
_SINGLE_VALUED: dict[str, tuple[tuple[Any, ...], str]] = {
    "block_type": (("llama",), "'llama' (LLaDALlamaBlock: separate q/k/v_proj, ff_proj*up_proj)"),
    "activation_type": (("silu",), "'silu' (upstream 'swiglu' cannot run in the llama block: it "
                                   "halves ff_proj's output, which then mismatches up_proj)"),
    "layer_norm_type": (("rms",), "'rms' (RMSLayerNorm)"),
    "rope": ((True,), "true (rotary positions; upstream asserts rope for MDM)"),
    "alibi": ((False,), "false (upstream asserts not alibi for MDM)"),
    "attention_layer_norm": ((False,), "false (no q/k layer norm)"),
    "input_emb_norm": ((False,), "false (no sqrt(d_model) embedding scaling)"),
    "scale_logits": ((False,), "false (no 1/sqrt(d_model) logit scaling)"),
    "block_group_size": ((1,), "1 (block groups rename parameters to transformer.block_groups.*)"),
}

# Upstream ModelConfig defaults used when a key is absent (LLaDAConfig fills them in the same way).
_OPTIONAL_DEFAULTS: dict[str, Any] = {
    "rms_norm_eps": 1e-5,
    "rope_full_precision": True,
    "include_bias": False,
    "include_qkv_bias": False,
    "bias_for_layer_norm": None,
    "layer_norm_with_affine": True,
    "alibi": False,
    "attention_layer_norm": False,
    "input_emb_norm": False,
    "scale_logits": False,
    "block_group_size": 1,
    "multi_query_attention": None,
    "mlp_ratio": 4,
    "max_sequence_length": 1024,
}

_REQUIRED = ("d_model", "n_heads", "n_layers", "vocab_size", "embedding_size", "block_type",
             "activation_type", "layer_norm_type", "rope", "rope_theta", "weight_tying")


def _check_type(source: str, name: str, value: Any, kind: type | tuple[type, ...],
                nullable: bool = False) -> Any:
    if value is None and nullable:
        return None
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is int and isinstance(value, bool):
        raise ValueError(f"{source}: config field '{name}' must be an integer, got {value!r}")
    if not isinstance(value, kind):
        raise ValueError(f"{source}: config field '{name}' has type {type(value).__name__}, "
                         f"expected {getattr(kind, '__name__', kind)} ({value!r})")
    return value


def _parse(raw: dict[str, Any], source: str, family: str, model_types: tuple[str, ...]) -> LLaDAConfig:
    if not isinstance(raw, dict):
        raise ValueError(f"{source}: config.json must hold a JSON object, got {type(raw).__name__}")
    for name in _REQUIRED:
        if name not in raw:
            detail = (" (upstream's fallback 50304 is GPT-2's; write null for vocab_size)"
                      if name == "embedding_size" else "")
            raise MissingConfigField(source, name, detail)
    if "mlp_hidden_size" not in raw and "mlp_ratio" not in raw:
        raise MissingConfigField(source, "mlp_hidden_size", " (and no mlp_ratio to derive it from)")
    model_type = raw.get("model_type")
    if model_type is not None and model_type not in model_types:
        raise UnsupportedConfig(source, "model_type", model_type,
                                f"{' or '.join(repr(m) for m in model_types)} for the {family} family")

    def get(name: str) -> Any:
        return raw[name] if name in raw else _OPTIONAL_DEFAULTS[name]

    for name, (allowed, text) in _SINGLE_VALUED.items():
        value = get(name)
        if value not in allowed or type(value) is not type(allowed[0]):
            raise UnsupportedConfig(source, name, value, text)
    if raw.get("clip_qkv") is not None:  # OLMo field; LLaDA's ModelConfig has no such option
        raise UnsupportedConfig(source, "clip_qkv", raw["clip_qkv"], "null (no q/k/v clipping)")
    if raw.get("rope_scaling") is not None:
        raise UnsupportedConfig(source, "rope_scaling", raw["rope_scaling"], "null (plain RoPE)")

    d_model = _check_type(source, "d_model", raw["d_model"], int)
    n_heads = _check_type(source, "n_heads", raw["n_heads"], int)
    n_layers = _check_type(source, "n_layers", raw["n_layers"], int)
    vocab_size = _check_type(source, "vocab_size", raw["vocab_size"], int)
    embedding_size = _check_type(source, "embedding_size", raw["embedding_size"], int, nullable=True)
    if d_model <= 0 or n_heads <= 0 or n_layers <= 0 or vocab_size <= 0:
        raise ValueError(f"{source}: d_model, n_heads, n_layers, vocab_size must be positive")
    if d_model % n_heads:
        raise ValueError(f"{source}: d_model={d_model} is not divisible by n_heads={n_heads}")
    if embedding_size is not None and embedding_size < vocab_size:
        raise ValueError(f"{source}: embedding_size={embedding_size} < vocab_size={vocab_size}")

    # effective_n_kv_heads (configuration_llada.py ModelConfig.effective_n_kv_heads).
    n_kv = _check_type(source, "n_kv_heads", raw.get("n_kv_heads"), int, nullable=True)
    mqa = _check_type(source, "multi_query_attention", get("multi_query_attention"), bool, nullable=True)
    if n_kv is None:
        n_kv = 1 if mqa else n_heads
    elif mqa is not None and n_kv != (1 if mqa else n_heads):
        raise ValueError(f"{source}: n_kv_heads={n_kv} contradicts multi_query_attention={mqa}")
    if n_kv <= 0 or n_heads % n_kv:
        raise ValueError(f"{source}: n_heads={n_heads} is not a multiple of n_kv_heads={n_kv}")

    mlp_ratio = _check_type(source, "mlp_ratio", get("mlp_ratio"), int)
    mlp_hidden = _check_type(source, "mlp_hidden_size", raw.get("mlp_hidden_size"), int, nullable=True)
    if mlp_hidden is None:
        mlp_hidden = mlp_ratio * d_model

    known = (set(_REQUIRED) | set(_OPTIONAL_DEFAULTS) | set(_NON_FORWARD_DEFAULTS) | _BOOKKEEPING_KEYS
             | {"n_kv_heads", "mlp_hidden_size", "mask_token_id", "eos_token_id", "pad_token_id",
                "clip_qkv", "rope_scaling"})
    extra = tuple(sorted((k, v) for k, v in raw.items() if k not in known))

    def opt_id(name: str) -> int | None:
        return _check_type(source, name, raw.get(name), int, nullable=True)

    return LLaDAConfig(
        d_model=d_model, n_heads=n_heads, n_kv_heads=n_kv, n_layers=n_layers,
        mlp_hidden_size=mlp_hidden, vocab_size=vocab_size, embedding_size=embedding_size,
        max_sequence_length=_check_type(source, "max_sequence_length", get("max_sequence_length"), int),
        rope_theta=_check_type(source, "rope_theta", raw["rope_theta"], float),
        rms_norm_eps=_check_type(source, "rms_norm_eps", get("rms_norm_eps"), float),
        rope_full_precision=_check_type(source, "rope_full_precision", get("rope_full_precision"), bool),
        include_bias=_check_type(source, "include_bias", get("include_bias"), bool),
        include_qkv_bias=bool(_check_type(source, "include_qkv_bias", get("include_qkv_bias"), bool,
                                          nullable=True)),
        bias_for_layer_norm=_check_type(source, "bias_for_layer_norm", get("bias_for_layer_norm"), bool,
                                        nullable=True),
        layer_norm_with_affine=_check_type(source, "layer_norm_with_affine",
                                           get("layer_norm_with_affine"), bool),
        weight_tying=_check_type(source, "weight_tying", raw["weight_tying"], bool),
        mask_token_id=opt_id("mask_token_id"), eos_token_id=opt_id("eos_token_id"),
        pad_token_id=opt_id("pad_token_id"), mlp_ratio=mlp_ratio,
        activation_type=raw["activation_type"], block_type=raw["block_type"],
        layer_norm_type=raw["layer_norm_type"], rope=raw["rope"], alibi=get("alibi"),
        attention_layer_norm=get("attention_layer_norm"), input_emb_norm=get("input_emb_norm"),
        scale_logits=get("scale_logits"), block_group_size=get("block_group_size"), extra=extra,
    )


def _write(cfg: LLaDAConfig, header: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = dict(header)
    out.update(_NON_FORWARD_DEFAULTS)
    out.update({
        "activation_type": cfg.activation_type, "alibi": cfg.alibi,
        "attention_layer_norm": cfg.attention_layer_norm, "bias_for_layer_norm": cfg.bias_for_layer_norm,
        "block_group_size": cfg.block_group_size, "block_type": cfg.block_type, "d_model": cfg.d_model,
        "embedding_size": cfg.embedding_size, "eos_token_id": cfg.eos_token_id,
        "include_bias": cfg.include_bias, "include_qkv_bias": cfg.include_qkv_bias,
        "input_emb_norm": cfg.input_emb_norm, "layer_norm_type": cfg.layer_norm_type,
        "layer_norm_with_affine": cfg.layer_norm_with_affine, "mask_token_id": cfg.mask_token_id,
        "max_sequence_length": cfg.max_sequence_length, "mlp_hidden_size": cfg.mlp_hidden_size,
        "mlp_ratio": cfg.mlp_ratio, "n_heads": cfg.n_heads, "n_kv_heads": cfg.n_kv_heads,
        "n_layers": cfg.n_layers, "pad_token_id": cfg.pad_token_id, "rms_norm_eps": cfg.rms_norm_eps,
        "rope": cfg.rope, "rope_full_precision": cfg.rope_full_precision, "rope_theta": cfg.rope_theta,
        "scale_logits": cfg.scale_logits, "vocab_size": cfg.vocab_size, "weight_tying": cfg.weight_tying,
    })
    out.update(dict(cfg.extra))
    return dict(sorted(out.items()))


def parse_config(raw: dict[str, Any], source: str) -> LLaDAConfig:
    """LLaDA's config.json (model_type 'llada', architectures ['LLaDAModelLM'])."""
    return _parse(raw, source, "llada", ("llada",))


def config_json(cfg: LLaDAConfig) -> dict[str, Any]:
    return _write(cfg, {
        "architectures": ["LLaDAModelLM"],
        "auto_map": {"AutoConfig": "configuration_llada.LLaDAConfig",
                     "AutoModelForCausalLM": "modeling_llada.LLaDAModelLM",
                     "AutoModel": "modeling_llada.LLaDAModelLM"},
        "model_type": "llada",
    })


def parse_mmada_config(raw: dict[str, Any], source: str) -> LLaDAConfig:
    """MMaDA's config.json: LLaDA's fields at top level plus MMaDA keys (kept in `extra`)."""
    return _parse(raw, source, "mmada", ("mmada",))


def mmada_config_json(cfg: LLaDAConfig) -> dict[str, Any]:
    return _write(cfg, {"architectures": ["MMadaModelLM"], "model_type": "mmada"})


def tiny_config(dims: TinyDims, ids: TokenIds) -> LLaDAConfig:
    """A structural twin: the released 8B config's choices, tiny sizes, untied head."""
    if dims.n_experts:
        raise ValueError("LLaDA is a dense model; TinyDims.n_experts must be 0")
    extra = (("bos_token_id", ids.bos_token_id),) if ids.bos_token_id is not None else ()
    return LLaDAConfig(
        d_model=dims.d_model, n_heads=dims.n_heads, n_kv_heads=dims.n_kv_heads, n_layers=dims.n_layers,
        mlp_hidden_size=dims.mlp_hidden, vocab_size=ids.vocab_size, embedding_size=ids.vocab_size,
        max_sequence_length=dims.max_positions, rope_theta=500000.0, rms_norm_eps=1e-5,
        weight_tying=False, mask_token_id=ids.mask_token_id, eos_token_id=ids.eos_token_id,
        pad_token_id=ids.pad_token_id, extra=extra)


def mmada_tiny_config(dims: TinyDims, ids: TokenIds) -> LLaDAConfig:
    """As `tiny_config`, plus MMaDA's non-forward keys (values as in MMaDA's training configs)."""
    cfg = tiny_config(dims, ids)
    mmada = {"llm_vocab_size": ids.vocab_size, "new_vocab_size": ids.vocab_size, "codebook_size": 8192,
             "num_vq_tokens": 256, "num_new_special_tokens": 0, "tie_word_embeddings": False,
             "w_clip_vit": False}
    return replace(cfg, extra=tuple(sorted({**dict(cfg.extra), **mmada}.items())))


def config_mask_token_id(cfg: LLaDAConfig) -> int | None:
    return cfg.mask_token_id


# --------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------

class RMSNorm(nn.Module):
    """Upstream RMSLayerNorm: normalise in float32, cast back, then scale (and shift)."""

    def __init__(self, cfg: LLaDAConfig):
        super().__init__()
        self.eps = cfg.rms_norm_eps
        self.weight = nn.Parameter(torch.ones(cfg.d_model)) if cfg.norm_has_weight else None
        self.bias = nn.Parameter(torch.zeros(cfg.d_model)) if cfg.norm_has_bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        x = (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype)
        if self.weight is not None:
            x = self.weight * x
        if self.bias is not None:
            x = x + self.bias
        return x


def rotary_tables(seq_len: int, head_dim: int, theta: float, device) -> tuple[torch.Tensor, torch.Tensor]:
    """float32 (sin, cos) of shape [seq_len, head_dim], the two halves repeated (rotate-half RoPE)."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, device=device, dtype=torch.float) / head_dim))
    freqs = torch.outer(torch.arange(seq_len, device=device, dtype=torch.float), inv_freq)
    angles = torch.cat([freqs, freqs], dim=-1)
    return angles.sin(), angles.cos()


def apply_rotary(t: torch.Tensor, sin: torch.Tensor, cos: torch.Tensor) -> torch.Tensor:
    """t * cos + rotate_half(t) * sin, rotate_half(t) = [-second half, first half]; written
    half by half (the same numbers: a + (-b) * s == a - b * s) without the rotated copy."""
    half = t.shape[-1] // 2
    out = t * cos
    out[..., :half] -= t[..., half:] * sin[..., :half]
    out[..., half:] += t[..., :half] * sin[..., half:]
    return out


class LLaDABlock(nn.Module):
    """LLaDALlamaBlock: x + attn(attn_norm(x)); then + ff_out(silu(ff_proj(h)) * up_proj(h))."""

    def __init__(self, cfg: LLaDAConfig):
        super().__init__()
        self.cfg = cfg
        d, kv = cfg.d_model, cfg.n_kv_heads * cfg.head_dim
        qkv_bias = cfg.include_bias or cfg.include_qkv_bias
        self.attn_norm = RMSNorm(cfg)
        self.q_proj = nn.Linear(d, d, bias=qkv_bias)
        self.k_proj = nn.Linear(d, kv, bias=qkv_bias)
        self.v_proj = nn.Linear(d, kv, bias=qkv_bias)
        self.attn_out = nn.Linear(d, d, bias=cfg.include_bias)
        self.ff_norm = RMSNorm(cfg)
        self.ff_proj = nn.Linear(d, cfg.mlp_hidden_size, bias=cfg.include_bias)
        self.up_proj = nn.Linear(d, cfg.mlp_hidden_size, bias=cfg.include_bias)
        self.ff_out = nn.Linear(cfg.mlp_hidden_size, d, bias=cfg.include_bias)

    def attention(self, x: torch.Tensor, sin: torch.Tensor, cos: torch.Tensor,
                  bias: torch.Tensor | None, queries: torch.Tensor | None = None) -> torch.Tensor:
        """[B, L, d], or [B, P, d] for the query positions `queries` [B, P] alone (keys and
        values still come from every position)."""
        cfg = self.cfg
        b, l, _ = x.shape
        xq = x if queries is None else at_queries(x, queries)
        q = self.q_proj(xq).view(b, xq.shape[1], cfg.n_heads, cfg.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, l, cfg.n_kv_heads, cfg.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, l, cfg.n_kv_heads, cfg.head_dim).transpose(1, 2)
        rope_dtype = torch.float32 if cfg.rope_full_precision else q.dtype
        sin_q, cos_q = (sin, cos) if queries is None else \
            (sin[queries].unsqueeze(1), cos[queries].unsqueeze(1))  # [B, 1, P, head_dim]
        q = apply_rotary(q.to(rope_dtype), sin_q.to(rope_dtype), cos_q.to(rope_dtype)).to(v.dtype)
        k = apply_rotary(k.to(rope_dtype), sin.to(rope_dtype), cos.to(rope_dtype)).to(v.dtype)
        if cfg.n_kv_heads != cfg.n_heads:  # GQA: kv head j serves query heads j*g .. j*g+g-1
            group = cfg.n_heads // cfg.n_kv_heads
            k = k.repeat_interleave(group, dim=1)
            v = v.repeat_interleave(group, dim=1)
        att = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, is_causal=False)
        return self.attn_out(att.transpose(1, 2).reshape(b, xq.shape[1], cfg.d_model))

    def forward(self, x: torch.Tensor, sin: torch.Tensor, cos: torch.Tensor,
                bias: torch.Tensor | None, queries: torch.Tensor | None = None) -> torch.Tensor:
        """The block's output [B, L, d]; with `queries` [B, P] (ModelFamily.query_blocks) the
        output at those positions only, [B, P, d]: the same numbers, computed for P rows."""
        residual = x if queries is None else at_queries(x, queries)
        x = residual + self.attention(self.attn_norm(x), sin, cos, bias, queries)
        h = self.ff_norm(x)
        return x + self.ff_out(F.silu(self.ff_proj(h)) * self.up_proj(h))


class LLaDAModel(nn.Module):
    """Upstream `LLaDAModel`: everything lives in the `transformer` ModuleDict."""

    def __init__(self, cfg: LLaDAConfig):
        super().__init__()
        self.config = cfg
        self.transformer = nn.ModuleDict({
            "wte": nn.Embedding(cfg.n_embeddings, cfg.d_model),
            "blocks": nn.ModuleList([LLaDABlock(cfg) for _ in range(cfg.n_layers)]),
            "ln_f": RMSNorm(cfg),
        })
        if not cfg.weight_tying:
            self.transformer["ff_out"] = nn.Linear(cfg.d_model, cfg.n_embeddings, bias=cfg.include_bias)

    def forward(self, input_ids: torch.Tensor | None, attention_mask: torch.Tensor | None = None,
                inputs_embeds: torch.Tensor | None = None) -> torch.Tensor:
        cfg = self.config
        x = self.transformer["wte"](input_ids) if inputs_embeds is None else inputs_embeds
        b, l, _ = x.shape
        sin, cos = rotary_tables(l, cfg.head_dim, cfg.rope_theta, x.device)
        bias = None
        # As upstream: a mask without zeros is dropped (same kernel path as no mask at all).
        if attention_mask is not None and bool((attention_mask == 0).any()):
            keep = attention_mask.view(b, 1, 1, l) != 0
            bias = torch.zeros(keep.shape, dtype=x.dtype, device=x.device)
            bias = bias.masked_fill(~keep, torch.finfo(x.dtype).min)
        for block in self.transformer["blocks"]:
            x = block(x, sin, cos, bias)
        x = self.transformer["ln_f"](x)
        if cfg.weight_tying:
            return F.linear(x, self.transformer["wte"].weight)
        return self.transformer["ff_out"](x)


class LLaDAModelLM(nn.Module):
    """Upstream `LLaDAModelLM` (and `MMadaModelLM`): wraps the model as `.model`; returns logits."""

    def __init__(self, cfg: LLaDAConfig):
        super().__init__()
        self.config = cfg
        self.model = LLaDAModel(cfg)
        if self.model.transformer["wte"].weight.device.type != "meta":
            init_weights(self, seed=0)

    def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                inputs_embeds: torch.Tensor | None = None) -> torch.Tensor:
        return self.model(input_ids, attention_mask, inputs_embeds)


@torch.no_grad()
def init_weights(model: nn.Module, seed: int, std: float = 0.02) -> None:
    """Twins: normal(0, std) linear/embedding weights, zero biases, unit norm weights."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Embedding)):
            w = torch.empty(module.weight.shape, dtype=torch.float32).normal_(0.0, std, generator=gen)
            module.weight.copy_(w)
            if getattr(module, "bias", None) is not None:
                module.bias.zero_()
        elif isinstance(module, RMSNorm):
            if module.weight is not None:
                module.weight.fill_(1.0)
            if module.bias is not None:
                module.bias.zero_()


def build(cfg: LLaDAConfig) -> LLaDAModelLM:
    return LLaDAModelLM(cfg)


def reset_buffers(model: nn.Module) -> None:
    """No buffers: the rotary tables are computed from the config in every forward."""


def n_parameters(cfg: LLaDAConfig) -> int:
    """Closed-form parameter count (checked against the meta-built model in the tests)."""
    d, h, kv = cfg.d_model, cfg.mlp_hidden_size, cfg.n_kv_heads * cfg.head_dim
    norm = d * (int(cfg.norm_has_weight) + int(cfg.norm_has_bias))
    qkv_b = (d + 2 * kv) if (cfg.include_bias or cfg.include_qkv_bias) else 0
    lin_b = (d + 2 * h + d) if cfg.include_bias else 0
    block = 2 * norm + d * d + 2 * d * kv + d * d + 3 * d * h + qkv_b + lin_b
    head = 0 if cfg.weight_tying else cfg.n_embeddings * d + (cfg.n_embeddings if cfg.include_bias else 0)
    return cfg.n_embeddings * d + cfg.n_layers * block + norm + head


LLADA_FAMILY = ModelFamily(
    name="llada", parse_config=parse_config, config_json=config_json, build=build,
    reset_buffers=reset_buffers, tiny_config=tiny_config, config_mask_token_id=config_mask_token_id,
    init_weights=init_weights, query_blocks=True)

MMADA_FAMILY = ModelFamily(
    name="mmada", parse_config=parse_mmada_config, config_json=mmada_config_json, build=build,
    reset_buffers=reset_buffers, tiny_config=mmada_tiny_config, config_mask_token_id=config_mask_token_id,
    init_weights=init_weights, query_blocks=True)

__all__ = ["LLaDAConfig", "MissingConfigField", "LLaDAModelLM", "LLaDAModel", "LLaDABlock", "RMSNorm",
           "parse_config", "config_json", "parse_mmada_config", "mmada_config_json", "tiny_config",
           "mmada_tiny_config", "config_mask_token_id", "build", "reset_buffers", "init_weights",
           "n_parameters", "LLADA_FAMILY", "MMADA_FAMILY"]
