"""Structural twins: tiny random-weight models with a real MDLM's module tree and tokens.

A twin adapter subclasses `TwinBackbone` with the real adapter's `profile`, so blocks, MLP
output projections, mask-id resolution, logit shift and prompt format are the real
adapter's code. Two model families build the twins:
- `LLaDAStyleTwinModels`: the project's LLaDA-style tree (`harness/backbones/llada_modules`),
  optionally with the sparse MoE MLP (`moe_modules.SparseMoEMLP`): LLaDA, MMaDA, LLaDA-MoE;
- `HFCausalTwinModels`: a transformers decoder class (Qwen2, Llama) with a tiny config,
  made bidirectional: Dream, DiffuLLaMA.
Sizes reuse the embedded backbone's named sizes (tiny/small/base).
"""

from __future__ import annotations

from typing import Any, ClassVar, Sequence

import torch
from torch import nn

from harness.backbones.base import BackboneSpec
from harness.backbones.checkpoint import load_weights, read_checkpoint_config
from harness.backbones.llada_modules import LLaDAStyleBlock, LLaDAStyleConfig, LLaDAStyleLM
from harness.backbones.mdlm_adapter import ProfiledBackbone
from harness.backbones.moe_modules import SparseMoEMLP
from harness.backbones.twin_checkpoint import save_twin_checkpoint
from harness.backbones.twin_tokenizers import TwinTokens, build_twin_tokenizer, load_twin_tokenizer

# Same named sizes as the embedded backbone (d_model, layers, heads, MLP width).
TWIN_SIZES: dict[str, dict[str, int]] = {
    "micro": {"d_model": 32, "n_layers": 2, "n_heads": 2, "mlp_hidden_size": 64},
    "tiny": {"d_model": 64, "n_layers": 2, "n_heads": 2, "mlp_hidden_size": 192},
    "small": {"d_model": 128, "n_layers": 4, "n_heads": 4, "mlp_hidden_size": 384},
    "base": {"d_model": 256, "n_layers": 6, "n_heads": 4, "mlp_hidden_size": 768},
}
SIZE_KEYS = ("d_model", "n_layers", "n_heads", "mlp_hidden_size")


def twin_dims(options: dict[str, Any]) -> dict[str, int]:
    size = options.get("size", "small")
    if size not in TWIN_SIZES:
        raise KeyError(f"unknown twin size '{size}'; known: {', '.join(TWIN_SIZES)}")
    return {k: int(options.get(k, TWIN_SIZES[size][k])) for k in SIZE_KEYS}


class TwinBackbone(ProfiledBackbone):
    """Adapter over a twin checkpoint (spec.path) or over an in-memory twin model."""

    architecture: ClassVar[str]  # the checkpoint's "architecture" tag
    tokens: ClassVar[TwinTokens]
    KNOWN_OPTIONS = ProfiledBackbone.KNOWN_OPTIONS | {
        "size", "vocab_size", *SIZE_KEYS, "n_experts", "experts_per_token", "normalize_top_k"}

    def __init__(self, spec: BackboneSpec, model: nn.Module | None = None, tokenizer: Any = None):
        self.spec = spec
        if model is None:
            if spec.path is None:
                raise ValueError(f"backbone '{spec.name}' ({spec.adapter}): a twin loads from a "
                                 f"checkpoint 'path' (build a new one with the adapter's initial())")
            config = read_checkpoint_config(spec.path)
            if config.get("architecture") != self.architecture:
                raise ValueError(f"{spec.path}: checkpoint architecture '{config.get('architecture')}'"
                                 f" is not '{self.architecture}' (adapter {spec.adapter})")
            model = load_weights(self.build_model(config["model_config"]), spec.path)
            tokenizer = load_twin_tokenizer(spec.path)
        if tokenizer is None:
            raise ValueError(f"backbone '{spec.name}': a tokenizer is required")
        self._setup(model, tokenizer)

    @classmethod
    def initial(cls, spec: BackboneSpec, corpus_texts: Sequence[str], seed: int = 0) -> "TwinBackbone":
        """Random twin of `options.size` with a BPE tokenizer trained on the corpus."""
        cls.check_options(spec)
        options = dict(spec.options)
        chat = options.get("prompt_format", "plain") == "chat"
        tokenizer = build_twin_tokenizer(corpus_texts, cls.tokens,
                                         vocab_size=int(options.get("vocab_size", 1024)), chat=chat)
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            model = cls.new_model(tokenizer, options)
        return cls(spec, model=model, tokenizer=tokenizer)

    def save_pretrained(self, directory: str) -> None:
        save_twin_checkpoint(self.model, self.tokenizer, directory,
                             {"architecture": self.architecture,
                              "model_config": self.model_config(self.model)})

    # ---- per-family model construction (see the mixins below) ------------------------
    @classmethod
    def new_model(cls, tokenizer: Any, options: dict[str, Any]) -> nn.Module:
        raise NotImplementedError

    @classmethod
    def build_model(cls, model_config: dict[str, Any]) -> nn.Module:
        raise NotImplementedError

    @staticmethod
    def model_config(model: nn.Module) -> dict[str, Any]:
        raise NotImplementedError


