"""Adapters driven by a `BackboneProfile`: one implementation of the `Backbone` contract
for the real MDLMs (loaded through transformers) and for their structural twins.

A profile says where a model keeps its blocks, MLP output projections and embeddings,
whether it predicts token i at row i (LLaDA family) or at row i-1 (AR-adapted: Dream,
DiffuLLaMA), where its mask token id comes from and whether its code lives in the hub
repository. The hub adapter (`HubBackbone`) and the twin adapter (`TwinBackbone`) of a
model share the profile, so every structural fact the twin tests check is the one the
real adapter uses. Dotted paths can be overridden per backbone through `options`
(`blocks_path`, `mlp_out_path`, `embeddings_path`, `moe_module_path`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Sequence

import torch
from torch import nn

from harness.backbones.base import Backbone, BackboneSpec
from harness.backbones.bidirectional import make_bidirectional
from harness.backbones.chat_formats import prompt_format
from harness.backbones.hf_loading import (check_remote_code_policy, load_hf_model,
                                          load_hf_tokenizer, resolve_module, torch_dtype)
from harness.backbones.moe_modules import attach_combined_output_tap


@dataclass(frozen=True)
class BackboneProfile:
    """Structural facts about one MDLM family (see docs/backbones.md for their sources)."""

    family: str
    blocks_path: str  # relative to backbone.model
    mlp_out_path: str  # relative to one block
    embeddings_path: str  # relative to backbone.model
    shifted_logits: bool
    needs_remote_code: bool
    auto_class: str = "AutoModel"
    known_mask_token_id: int | None = None
    known_mask_token_note: str = ""
    bidirectional_patch: bool = False  # a transformers AR class that must be made bidirectional
    moe_module_path: str | None = None  # relative to a block: hub MoE module to tap
    attention_mask_4d: bool = False  # pass padding masks as [B, 1, L, L] booleans
    forward_kwargs: dict[str, Any] = field(default_factory=dict)

    def path(self, options: dict[str, Any], name: str) -> str | None:
        return options.get(name, getattr(self, name))


@dataclass(frozen=True)
class MaskToken:
    id: int
    source: str  # where the id was read (reported in docs and in results)


def resolve_mask_token(profile: BackboneProfile, model: nn.Module, tokenizer: Any,
                       options: dict[str, Any], name: str) -> MaskToken:
    """Mask id from, in order: options.mask_token_id, the model config, the tokenizer,
    the profile's known constant. The first present wins; its source is recorded."""
    candidates = [
        (options.get("mask_token_id"), "config option 'mask_token_id'"),
        (getattr(getattr(model, "config", None), "mask_token_id", None), "model config mask_token_id"),
        (getattr(tokenizer, "mask_token_id", None), "tokenizer mask_token"),
        (profile.known_mask_token_id, f"known constant ({profile.known_mask_token_note})"),
    ]
    for value, source in candidates:
        if value is not None:
            token = MaskToken(int(value), source)
            break
    else:
        raise ValueError(f"backbone '{name}': no mask token id in the model config or tokenizer "
                         f"and no known constant for {profile.family}; set options.mask_token_id")
    vocab = _vocab_size(model, tokenizer)
    if not 0 <= token.id < vocab:
        raise ValueError(f"backbone '{name}': mask token id {token.id} ({token.source}) is outside "
                         f"the vocabulary (size {vocab})")
    return token


def _vocab_size(model: nn.Module, tokenizer: Any) -> int:
    config = getattr(model, "config", None)
    size = getattr(config, "vocab_size", None) or getattr(config, "embedding_size", None)
    return int(size) if size else len(tokenizer)


