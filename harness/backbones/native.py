"""The one adapter implementation of every backbone: native model classes, local snapshots.

A `BackboneProfile` holds the structural facts of one paper backbone (its native model
family, where the blocks / MLP output projections / embeddings sit, whether logits are
shifted, its mask token, how its tokenizer ships). `NativeBackbone` implements the
`Backbone` contract from the profile for

- the real checkpoint: a local snapshot folder (`path`) or the Hugging Face cache snapshot
  of `hf_id` (never downloaded here; `revision` optional, checked against the snapshot);
- its structural twin: a tiny random instance of the *same* class, written to disk in the
  upstream format (config.json field names, safetensors keys, tokenizer files) and read
  back through the very same loader.

The two adapters of a backbone (`<family>-hf`, `<family>-twin`) differ only in `initial()`:
the pretrained snapshot, or a random twin sized by `options.size`. No code from the hub is
executed: the models are the project's own classes (`harness/backbones/models/`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar, Sequence

import torch
from torch import nn

from harness.atomic import atomic_directory
from harness.backbones.base import Backbone, BackboneSpec, spec_to_dict
from harness.backbones.chat_formats import prompt_format
from harness.backbones.models.family import ModelFamily, TinyDims, TokenIds
from harness.backbones.snapshot import (LINEAGE_FILE, SnapshotError, SnapshotInfo, check_pin,
                                        find_cached_snapshot, fingerprint, lineage_of,
                                        load_model, save_model, verify_content,
                                        write_content_manifest)
from harness.backbones.tokenizer_files import (load_snapshot_tokenizer, to_qwen2_pipeline,
                                               write_snapshot_tokenizer)
from harness.backbones.twin_tokenizers import TwinTokens, build_twin_tokenizer
from harness.hooks import forward_hook

DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16,
                                  "float16": torch.float16}

# Named twin sizes: (layers, d_model, heads, MLP width). kv heads come from the profile's
# ratio (`kv_heads_divisor`), experts from the profile's MoE layout.
# A size without "mlp_hidden" takes the MLP width from the backbone's profile (`mlp_ratio`
# x d_model, the real config's proportion); "micro" keeps a fixed width for fast tests.
TWIN_SIZES: dict[str, dict[str, int]] = {
    "micro": {"n_layers": 2, "d_model": 32, "n_heads": 2, "mlp_hidden": 64},
    "tiny": {"n_layers": 2, "d_model": 64, "n_heads": 2},
    "narrow": {"n_layers": 6, "d_model": 32, "n_heads": 2},
    "small": {"n_layers": 4, "d_model": 128, "n_heads": 4},
    "base": {"n_layers": 6, "d_model": 256, "n_heads": 4},
}
SIZE_KEYS = ("n_layers", "d_model", "n_heads", "mlp_hidden")


@dataclass(frozen=True)
class BackboneProfile:
    """Structural facts about one paper backbone (sources: docs/backbones.md)."""

    name: str
    family: ModelFamily
    blocks_path: str  # relative to backbone.model
    mlp_out_path: str  # relative to one block
    embeddings_path: str  # relative to backbone.model
    final_norm_path: str  # relative to backbone.model: the norm whose output feeds the head
    shifted_logits: bool
    tokens: TwinTokens  # the real tokenizer's special tokens (the twin's carry the same)
    tokenizer_layout: str = "tokenizer_json"  # how the real tokenizer ships: or "vocab_merges"
    known_mask_token_id: int | None = None
    known_mask_token_note: str = ""
    # Twin proportions taken from the real config (docs/measurements/twin_sizes.md):
    mlp_ratio: float = 3.0  # MLP (MoE: each expert's) width / d_model
    kv_heads_divisor: int = 1  # twin: n_heads / n_kv_heads, as in the real config
    experts: tuple[int, int] = (0, 0)  # twin MoE layout: (n_experts, experts_per_token)


@dataclass(frozen=True)
class MaskToken:
    id: int
    source: str  # where the id was read (reported by `check` and in results)


class NativeBackbone(Backbone):
    """A paper backbone (or its twin) on the project's native model class."""

    profile: ClassVar[BackboneProfile]
    KNOWN_OPTIONS: ClassVar[frozenset[str]] = frozenset({"prompt_format", "mask_token_id"})

    def __init__(self, spec: BackboneSpec, model: nn.Module | None = None,
                 tokenizer: Any = None, model_config: Any = None,
                 snapshot: SnapshotInfo | None = None):
        self.spec = spec
        self.check_options(spec)
        if spec.trust_remote_code:
            raise ValueError(f"backbone '{spec.name}': trust_remote_code is not supported: the "
                             f"project loads {self.profile.name} with its own model class "
                             f"(harness/backbones/models/); remove the key")
        if model is None:
            directory = snapshot_directory(spec)
            snapshot = fingerprint(directory)
            check_pin(snapshot, spec.revision, spec.name)
            tokenizer = load_snapshot_tokenizer(directory)
            model, model_config = load_model(directory, self.profile.family, torch_dtype(spec),
                                              spec.device)
            # Last, so that a file that does not parse or fit is named by what is wrong
            # with it; a file edited since it was saved parses and is caught here.
            verify_content(directory)
        if tokenizer is None or model_config is None:
            raise ValueError(f"backbone '{spec.name}': a tokenizer and the model config are required")
        self.snapshot = snapshot
        self.model_config = model_config
        self._setup(model, tokenizer)

    @classmethod
    def check_options(cls, spec: BackboneSpec) -> None:
        unknown = set(spec.options) - cls.KNOWN_OPTIONS
        if unknown:
            raise ValueError(f"backbone '{spec.name}' ({spec.adapter}): unknown option(s) "
                             f"{', '.join(sorted(unknown))}; known: "
                             f"{', '.join(sorted(cls.KNOWN_OPTIONS))}")

    def _setup(self, model: nn.Module, tokenizer: Any) -> None:
        self.model = model.to(device=self.spec.device, dtype=torch_dtype(self.spec)).eval()
        self.tokenizer = tokenizer
        self._prompt = prompt_format(self.spec.options.get("prompt_format", "plain"))
        self.add_special_tokens = self._prompt.add_special_tokens
        self.answer_prefix = self._prompt.answer_prefix
        self.answer_suffix = self._prompt.answer_suffix
        self.mask_token = self.resolve_mask_token()
        self.mlp_out_proj(0)  # fail at load time if the documented path is wrong

    def resolve_mask_token(self) -> MaskToken:
        """Mask id from, in order: options.mask_token_id, the checkpoint config, the
        tokenizer, the profile's known constant. The first present wins; its source is kept."""
        profile = self.profile
        candidates = [
            (self.spec.options.get("mask_token_id"), "config option 'mask_token_id'"),
            (profile.family.config_mask_token_id(self.model_config), "checkpoint config.json"),
            (getattr(self.tokenizer, "mask_token_id", None), "tokenizer mask_token"),
            (profile.known_mask_token_id, f"known constant ({profile.known_mask_token_note})"),
        ]
        for value, source in candidates:
            if value is not None:
                token = MaskToken(int(value), source)
                break
        else:
            raise ValueError(f"backbone '{self.spec.name}': no mask token id in the checkpoint "
                             f"config or tokenizer and no known constant for {profile.name}; "
                             f"set options.mask_token_id")
        rows = self.input_embeddings().weight.shape[0]
        if not 0 <= token.id < rows:
            raise ValueError(f"backbone '{self.spec.name}': mask token id {token.id} "
                             f"({token.source}) is outside the embedding table ({rows} rows)")
        return token

    # ---- tokens --------------------------------------------------------------------
    @property
    def mask_token_id(self) -> int:
        return self.mask_token.id

    @property
    def shifted_logits(self) -> bool:
        return self.profile.shifted_logits

    def format_prompt(self, question: str) -> str:
        return self._prompt.render(self.tokenizer, question)

    @property
    def max_positions(self) -> int | None:
        """The context length of the checkpoint's config: LLaDA / MMaDA `max_sequence_length`,
        Dream, DiffuLLaMA and LLaDA-MoE `max_position_embeddings` (upstream field names)."""
        for field in ("max_sequence_length", "max_position_embeddings"):
            value = getattr(self.model_config, field, None)
            if value is not None:
                return int(value)
        return None

    # ---- structure -----------------------------------------------------------------
    def blocks(self) -> Sequence[nn.Module]:
        return self.model.get_submodule(self.profile.blocks_path)

    def mlp_out_proj(self, layer: int) -> nn.Module:
        return self.blocks()[layer].get_submodule(self.profile.mlp_out_path)

    def input_embeddings(self) -> nn.Embedding:
        return self.model.get_submodule(self.profile.embeddings_path)

    @property
    def query_blocks(self) -> bool:
        return self.profile.family.query_blocks

    # ---- forward -------------------------------------------------------------------
    def raw_logits(self, input_ids: torch.Tensor,
                   attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.model(input_ids, attention_mask)

    def logits_at(self, input_ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """The head runs on the selected rows only: a forward hook on the final norm keeps
        the hidden states that feed them (for a shifted model, aligned position i is raw
        position i - 1, position 0 stays 0), as one [1, N, d] sequence."""
        positions = positions.bool().to(input_ids.device)
        rows, cols = positions.nonzero(as_tuple=True)
        if self.shifted_logits:
            cols = (cols - 1).clamp(min=0)
        flat = rows * input_ids.shape[1] + cols

        def keep_selected(_module, _args, output: torch.Tensor) -> torch.Tensor:
            return output.reshape(1, -1, output.shape[-1])[:, flat]

        with forward_hook(self.model.get_submodule(self.profile.final_norm_path), keep_selected):
            return self.raw_logits(input_ids)[0]

    # ---- life cycle ----------------------------------------------------------------
    def with_model(self, model: nn.Module) -> "NativeBackbone":
        """A new adapter over another model of the same architecture (e.g. a fine-tuned copy)."""
        return type(self)(replace(self.spec), model=model, tokenizer=self.tokenizer,
                          model_config=self.model_config, snapshot=self.snapshot)

    def save_pretrained(self, directory: str, max_shard_bytes: int | None = None) -> None:
        """config.json + safetensors + tokenizer files in the upstream on-disk format, and the
        content manifest (size + sha256 of each file, and this backbone's spec minus path and
        device: what loads it back) that the loader verifies (`snapshot.verify_content`)."""
        with atomic_directory(directory) as tmp:
            save_model(self.model, self.profile.family, self.model_config, Path(tmp),
                       max_shard_bytes)
            write_snapshot_tokenizer(self.tokenizer, tmp, self.profile.tokenizer_layout)
            base = lineage_of(self.snapshot)
            if base is not None:
                (Path(tmp) / LINEAGE_FILE).write_text(json.dumps({"base": base}, indent=2))
            record = {k: v for k, v in spec_to_dict(self.spec).items()
                      if k not in ("path", "device")}
            write_content_manifest(tmp, backbone=record)

    def identity(self) -> dict[str, Any]:
        ident = super().identity()
        if self.snapshot is not None:
            ident.update({"snapshot_revision": self.snapshot.revision,
                          "config_sha256": self.snapshot.config_sha256,
                          "index_sha256": self.snapshot.index_sha256,
                          "base_snapshot": self.snapshot.base})
        return ident


class PretrainedBackbone(NativeBackbone):
    """`<family>-hf`: the real checkpoint; `initial()` is the pretrained snapshot."""

    trained_here = False

    @classmethod
    def initial(cls, spec: BackboneSpec, corpus_texts: Sequence[str],
                seed: int = 0) -> "PretrainedBackbone":
        return cls(spec)


class TwinBackbone(NativeBackbone):
    """`<family>-twin`: a tiny random instance of the real class (`options.size`)."""

    trained_here = True  # fine-tuned here from random weights (harness.finetune)

    KNOWN_OPTIONS = NativeBackbone.KNOWN_OPTIONS | {"size", "vocab_size", *SIZE_KEYS,
                                                    "n_kv_heads", "n_experts",
                                                    "experts_per_token"}

    @classmethod
    def initial(cls, spec: BackboneSpec, corpus_texts: Sequence[str],
                seed: int = 0) -> "TwinBackbone":
        """A random twin with a BPE tokenizer trained on the corpus (the real specials)."""
        cls.check_options(spec)
        options = dict(spec.options)
        chat = options.get("prompt_format", "plain") == "chat"
        tokenizer = build_twin_tokenizer(corpus_texts, cls.profile.tokens,
                                         vocab_size=int(options.get("vocab_size", 1024)),
                                         chat=chat)
        if cls.profile.tokenizer_layout == "vocab_merges":
            # vocab.json + merges.txt record only the BPE tables: the twin uses the real
            # tokenizer's (Qwen2) pre-tokenizer so that its files describe it completely.
            tokenizer = to_qwen2_pipeline(tokenizer)
        cfg = cls.profile.family.tiny_config(twin_dims(cls.profile, options),
                                             twin_token_ids(cls.profile.tokens, tokenizer))
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            model = cls.profile.family.build(cfg)
            if cls.profile.family.init_weights is not None:
                cls.profile.family.init_weights(model, seed)
        return cls(spec, model=model, tokenizer=tokenizer, model_config=cfg)


def twin_dims(profile: BackboneProfile, options: dict[str, Any]) -> TinyDims:
    size = options.get("size", "small")
    if size not in TWIN_SIZES:
        raise KeyError(f"unknown twin size '{size}'; known: {', '.join(TWIN_SIZES)}")
    preset = TWIN_SIZES[size]
    dims = {k: int(options.get(k, preset.get(k, 0))) for k in SIZE_KEYS}
    n_experts = int(options.get("n_experts", profile.experts[0]))
    top_k = int(options.get("experts_per_token", profile.experts[1]))
    if "mlp_hidden" not in options:
        if "mlp_hidden" not in preset:  # proportioned: the real MLP/d_model ratio, x8
            dims["mlp_hidden"] = max(8, 8 * round(dims["d_model"] * profile.mlp_ratio / 8))
        elif n_experts:
            # A fixed dense width split over top_k experts: active compute matches it.
            dims["mlp_hidden"] = max(8, dims["mlp_hidden"] // max(1, top_k))
    kv = int(options.get("n_kv_heads", max(1, dims["n_heads"] // profile.kv_heads_divisor)))
    return TinyDims(n_kv_heads=kv, n_experts=n_experts, experts_per_token=top_k, **dims)


def twin_token_ids(tokens: TwinTokens, tokenizer: Any) -> TokenIds:
    mask_id = tokenizer.convert_tokens_to_ids(tokens.mask)
    if mask_id is None or mask_id == tokenizer.unk_token_id:
        raise ValueError(f"twin tokenizer lacks the mask token {tokens.mask}")
    bos = tokenizer.convert_tokens_to_ids(tokens.bos) if tokens.bos else None
    return TokenIds(vocab_size=len(tokenizer), mask_token_id=int(mask_id),
                    eos_token_id=int(tokenizer.eos_token_id),
                    pad_token_id=int(tokenizer.pad_token_id), bos_token_id=bos)


def torch_dtype(spec: BackboneSpec) -> torch.dtype:
    try:
        return DTYPES[spec.dtype]
    except KeyError:
        raise ValueError(f"backbone '{spec.name}': unknown dtype '{spec.dtype}'; "
                         f"known: {', '.join(DTYPES)}") from None


def snapshot_directory(spec: BackboneSpec) -> Path:
    """The local snapshot folder of `spec`: its `path`, else the cache snapshot of `hf_id`."""
    if spec.path:
        path = Path(spec.path)
        if not path.is_dir():
            raise SnapshotError(f"backbone '{spec.name}': path {path} is not a folder (a local "
                                f"snapshot: config.json + safetensors + tokenizer files)")
        return path
    if spec.hf_id:
        return find_cached_snapshot(spec.hf_id, spec.revision)
    raise SnapshotError(f"backbone '{spec.name}' ({spec.adapter}): set 'path' (a snapshot folder) "
                        f"or 'hf_id' (read from the local Hugging Face cache)")