def _mask_id_for_config(tokens: TwinTokens, tokenizer: Any) -> int:
    mask_id = tokenizer.convert_tokens_to_ids(tokens.mask)
    if mask_id is None or mask_id == tokenizer.unk_token_id:
        raise ValueError(f"twin tokenizer lacks the mask token {tokens.mask}")
    return int(mask_id)


class LLaDAStyleTwinModels:
    """Twin models on the project's LLaDA-style tree (dense, or MoE when n_experts > 0)."""

    tokens: ClassVar[TwinTokens]
    moe: ClassVar[bool] = False
    default_experts: ClassVar[tuple[int, int]] = (4, 2)  # (n_experts, experts_per_token)

    @classmethod
    def new_model(cls, tokenizer: Any, options: dict[str, Any]) -> nn.Module:
        dims = twin_dims(options)
        extra: dict[str, Any] = {}
        if cls.moe:
            n_experts = int(options.get("n_experts", cls.default_experts[0]))
            top_k = int(options.get("experts_per_token", cls.default_experts[1]))
            extra = {"n_experts": n_experts, "experts_per_token": top_k}
            if "mlp_hidden_size" not in options:
                # Each expert is 1/top_k of the dense MLP: active compute matches the dense twin.
                dims["mlp_hidden_size"] = max(8, dims["mlp_hidden_size"] // top_k)
        cfg = LLaDAStyleConfig(vocab_size=len(tokenizer),
                               mask_token_id=_mask_id_for_config(cls.tokens, tokenizer),
                               eos_token_id=tokenizer.eos_token_id,
                               pad_token_id=tokenizer.pad_token_id, **dims, **extra)
        return cls.build_model(cfg.to_dict())

    @classmethod
    def build_model(cls, model_config: dict[str, Any]) -> nn.Module:
        cfg = LLaDAStyleConfig(**model_config)
        if cfg.n_experts <= 0:
            return LLaDAStyleLM(cfg)

        def moe_block(c: LLaDAStyleConfig) -> LLaDAStyleBlock:
            return LLaDAStyleBlock(c, mlp=SparseMoEMLP(c.d_model, c.mlp_hidden_size, c.n_experts,
                                                       c.experts_per_token))

        return LLaDAStyleLM(cfg, block_factory=moe_block)

    @staticmethod
    def model_config(model: nn.Module) -> dict[str, Any]:
        return model.config.to_dict()


class HFCausalTwinModels:
    """Twin models on a transformers decoder class (made bidirectional by the profile)."""

    config_class: ClassVar[type]
    model_class: ClassVar[type]
    kv_heads_divisor: ClassVar[int] = 1  # >1: grouped-query attention (Qwen2 / Dream)

    @classmethod
    def new_model(cls, tokenizer: Any, options: dict[str, Any]) -> nn.Module:
        dims = twin_dims(options)
        cfg = cls.config_class(
            vocab_size=len(tokenizer), hidden_size=dims["d_model"],
            num_hidden_layers=dims["n_layers"], num_attention_heads=dims["n_heads"],
            num_key_value_heads=max(1, dims["n_heads"] // cls.kv_heads_divisor),
            intermediate_size=dims["mlp_hidden_size"], max_position_embeddings=1024,
            tie_word_embeddings=False, bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
            use_cache=False)
        return cls.model_class(cfg)

    @classmethod
    def build_model(cls, model_config: dict[str, Any]) -> nn.Module:
        return cls.model_class(cls.config_class.from_dict(model_config))

    @staticmethod
    def model_config(model: nn.Module) -> dict[str, Any]:
        return model.config.to_dict()
