"""The embedded LLaDA-style backbone: the project's own small MDLM, trained on CPU."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Sequence

import torch
from torch import nn

from harness.backbones.base import Backbone, BackboneSpec
from harness.backbones.checkpoint import load_weights, read_checkpoint_config
from harness.backbones.llada_modules import LLaDAStyleConfig, LLaDAStyleLM
from harness.backbones.registry import register_adapter
from harness.backbones.tokenizer_training import load_tokenizer

ARCHITECTURE = "llada-style"

# Named sizes of the embedded backbone (d_model, layers, heads, MLP width).
SIZES: dict[str, dict[str, int]] = {
    "tiny": {"d_model": 64, "n_layers": 2, "n_heads": 2, "mlp_hidden_size": 192},
    "small": {"d_model": 128, "n_layers": 4, "n_heads": 4, "mlp_hidden_size": 384},
    "base": {"d_model": 256, "n_layers": 6, "n_heads": 4, "mlp_hidden_size": 768},
}

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def new_llada_style_model(tokenizer: Any, size: str = "small", seed: int = 0,
                          **overrides: Any) -> LLaDAStyleLM:
    """A randomly initialised LLaDA-style model sized for `tokenizer`."""
    if size not in SIZES:
        raise KeyError(f"unknown embedded size '{size}'; known: {', '.join(SIZES)}")
    cfg = LLaDAStyleConfig(vocab_size=len(tokenizer), mask_token_id=tokenizer.mask_token_id,
                           eos_token_id=tokenizer.eos_token_id,
                           pad_token_id=tokenizer.pad_token_id, **{**SIZES[size], **overrides})
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return LLaDAStyleLM(cfg)


def checkpoint_config(model: LLaDAStyleLM) -> dict[str, Any]:
    return {"architecture": ARCHITECTURE, "config": model.config.to_dict()}


@register_adapter("embedded-llada")
class EmbeddedLLaDABackbone(Backbone):
    """Adapter for `LLaDAStyleLM` checkpoints (safetensors + config.json + tokenizer.json)."""

    def __init__(self, spec: BackboneSpec, model: LLaDAStyleLM | None = None,
                 tokenizer: Any = None):
        self.spec = spec
        if model is None:
            if spec.path is None:
                raise ValueError(f"backbone '{spec.name}': embedded adapter needs a checkpoint path")
            config = read_checkpoint_config(spec.path)
            if config.get("architecture") != ARCHITECTURE:
                raise ValueError(f"{spec.path}: checkpoint architecture "
                                 f"'{config.get('architecture')}' is not '{ARCHITECTURE}'")
            model = self.build_model(LLaDAStyleConfig(**config["config"]))
            load_weights(model, spec.path)
            tokenizer = load_tokenizer(spec.path)
        if tokenizer is None:
            raise ValueError(f"backbone '{spec.name}': a tokenizer is required")
        self.tokenizer = tokenizer
        self.model = model.to(device=spec.device, dtype=DTYPES[spec.dtype]).eval()

    @classmethod
    def from_parts(cls, model: LLaDAStyleLM, tokenizer: Any, name: str = "embedded-llada",
                   **spec_fields: Any) -> "EmbeddedLLaDABackbone":
        spec = BackboneSpec(name=name, adapter="embedded-llada", **spec_fields)
        return cls(spec, model=model, tokenizer=tokenizer)

    @classmethod
    def initial(cls, spec: BackboneSpec, corpus_texts: Sequence[str],
                seed: int = 0) -> "EmbeddedLLaDABackbone":
        """A random model of `spec.options['size']` with a BPE tokenizer trained on the corpus."""
        from harness.backbones.tokenizer_training import train_bpe_tokenizer

        options = dict(spec.options)
        size = options.pop("size", "small")
        vocab_size = options.pop("vocab_size", 2048)
        tokenizer = train_bpe_tokenizer(corpus_texts, vocab_size=vocab_size)
        model = new_llada_style_model(tokenizer, size, seed=seed, **options)
        return cls(spec, model=model, tokenizer=tokenizer)

    def save_pretrained(self, directory: str) -> None:
        from harness.backbones.checkpoint import save_checkpoint

        save_checkpoint(self.model, self.tokenizer, directory, checkpoint_config(self.model))

    def build_model(self, cfg: LLaDAStyleConfig) -> LLaDAStyleLM:
        return LLaDAStyleLM(cfg)

    def with_model(self, model: nn.Module) -> "EmbeddedLLaDABackbone":
        """A new adapter over another model of the same architecture (e.g. a fine-tuned copy)."""
        return type(self)(replace(self.spec), model=model, tokenizer=self.tokenizer)

    @property
    def mask_token_id(self) -> int:
        return int(self.model.config.mask_token_id)

    @property
    def shifted_logits(self) -> bool:
        return False

    def blocks(self) -> Sequence[nn.Module]:
        return self.model.model.transformer["blocks"]

    def mlp_out_proj(self, layer: int) -> nn.Module:
        return self.blocks()[layer].ff_out

    def input_embeddings(self) -> nn.Embedding:
        return self.model.model.transformer["wte"]

    def raw_logits(self, input_ids: torch.Tensor,
                   attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.model(input_ids, attention_mask)
