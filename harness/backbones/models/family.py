"""The contract every native model family implements (LLaDA, LLaDA-MoE, Dream, DiffuLLaMA).

A *family* turns a checkpoint's own `config.json` (field names exactly as the upstream
configuration file names them) into a typed config, builds the model whose `state_dict`
keys are exactly the upstream checkpoint's parameter names, and writes tiny configs in the
same on-disk format for the structural twins. The snapshot loader
(`harness.backbones.snapshot`) builds the model on the meta device and assigns the
safetensors shards one by one; nothing from the hub is ever executed.

Conventions shared by every family:
- `build(cfg)` works under `torch.device("meta")`; afterwards `reset_buffers(model)` rebuilds
  any non-persistent buffer (e.g. rotary `inv_freq`) on the CPU from the config.
- `model(input_ids, attention_mask=None)` returns the raw logits tensor [B, L, V] (not a
  ModelOutput); `attention_mask` is [B, L] with 1 = attend, 0 = padding key.
- Every config field the forward depends on is read under its upstream name; a value the
  project does not implement raises `UnsupportedConfig` naming field, value and file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn


class UnsupportedConfig(ValueError):
    """A checkpoint config value this project's native model does not implement."""

    def __init__(self, source: str, field: str, value: Any, supported: str):
        self.source, self.field, self.value = source, field, value
        super().__init__(f"{source}: config field '{field}' = {value!r} is not supported by the "
                         f"native model (supported: {supported})")


class MissingConfigField(ValueError):
    """A field the native model needs is absent from the checkpoint's config.json."""

    def __init__(self, source: str, field: str, detail: str = ""):
        self.source, self.field = source, field
        super().__init__(f"{source}: required config field '{field}' is missing{detail}")


def require_fields(raw: dict[str, Any], source: str, names: tuple[str, ...]) -> None:
    """Raise `MissingConfigField` for the first of `names` absent from `raw`."""
    for name in names:
        if name not in raw:
            raise MissingConfigField(source, name)


@dataclass(frozen=True)
class TinyDims:
    """Sizes of a structural twin (a tiny instance of a family's real class)."""

    n_layers: int
    d_model: int
    n_heads: int
    n_kv_heads: int
    mlp_hidden: int  # dense MLP width (MoE: each expert's width)
    n_experts: int = 0  # MoE families only
    experts_per_token: int = 0
    max_positions: int = 1024


@dataclass(frozen=True)
class TokenIds:
    """Special token ids a tiny config records (the real configs carry their own)."""

    vocab_size: int
    mask_token_id: int
    eos_token_id: int
    pad_token_id: int
    bos_token_id: int | None = None


@dataclass(frozen=True)
class ModelFamily:
    """One native model family. All callables are pure functions of their arguments."""

    name: str
    # (raw config.json dict, source path for messages) -> typed config; raises UnsupportedConfig
    parse_config: Callable[[dict[str, Any], str], Any]
    # typed config -> config.json dict in the upstream format (parse_config round-trips it)
    config_json: Callable[[Any], dict[str, Any]]
    # typed config -> nn.Module with upstream parameter names (callable on the meta device)
    build: Callable[[Any], nn.Module]
    # model -> None: re-create non-persistent buffers on the CPU after meta construction
    reset_buffers: Callable[[nn.Module], None]
    # (dims, token ids) -> typed config of a tiny twin
    tiny_config: Callable[[TinyDims, TokenIds], Any]
    # typed config -> mask token id declared by the config (None if the config has none)
    config_mask_token_id: Callable[[Any], int | None]
    # (model, seed) -> None: deterministic random weights for a twin (None: the class's own
    # initialisation under torch.manual_seed(seed))
    init_weights: Callable[[nn.Module, int], Any] | None = None
    # True: every block's forward takes `queries` ([B, P] positions) and then returns its
    # output at those positions only, [B, P, d], computing attention queries, the attention
    # output and the MLP for those rows alone (keys and values from every position; the same
    # numbers as the full block at those rows). TimeROME's tracing runs the last block of a
    # truncated run that way (`Backbone.query_blocks`). Families on transformers decoder
    # classes (Dream, DiffuLLaMA) cannot.
    query_blocks: bool = False


def at_queries(x: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
    """[B, P, d]: row b's hidden states at positions queries[b] ([B, P]); a block's residual
    and attention queries under `ModelFamily.query_blocks`."""
    return x[torch.arange(x.shape[0], device=x.device).unsqueeze(1), queries.to(x.device)]
