"""Native LLaDA-MoE (inclusionAI/LLaDA-MoE-7B-A1B-Base): config, model, family.

Written from the facts in `docs/backbones/llada_moe.md` (upstream file and line for each);
no upstream code is imported or executed. The layout is OLMoE-like:

    x = embed(ids)
    per layer:  h = x + o_proj(attn(rope(qk_norm(q_proj(n1(x)))), rope(qk_norm(k_proj(n1(x)))), v))
                x = h + mlp(n2(h))          mlp = routed experts (+ shared expert), or dense SwiGLU
    logits = lm_head(norm(x))               (no shift: the logit at p predicts token p)

Attention is bidirectional (no causal mask); `attention_mask` [B, L] only hides padding keys.
The router is softmax over all experts then top-k; the selected probabilities are used as
gates without renormalisation unless `norm_topk_prob` is true.

Edit hook: every `model.layers.{i}.mlp` ends with `self.combine(x, out)` where `combine` is
`moe_modules.CombinedExpertOutput` (parameter-free identity): its input[0] is the MLP input
(the post-attention-normalised residual stream) and its output is the layer's whole MLP
contribution to the residual stream (routed experts + the shared expert, if any). The shared
expert's parameters stay at upstream's `model.layers.{i}.shared_expert.*`; the decoder layer
hands it to the MoE module so that the tap still sees the full contribution.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from harness.backbones.models.family import (ModelFamily, TinyDims, TokenIds, UnsupportedConfig,
                                             at_queries)
from harness.backbones.moe_modules import CombinedExpertOutput

MODEL_TYPE = "llada"  # the real config.json's model_type (dllm examples/llada/README.md:17-20)
ARCHITECTURE = "LLaDAMoEModelLM"  # upstream top-level class (modeling_lladamoe.py:1046)
# The released tokenizer ships no mask token; the inference code of the authors' serving
# stack hard-codes it (inclusionAI/dInfer benchmarks/benchmark.py:79, eos 156892 at :80).
LLADA_MOE_MASK_TOKEN_ID = 156895

_SUPPORTED_ACTS = ("silu",)


@dataclass(frozen=True)
class LLaDAMoEConfig:
    """The config.json fields the forward depends on, under their upstream names."""

    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    num_experts: int
    num_experts_per_tok: int
    expert_intermediate_size: int
    moe_layer_freq: tuple[int, ...]
    rope_theta: float
    partial_rotary_factor: float = 1.0
    dense_intermediate_size: int | None = None
    shared_expert_intermediate_size: int | None = None
    norm_topk_prob: bool = False
    moe_router_score_function: str | None = "softmax"
    moe_router_enable_expert_bias: bool = False
    qk_layernorm: bool = False
    clip_qkv: float | None = None
    attention_bias: bool = False
    rope_scaling: dict | None = None
    rms_norm_eps: float = 1e-5
    tie_word_embeddings: bool = False
    hidden_act: str = "silu"
    head_dim: int | None = None  # upstream ignores it; accepted only when it equals d/heads
    max_position_embeddings: int = 4096
    mask_token_id: int | None = None
    eos_token_id: int | tuple[int, ...] | None = 50279
    pad_token_id: int | None = 1
    bos_token_id: int | None = None
    # Carried for the round trip; they do not change the forward (see the doc).
    attention_dropout: float = 0.0
    initializer_range: float = 0.02
    routed_scaling_factor: float = 1.0
    model_type: str = MODEL_TYPE
    architectures: tuple[str, ...] = (ARCHITECTURE,)

    @property
    def dims_per_head(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def rotary_dim(self) -> int:
        return int(self.dims_per_head * self.partial_rotary_factor)

    def is_moe_layer(self, layer: int) -> bool:
        return self.moe_layer_freq[layer] != 0


# ------------------------------------------------------------------------------------------
# config.json <-> LLaDAMoEConfig
# ------------------------------------------------------------------------------------------

_REQUIRED = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
             "num_experts", "num_experts_per_tok", "expert_intermediate_size", "moe_layer_freq",
             "rope_theta", "partial_rotary_factor")


def _as_tuple(value):
    return tuple(value) if isinstance(value, (list, tuple)) else value


def parse_config(raw: dict[str, Any], source: str) -> LLaDAMoEConfig:
    """Typed config from a LLaDA-MoE config.json dict; raises on anything not implemented."""
    missing = [k for k in _REQUIRED if raw.get(k) is None]
    if missing:
        raise KeyError(f"{source}: LLaDA-MoE config.json lacks required field(s) "
                       f"{', '.join(repr(m) for m in missing)}")

    def unsupported(field, value, supported):
        raise UnsupportedConfig(source, field, value, supported)

    archs = raw.get("architectures") or [ARCHITECTURE]
    if ARCHITECTURE not in archs:
        unsupported("architectures", archs, f"a list containing {ARCHITECTURE!r}")
    model_type = raw.get("model_type", MODEL_TYPE)
    if model_type not in ("llada", "lladamoe"):
        unsupported("model_type", model_type, "'llada' (as released) or 'lladamoe' (dllm)")

    hidden, heads = int(raw["hidden_size"]), int(raw["num_attention_heads"])
    if hidden % heads:
        unsupported("num_attention_heads", heads, f"a divisor of hidden_size={hidden}")
    kv_heads = raw.get("num_key_value_heads")
    kv_heads = heads if kv_heads is None else int(kv_heads)
    if heads % kv_heads:
        unsupported("num_key_value_heads", kv_heads, f"a divisor of num_attention_heads={heads}")
    head_dim = raw.get("head_dim")
    if head_dim is not None and int(head_dim) != hidden // heads:
        unsupported("head_dim", head_dim, f"absent or hidden_size/num_attention_heads="
                                          f"{hidden // heads} (upstream derives it)")

    layers = int(raw["num_hidden_layers"])
    freq = raw["moe_layer_freq"]
    if not isinstance(freq, (list, tuple)) or len(freq) < layers:
        unsupported("moe_layer_freq", freq, f"a list of {layers} per-layer flags (1=MoE, 0=dense)")
    freq = tuple(int(f) for f in freq[:layers])  # upstream reads moe_layer_freq[layer_idx] only
    if any(f not in (0, 1) for f in freq):
        unsupported("moe_layer_freq", list(freq), "per-layer flags 0 (dense) or 1 (MoE)")
    dense_size = raw.get("dense_intermediate_size")
    if any(f == 0 for f in freq) and (dense_size is None or int(dense_size) <= 0):
        unsupported("dense_intermediate_size", dense_size,
                    "a positive width when moe_layer_freq has dense (0) layers")

    n_exp, top_k = int(raw["num_experts"]), int(raw["num_experts_per_tok"])
    if n_exp < 1 or not 1 <= top_k <= n_exp:
        unsupported("num_experts_per_tok", top_k, f"1..num_experts={n_exp}")
    shared = raw.get("shared_expert_intermediate_size")
    if shared is not None and int(shared) <= 0:
        # upstream builds the shared expert whenever this is not None: -1 (its default) crashes
        unsupported("shared_expert_intermediate_size", shared, "null or a positive width")
    score = raw.get("moe_router_score_function", "softmax")
    if score not in (None, "softmax"):
        unsupported("moe_router_score_function", score, "'softmax' (or null)")
    if raw.get("moe_router_enable_expert_bias"):
        unsupported("moe_router_enable_expert_bias", raw["moe_router_enable_expert_bias"],
                    "false/null (no expert_bias buffer)")
    if raw.get("clip_qkv") is not None:
        unsupported("clip_qkv", raw["clip_qkv"], "null")
    if raw.get("rope_scaling") is not None:
        unsupported("rope_scaling", raw["rope_scaling"], "null (plain RoPE)")
    rope_params = raw.get("rope_parameters")
    if rope_params is not None and rope_params.get("rope_type", "default") != "default":
        unsupported("rope_parameters", rope_params, "absent or rope_type 'default'")
    prf = float(raw["partial_rotary_factor"])
    rot = int((hidden // heads) * prf)
    if not 0 < prf <= 1 or rot < 2 or rot % 2:
        unsupported("partial_rotary_factor", raw["partial_rotary_factor"],
                    "in (0, 1] with an even rotary width of at least 2")
    act = raw.get("hidden_act", "silu")
    if act not in _SUPPORTED_ACTS:
        unsupported("hidden_act", act, " / ".join(_SUPPORTED_ACTS))
    if raw.get("tie_word_embeddings", False):
        unsupported("tie_word_embeddings", raw["tie_word_embeddings"], "false (separate lm_head)")
    for flag in ("attention_bias", "qk_layernorm", "norm_topk_prob"):
        if raw.get(flag) not in (None, True, False):
            unsupported(flag, raw[flag], "true/false/null")

    return LLaDAMoEConfig(
        vocab_size=int(raw["vocab_size"]), hidden_size=hidden, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=kv_heads, num_experts=n_exp,
        num_experts_per_tok=top_k, expert_intermediate_size=int(raw["expert_intermediate_size"]),
        moe_layer_freq=freq, rope_theta=float(raw["rope_theta"]), partial_rotary_factor=prf,
        dense_intermediate_size=None if dense_size is None else int(dense_size),
        shared_expert_intermediate_size=None if shared is None else int(shared),
        norm_topk_prob=bool(raw.get("norm_topk_prob")), moe_router_score_function=score,
        moe_router_enable_expert_bias=bool(raw.get("moe_router_enable_expert_bias")),
        qk_layernorm=bool(raw.get("qk_layernorm")), clip_qkv=None,
        attention_bias=bool(raw.get("attention_bias", False)), rope_scaling=None,
        rms_norm_eps=float(raw.get("rms_norm_eps", 1e-5)), tie_word_embeddings=False,
        hidden_act=act, head_dim=None if head_dim is None else int(head_dim),
        max_position_embeddings=int(raw.get("max_position_embeddings", 4096)),
        mask_token_id=raw.get("mask_token_id"),
        eos_token_id=_as_tuple(raw.get("eos_token_id", 50279)),
        pad_token_id=raw.get("pad_token_id", 1), bos_token_id=raw.get("bos_token_id"),
        attention_dropout=float(raw.get("attention_dropout", 0.0)),
        initializer_range=float(raw.get("initializer_range", 0.02)),
        routed_scaling_factor=float(raw.get("routed_scaling_factor", 1.0)),
        model_type=model_type, architectures=tuple(archs),
    )


def config_json(cfg: LLaDAMoEConfig) -> dict[str, Any]:
    """The config.json dict in the upstream format (parse_config round-trips it)."""
    out: dict[str, Any] = {}
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        if f.name == "mask_token_id" and value is None:
            continue  # the released config has none
        if f.name == "head_dim" and value is None:
            continue
        out[f.name] = list(value) if isinstance(value, tuple) else value
    out["use_cache"] = False
    return out


# ------------------------------------------------------------------------------------------
# Model
# ------------------------------------------------------------------------------------------

class RMSNorm(nn.Module):
    """weight * (x / rms(x)), normalised in float32 and cast back before the weight."""

    def __init__(self, size: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x32.to(x.dtype)


class SwiGLU(nn.Module):
    """down_proj(silu(gate_proj(x)) * up_proj(x)): an expert, the shared expert, a dense MLP."""

    def __init__(self, d_model: int, hidden: int):
        super().__init__()
        self.gate_proj = nn.Linear(d_model, hidden, bias=False)
        self.up_proj = nn.Linear(d_model, hidden, bias=False)
        self.down_proj = nn.Linear(hidden, d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DenseMLP(SwiGLU):
    """A dense layer's MLP (moe_layer_freq[i] == 0), with the same `combine` tap."""

    def __init__(self, d_model: int, hidden: int):
        super().__init__(d_model, hidden)
        self.combine = CombinedExpertOutput()

    def forward(self, x: torch.Tensor, shared_expert: nn.Module | None = None) -> torch.Tensor:
        return self.combine(x, super().forward(x))