class ProfiledBackbone(Backbone):
    """The `Backbone` contract, implemented from `profile` over `self.model`/`self.tokenizer`."""

    profile: ClassVar[BackboneProfile]
    KNOWN_OPTIONS: ClassVar[frozenset[str]] = frozenset({
        "prompt_format", "mask_token_id", "blocks_path", "mlp_out_path", "embeddings_path",
        "moe_module_path"})

    @classmethod
    def check_options(cls, spec: BackboneSpec) -> None:
        unknown = set(spec.options) - cls.KNOWN_OPTIONS
        if unknown:
            raise ValueError(f"backbone '{spec.name}' ({spec.adapter}): unknown option(s) "
                             f"{', '.join(sorted(unknown))}; known: {', '.join(sorted(cls.KNOWN_OPTIONS))}")

    def _setup(self, model: nn.Module, tokenizer: Any) -> None:
        self.check_options(self.spec)
        options = self.spec.options
        if self.profile.bidirectional_patch:
            make_bidirectional(model)
        self.model = model.to(device=self.spec.device, dtype=torch_dtype(self.spec)).eval()
        self.tokenizer = tokenizer
        moe_path = self.profile.path(options, "moe_module_path")
        if moe_path:
            for block in self.blocks():
                attach_combined_output_tap(resolve_module(block, moe_path))
        self._prompt = prompt_format(options.get("prompt_format", "plain"))
        self.add_special_tokens = self._prompt.add_special_tokens
        self.mask_token = resolve_mask_token(self.profile, self.model, tokenizer, options,
                                             self.spec.name)
        self.mlp_out_proj(0)  # fail at load time if the documented path is wrong

    # ---- tokens --------------------------------------------------------------------
    @property
    def mask_token_id(self) -> int:
        return self.mask_token.id

    @property
    def shifted_logits(self) -> bool:
        return self.profile.shifted_logits

    def format_prompt(self, question: str) -> str:
        return self._prompt.render(self.tokenizer, question)

    # ---- structure -----------------------------------------------------------------
    def blocks(self) -> Sequence[nn.Module]:
        return resolve_module(self.model, self.profile.path(self.spec.options, "blocks_path"))

    def mlp_out_proj(self, layer: int) -> nn.Module:
        return resolve_module(self.blocks()[layer],
                              self.profile.path(self.spec.options, "mlp_out_path"))

    def input_embeddings(self) -> nn.Embedding:
        return resolve_module(self.model, self.profile.path(self.spec.options, "embeddings_path"))

    # ---- forward -------------------------------------------------------------------
    def raw_logits(self, input_ids: torch.Tensor,
                   attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        if attention_mask is not None and self.profile.attention_mask_4d:
            keep = attention_mask.bool()
            attention_mask = keep[:, None, None, :] & keep[:, None, :, None]
        out = self.model(input_ids=input_ids, attention_mask=attention_mask,
                         **self.profile.forward_kwargs)
        return out if isinstance(out, torch.Tensor) else out.logits

    def with_model(self, model: nn.Module) -> "ProfiledBackbone":
        """A new adapter over another model of the same architecture (e.g. a fine-tuned copy)."""
        clone = object.__new__(type(self))
        clone.spec = replace(self.spec)
        clone._setup(model, self.tokenizer)
        return clone


class HubBackbone(ProfiledBackbone):
    """A real MDLM loaded with transformers from the hub id (or a local fine-tuned copy)."""

    KNOWN_OPTIONS = ProfiledBackbone.KNOWN_OPTIONS | {"model_class", "tokenizer_path"}

    def __init__(self, spec: BackboneSpec):
        self.spec = spec
        needs = self.profile.needs_remote_code
        self.check_options(spec)
        check_remote_code_policy(spec, needs)  # before anything can reach the hub
        tokenizer = load_hf_tokenizer(spec, needs)
        model = load_hf_model(spec, self.profile.auto_class, needs)
        self._setup(model, tokenizer)

    @classmethod
    def initial(cls, spec: BackboneSpec, corpus_texts: Sequence[str], seed: int = 0) -> "HubBackbone":
        """The pretrained checkpoint (the corpus and seed play no part)."""
        return cls(spec)

    def save_pretrained(self, directory: str) -> None:
        from harness.backbones.twin_checkpoint import atomic_directory

        with atomic_directory(directory) as tmp:
            self.model.save_pretrained(str(tmp))
            self.tokenizer.save_pretrained(str(tmp))
