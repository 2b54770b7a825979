"""A LLaDA-style masked diffusion transformer, written here.

Bidirectional attention, RMSNorm, SwiGLU MLP, rotary positions. Module names mirror
LLaDA's own module tree (`model.transformer.wte`, `model.transformer.blocks[i].ff_out`,
`model.transformer.ln_f`, `model.transformer.ff_out`) so that the edit and tracing code
paths exercised on the embedded CPU backbone are the ones used on LLaDA-8B.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class LLaDAStyleConfig:
    vocab_size: int
    d_model: int = 128
    n_layers: int = 4
    n_heads: int = 4
    mlp_hidden_size: int = 384
    max_sequence_length: int = 256
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-5
    mask_token_id: int = 0
    eos_token_id: int = 1
    pad_token_id: int = 1
    weight_tying: bool = False
    init_std: float = 0.02
    # Mixture-of-experts MLP (LLaDA-MoE twin); 0 = dense SwiGLU MLP.
    n_experts: int = 0
    experts_per_token: int = 2

    def to_dict(self) -> dict:
        return asdict(self)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return (x32 * self.weight.float()).to(dtype)


class RotaryEmbedding(nn.Module):
    def __init__(self, head_dim: int, theta: float):
        super().__init__()
        inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(self, seq_len: int, device: torch.device, dtype: torch.dtype):
        pos = torch.arange(seq_len, device=device, dtype=torch.float32)
        freqs = torch.outer(pos, self.inv_freq.to(device))
        emb = torch.cat([freqs, freqs], dim=-1)
        return emb.cos().to(dtype), emb.sin().to(dtype)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    return x * cos + _rotate_half(x) * sin


class SwiGLUMLP(nn.Module):
    """LLaDA's MLP: ff_out(silu(ff_proj(x)) * up_proj(x))."""

    def __init__(self, cfg: LLaDAStyleConfig):
        super().__init__()
        self.ff_proj = nn.Linear(cfg.d_model, cfg.mlp_hidden_size, bias=False)
        self.up_proj = nn.Linear(cfg.d_model, cfg.mlp_hidden_size, bias=False)
        self.ff_out = nn.Linear(cfg.mlp_hidden_size, cfg.d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ff_out(F.silu(self.ff_proj(x)) * self.up_proj(x))


class LLaDAStyleBlock(nn.Module):
    """One bidirectional transformer block with LLaDA's module names."""

    def __init__(self, cfg: LLaDAStyleConfig, mlp: nn.Module | None = None):
        super().__init__()
        self.n_heads = cfg.n_heads
        self.head_dim = cfg.d_model // cfg.n_heads
        self.attn_norm = RMSNorm(cfg.d_model, cfg.rms_norm_eps)
        self.ff_norm = RMSNorm(cfg.d_model, cfg.rms_norm_eps)
        self.q_proj = nn.Linear(cfg.d_model, cfg.d_model, bias=False)
        self.k_proj = nn.Linear(cfg.d_model, cfg.d_model, bias=False)
        self.v_proj = nn.Linear(cfg.d_model, cfg.d_model, bias=False)
        self.attn_out = nn.Linear(cfg.d_model, cfg.d_model, bias=False)
        if mlp is None:
            # Dense MLP: the submodules sit directly on the block, as in LLaDA.
            self.ff_proj = nn.Linear(cfg.d_model, cfg.mlp_hidden_size, bias=False)
            self.up_proj = nn.Linear(cfg.d_model, cfg.mlp_hidden_size, bias=False)
            self.ff_out = nn.Linear(cfg.mlp_hidden_size, cfg.d_model, bias=False)
            self.mlp = None
        else:
            self.mlp = mlp

    def _mlp(self, x: torch.Tensor) -> torch.Tensor:
        if self.mlp is not None:
            return self.mlp(x)
        return self.ff_out(F.silu(self.ff_proj(x)) * self.up_proj(x))

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                attn_bias: torch.Tensor | None) -> torch.Tensor:
        b, l, d = x.shape
        h = self.attn_norm(x)
        q = self.q_proj(h).view(b, l, self.n_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(h).view(b, l, self.n_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(h).view(b, l, self.n_heads, self.head_dim).transpose(1, 2)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        att = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_bias, is_causal=False)
        x = x + self.attn_out(att.transpose(1, 2).reshape(b, l, d))
        return x + self._mlp(self.ff_norm(x))


class LLaDAStyleModel(nn.Module):
    """Mirrors LLaDA's inner `LLaDAModel`: a `transformer` ModuleDict."""

    def __init__(self, cfg: LLaDAStyleConfig, block_factory=None):
        super().__init__()
        self.config = cfg
        make_block = block_factory or (lambda c: LLaDAStyleBlock(c))
        self.transformer = nn.ModuleDict({
            "wte": nn.Embedding(cfg.vocab_size, cfg.d_model),
            "blocks": nn.ModuleList([make_block(cfg) for _ in range(cfg.n_layers)]),
            "ln_f": RMSNorm(cfg.d_model, cfg.rms_norm_eps),
        })
        if not cfg.weight_tying:
            self.transformer["ff_out"] = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self.rotary = RotaryEmbedding(cfg.d_model // cfg.n_heads, cfg.rope_theta)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                inputs_embeds: torch.Tensor | None = None) -> torch.Tensor:
        x = self.transformer["wte"](input_ids) if inputs_embeds is None else inputs_embeds
        cos, sin = self.rotary(x.shape[1], x.device, x.dtype)
        attn_bias = None
        if attention_mask is not None:
            keep = attention_mask[:, None, None, :].bool()
            attn_bias = torch.zeros(keep.shape, dtype=x.dtype, device=x.device)
            attn_bias = attn_bias.masked_fill(~keep, torch.finfo(x.dtype).min)
        for block in self.transformer["blocks"]:
            x = block(x, cos, sin, attn_bias)
        x = self.transformer["ln_f"](x)
        if self.config.weight_tying:
            return F.linear(x, self.transformer["wte"].weight)
        return self.transformer["ff_out"](x)


class LLaDAStyleLM(nn.Module):
    """Mirrors `LLaDAModelLM`: the language model wraps the inner model as `.model`."""

    def __init__(self, cfg: LLaDAStyleConfig, block_factory=None):
        super().__init__()
        self.config = cfg
        self.model = LLaDAStyleModel(cfg, block_factory)
        self.apply(self._init_weights)

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=self.config.init_std)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                inputs_embeds: torch.Tensor | None = None) -> torch.Tensor:
        return self.model(input_ids, attention_mask, inputs_embeds)