class MoEMLP(nn.Module):
    """Softmax router, top-k experts, each run only on its routed tokens."""

    def __init__(self, cfg: LLaDAMoEConfig):
        super().__init__()
        self.top_k = cfg.num_experts_per_tok
        self.norm_topk_prob = cfg.norm_topk_prob
        self.gate = nn.Linear(cfg.hidden_size, cfg.num_experts, bias=False)
        self.experts = nn.ModuleList(SwiGLU(cfg.hidden_size, cfg.expert_intermediate_size)
                                     for _ in range(cfg.num_experts))
        self.combine = CombinedExpertOutput()

    def route(self, flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(gates [N, k] in flat's dtype, expert indices [N, k])."""
        probs = F.softmax(self.gate(flat), dim=-1, dtype=torch.float32)
        gates, index = probs.topk(self.top_k, dim=-1)
        if self.norm_topk_prob:
            gates = gates / gates.sum(-1, keepdim=True)
        return gates.to(flat.dtype), index

    def forward(self, x: torch.Tensor, shared_expert: nn.Module | None = None) -> torch.Tensor:
        flat = x.reshape(-1, x.shape[-1])
        gates, index = self.route(flat)
        out = torch.zeros_like(flat)
        for e, expert in enumerate(self.experts):
            token, slot = torch.where(index == e)
            if token.numel():
                out.index_add_(0, token, expert(flat[token]) * gates[token, slot, None])
        out = out.view_as(x)
        if shared_expert is not None:
            out = out + shared_expert(x)
        return self.combine(x, out)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    a, b = x.chunk(2, dim=-1)
    return torch.cat((-b, a), dim=-1)


class Attention(nn.Module):
    def __init__(self, cfg: LLaDAMoEConfig):
        super().__init__()
        d, h, kv = cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads
        self.n_heads, self.n_kv, self.head_dim = h, kv, cfg.dims_per_head
        bias = cfg.attention_bias
        self.q_proj = nn.Linear(d, h * self.head_dim, bias=bias)
        self.k_proj = nn.Linear(d, kv * self.head_dim, bias=bias)
        self.v_proj = nn.Linear(d, kv * self.head_dim, bias=bias)
        self.o_proj = nn.Linear(h * self.head_dim, d, bias=bias)
        if cfg.qk_layernorm:  # one RMSNorm over head_dim, shared by all heads, applied per head
            self.q_norm = RMSNorm(self.head_dim, cfg.rms_norm_eps)
            self.k_norm = RMSNorm(self.head_dim, cfg.rms_norm_eps)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                bias: torch.Tensor | None, queries: torch.Tensor | None = None) -> torch.Tensor:
        """[B, L, d], or [B, P, d] for the query positions `queries` [B, P] alone (keys and
        values still come from every position)."""
        b, n, _ = x.shape
        xq = x if queries is None else at_queries(x, queries)
        q = self.q_proj(xq).view(b, xq.shape[1], self.n_heads, self.head_dim)
        k = self.k_proj(x).view(b, n, self.n_kv, self.head_dim)
        v = self.v_proj(x).view(b, n, self.n_kv, self.head_dim)
        if hasattr(self, "q_norm"):
            q, k = self.q_norm(q), self.k_norm(k)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # [B, heads, L, head_dim]
        rot = cos.shape[-1]
        cos_q, sin_q = (cos, sin) if queries is None else \
            (cos[queries].unsqueeze(1), sin[queries].unsqueeze(1))  # [B, 1, P, rot]
        q = torch.cat((q[..., :rot] * cos_q + _rotate_half(q[..., :rot]) * sin_q, q[..., rot:]),
                      -1)
        k = torch.cat((k[..., :rot] * cos + _rotate_half(k[..., :rot]) * sin, k[..., rot:]), -1)
        if self.n_kv != self.n_heads:
            k = k.repeat_interleave(self.n_heads // self.n_kv, dim=1)
            v = v.repeat_interleave(self.n_heads // self.n_kv, dim=1)
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(self.head_dim)
        if bias is not None:
            scores = scores + bias
        probs = F.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
        out = (probs @ v).transpose(1, 2).reshape(b, xq.shape[1], self.n_heads * self.head_dim)
        return self.o_proj(out)


class DecoderLayer(nn.Module):
    def __init__(self, cfg: LLaDAMoEConfig, index: int):
        super().__init__()
        self.self_attn = Attention(cfg)
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        if cfg.is_moe_layer(index):
            self.mlp = MoEMLP(cfg)
            if cfg.shared_expert_intermediate_size is not None:
                self.shared_expert = SwiGLU(cfg.hidden_size, cfg.shared_expert_intermediate_size)
        else:
            self.mlp = DenseMLP(cfg.hidden_size, cfg.dense_intermediate_size)

    def forward(self, x, cos, sin, bias, queries=None):
        """[B, L, d]; with `queries` [B, P] (ModelFamily.query_blocks) the output at those
        positions only, [B, P, d] (the experts then see those P rows alone)."""
        residual = x if queries is None else at_queries(x, queries)
        x = residual + self.self_attn(self.input_layernorm(x), cos, sin, bias, queries)
        return x + self.mlp(self.post_attention_layernorm(x), getattr(self, "shared_expert", None))


class Backbone(nn.Module):
    """`model.*`: embeddings, layers, final norm."""

    def __init__(self, cfg: LLaDAMoEConfig):
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(cfg, i) for i in range(cfg.num_hidden_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)


class LLaDAMoEModel(nn.Module):
    """Top module: `model.*` + `lm_head`; forward returns raw logits [B, L, V]."""

    def __init__(self, cfg: LLaDAMoEConfig):
        super().__init__()
        self.config = cfg
        self.model = Backbone(cfg)
        self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)

    def rotary(self, length: int, device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """cos, sin [L, rotary_dim] (float32 maths, cast to the activations' dtype)."""
        dim = self.config.rotary_dim
        inv_freq = 1.0 / (self.config.rope_theta ** (
            torch.arange(0, dim, 2, dtype=torch.int64, device=device).float() / dim))
        angles = torch.arange(length, device=device, dtype=torch.float32)[:, None] * inv_freq
        emb = torch.cat((angles, angles), dim=-1)
        return emb.cos().to(dtype), emb.sin().to(dtype)

    def forward(self, input_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None,
                inputs_embeds: torch.Tensor | None = None) -> torch.Tensor:
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids and inputs_embeds")
        x = self.model.embed_tokens(input_ids) if inputs_embeds is None else inputs_embeds
        cos, sin = self.rotary(x.shape[1], x.device, x.dtype)
        bias = None
        if attention_mask is not None:  # [B, L] key mask -> additive [B, 1, 1, L]
            keep = attention_mask.to(torch.bool)[:, None, None, :]
            bias = torch.zeros(keep.shape, dtype=x.dtype, device=x.device)
            bias = bias.masked_fill(~keep, torch.finfo(x.dtype).min)
        for layer in self.model.layers:
            x = layer(x, cos, sin, bias)
        return self.lm_head(self.model.norm(x))


# ------------------------------------------------------------------------------------------
# Family functions
# ------------------------------------------------------------------------------------------

def build(cfg: LLaDAMoEConfig) -> LLaDAMoEModel:
    """The model (works under `with torch.device("meta"):`; it holds no buffers)."""
    return LLaDAMoEModel(cfg)


def reset_buffers(model: nn.Module) -> None:
    """No-op: the rotary table is computed from the config in each forward (no buffers)."""
    return None


def init_weights(model: LLaDAMoEModel, seed: int) -> LLaDAMoEModel:
    """Deterministic twin init: Linear/Embedding weights N(0, 0.02), biases 0, norms 1.

    Drawn on the CPU and copied, so a seed gives the same weights on any device."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight") or name.endswith("layernorm.weight"):
                p.fill_(1.0)
            elif name.endswith(".bias"):
                p.zero_()
            else:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.02)
    return model


def tiny_config(dims: TinyDims, ids: TokenIds) -> LLaDAMoEConfig:
    """A structural twin: the real config's switches at toy sizes (every layer MoE)."""
    if dims.n_experts < 1 or not 1 <= dims.experts_per_token <= dims.n_experts:
        raise ValueError(f"LLaDA-MoE twin needs 1 <= experts_per_token <= n_experts, got "
                         f"{dims.experts_per_token}/{dims.n_experts}")
    return LLaDAMoEConfig(
        vocab_size=ids.vocab_size, hidden_size=dims.d_model, num_hidden_layers=dims.n_layers,
        num_attention_heads=dims.n_heads, num_key_value_heads=dims.n_kv_heads,
        num_experts=dims.n_experts, num_experts_per_tok=dims.experts_per_token,
        expert_intermediate_size=dims.mlp_hidden, moe_layer_freq=(1,) * dims.n_layers,
        rope_theta=50000.0, partial_rotary_factor=1.0,
        dense_intermediate_size=8 * dims.mlp_hidden, shared_expert_intermediate_size=None,
        norm_topk_prob=False, moe_router_score_function="softmax",
        moe_router_enable_expert_bias=False, qk_layernorm=True, clip_qkv=None,
        attention_bias=False, rope_scaling=None, rms_norm_eps=1e-5,
        tie_word_embeddings=False, hidden_act="silu",
        max_position_embeddings=dims.max_positions, mask_token_id=ids.mask_token_id,
        eos_token_id=ids.eos_token_id, pad_token_id=ids.pad_token_id,
        bos_token_id=ids.bos_token_id,
    )


def config_mask_token_id(cfg: LLaDAMoEConfig) -> int | None:
    """The mask id the config declares (the released config.json declares none)."""
    return cfg.mask_token_id


LLADA_MOE_FAMILY = ModelFamily(
    name="llada-moe", parse_config=parse_config, config_json=config_json, build=build,
    reset_buffers=reset_buffers, tiny_config=tiny_config,
    config_mask_token_id=config_mask_token_id, init_weights=init_weights, query_blocks=True,
)
