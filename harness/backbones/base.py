"""The `Backbone` adapter interface: everything the harness needs to know about an MDLM.

Scoring, sampling, tracing and editing talk to a model only through this interface, so
the same code runs on the embedded CPU backbones, on the structural twins, and on the real
7-8B checkpoints.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Sequence

import torch
from torch import nn


@dataclass(frozen=True)
class BackboneSpec:
    """Static description of a backbone, as given in the config."""

    name: str  # registry name, e.g. "llada-8b-base-twin", "llada-8b-base"
    adapter: str  # adapter class key in the registry
    path: str | None = None  # local checkpoint dir (embedded / fine-tuned) or HF id
    hf_id: str | None = None
    revision: str | None = None  # pinned revision for hub models
    trust_remote_code: bool = False
    dtype: str = "float32"  # "float32" | "bfloat16" | "float16"
    device: str = "cpu"
    options: dict[str, Any] = field(default_factory=dict)

    def identity(self) -> dict[str, Any]:
        """What identifies the weights (used to refuse loading an edit onto another model)."""
        return {"name": self.name, "adapter": self.adapter, "hf_id": self.hf_id,
                "revision": self.revision}


class Backbone(ABC):
    """Adapter around a masked diffusion LM and its tokenizer.

    Conventions shared by every adapter:
    - `logits(input_ids)` returns [B, L, V] *aligned* logits: row i is the distribution of
      token i, whatever the model's own convention (shifted models predict i at i-1; the
      adapter undoes that).
    - Sequences are prompt + answer + EOS padding (LLaDA's SFT convention); attention is
      bidirectional over the whole sequence.
    - `mlp_out_proj(l)` is the module whose output is the MLP's contribution to the
      residual stream at block l (the module ROME-style edits target). Its forward input is
      the MLP hidden state (the edit key space), its output the value space.
    """

    spec: BackboneSpec
    model: nn.Module
    tokenizer: Any  # a transformers PreTrainedTokenizerBase
    # True: the weights are trained by this project (from scratch, e.g. the structural
    # twins); False: a pretrained hub checkpoint. Each adapter class states it (it picks,
    # e.g., the gradient baselines' default learning rate).
    trained_here: ClassVar[bool]

    # ---- identity and tokens -------------------------------------------------------
    @property
    def name(self) -> str:
        return self.spec.name

    @property
    @abstractmethod
    def mask_token_id(self) -> int: ...

    @property
    @abstractmethod
    def shifted_logits(self) -> bool:
        """True if the model predicts token i at position i-1 (AR-adapted MDLMs)."""

    @property
    def eos_token_id(self) -> int:
        return int(self.tokenizer.eos_token_id)

    @property
    def pad_token_id(self) -> int:
        pad = self.tokenizer.pad_token_id
        return int(pad) if pad is not None else self.eos_token_id

    # ---- structure -----------------------------------------------------------------
    @abstractmethod
    def blocks(self) -> Sequence[nn.Module]:
        """The transformer blocks, in order."""

    @abstractmethod
    def mlp_out_proj(self, layer: int) -> nn.Module:
        """The MLP output projection of block `layer` (edit hook point)."""

    def mlp_out_proj_path(self, layer: int) -> str:
        """Dotted module path of `mlp_out_proj(layer)` inside `self.model`."""
        target = self.mlp_out_proj(layer)
        for name, module in self.model.named_modules():
            if module is target:
                return name
        raise LookupError(f"{self.name}: MLP output projection of layer {layer} not in model")

    @abstractmethod
    def input_embeddings(self) -> nn.Embedding:
        """The token embedding table (noise scale for causal tracing comes from it)."""

    @property
    def num_layers(self) -> int:
        return len(self.blocks())

    @property
    def query_blocks(self) -> bool:
        """True if every block's forward takes `queries` ([B, P] positions) and then returns
        its output at those positions only, [B, P, d] (`ModelFamily.query_blocks`; called so
        through `harness.hooks.block_queries`)."""
        return False

    # ---- prompts -------------------------------------------------------------------
    def format_prompt(self, question: str) -> str:
        """The prompt text put before the answer. Returns (text); the question appears
        verbatim inside it so the subject's character span can be located."""
        return f"Question: {question}\nAnswer:"

    def question_offset(self, question: str) -> int:
        """Character offset of the question inside `format_prompt(question)`."""
        prompt = self.format_prompt(question)
        offset = prompt.find(question)
        if offset < 0:
            raise ValueError(f"{self.name}: prompt format does not contain the question verbatim")
        return offset

    def tokenize_prompt(self, prompt: str) -> tuple[list[int], list[tuple[int, int]]]:
        """Prompt token ids (with the model's own special prefix) and character offsets."""
        enc = self.tokenizer(prompt, add_special_tokens=self.add_special_tokens,
                             return_offsets_mapping=True)
        return list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]

    def encode_qa(self, prompt: str, answer: str
                  ) -> tuple[list[int], list[tuple[int, int]], list[int]]:
        """(prompt ids, prompt offsets, answer ids) from ONE tokenisation of
        prompt + answer_prefix + answer + answer_suffix, split at the prompt's last character.

        Tokenising the answer on its own can give ids the model never saw in training (a
        stray SentencePiece '▁' token, a different merge across the boundary); splitting the
        joint encoding by character offsets gives the ids of the text as trained. A token
        that straddles the boundary with non-space prompt text is an error.
        """
        text = prompt + self.answer_prefix + answer.strip() + self.answer_suffix
        enc = self.tokenizer(text, add_special_tokens=self.add_special_tokens,
                             return_offsets_mapping=True)
        ids, offsets = list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]
        boundary = len(prompt)
        split = len(ids)
        for i, (start, end) in enumerate(offsets):
            if end > boundary and end > start:
                split = i
                if start < boundary and prompt[start:boundary].strip():
                    # The token straddles the boundary. Only the separator may be on the
                    # answer side (e.g. ':▁' in a SentencePiece vocabulary): it stays with
                    # the prompt. Answer characters inside it cannot be split off.
                    if text[boundary:end].strip():
                        raise ValueError(f"{self.name}: token {ids[i]} ({text[start:end]!r}) "
                                         f"spans the prompt/answer boundary; the answer "
                                         f"cannot be split from the prompt")
                    split = i + 1
                break
        # Tokens with an empty span after the boundary were added by the tokenizer's
        # post-processor (e.g. an appended EOS), not written in the text: not answer tokens.
        answer_ids = [t for t, (s, e) in zip(ids[split:], offsets[split:]) if e > s]
        return ids[:split], offsets[:split], answer_ids

    def tokenize_answer(self, answer: str, question: str = "") -> list[int]:
        """Answer token ids as they follow the prompt of `question` (no special tokens)."""
        return self.encode_qa(self.format_prompt(question), answer)[2]

    add_special_tokens: bool = True
    answer_prefix: str = " "
    answer_suffix: str = ""

    @property
    def max_positions(self) -> int | None:
        """The most token positions one sequence may have (the checkpoint's context length,
        from its config); None when the adapter knows of no limit. Facts are checked against
        it when they are encoded (`harness.diffusion.batching.encode_fact`)."""
        return None

    @property
    def emittable_vocab_size(self) -> int:
        """Ids at or above this have no token (the embedding table may be padded past the
        tokenizer): the sampler never emits them."""
        return len(self.tokenizer)

    # ---- forward -------------------------------------------------------------------
    @abstractmethod
    def raw_logits(self, input_ids: torch.Tensor,
                   attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The model's own logits [B, L, V] (not aligned)."""

    def logits(self, input_ids: torch.Tensor,
               attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Aligned logits: row i is the distribution of token i."""
        raw = self.raw_logits(input_ids, attention_mask)
        if not self.shifted_logits:
            return raw
        return torch.cat([raw[:, :1], raw[:, :-1]], dim=1)

    def logits_at(self, input_ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """[N, V] aligned logits of the N `positions` (bool [B, L]) in row-major order: the
        rows of `logits(input_ids)[positions]`. Adapters that can apply the output head to
        those rows only (training computes a loss on the masked tokens alone) override it."""
        return self.logits(input_ids)[positions.bool()]

    # ---- life cycle ----------------------------------------------------------------
    @classmethod
    def initial(cls, spec: BackboneSpec, corpus_texts: Sequence[str], seed: int = 0) -> "Backbone":
        """The backbone before TOFU-style fine-tuning: a random twin built for the corpus
        (embedded / twin adapters) or the pretrained hub checkpoint (real adapters)."""
        raise NotImplementedError(f"adapter '{spec.adapter}' cannot build an initial model")

    def save_pretrained(self, directory: str) -> None:
        """Save weights (safetensors) + config + tokenizer so that
        `load_backbone(replace(spec, path=directory))` restores this exact model."""
        raise NotImplementedError(f"adapter '{self.spec.adapter}' cannot save checkpoints")

    # ---- placement -----------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def identity(self) -> dict[str, Any]:
        """Identity of the loaded weights: spec identity + a fingerprint of the weights."""
        ident = self.spec.identity()
        ident["weights_fingerprint"] = weights_fingerprint(self.model)
        return ident


def weights_fingerprint(model: nn.Module, n_tensors: int = 8) -> str:
    """Cheap, deterministic fingerprint of a model's weights (shapes + sampled values)."""
    digest = hashlib.sha256()
    params = list(model.state_dict().items())
    digest.update(json.dumps([(k, list(v.shape)) for k, v in params]).encode())
    step = max(1, len(params) // n_tensors)
    for _, tensor in params[::step]:
        flat = tensor.detach().reshape(-1)[:64].float().cpu()
        digest.update(flat.numpy().tobytes())
    return digest.hexdigest()[:16]


def spec_to_dict(spec: BackboneSpec) -> dict[str, Any]:
    return asdict(spec)
