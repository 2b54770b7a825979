"""Checkpoints of the project's own models: safetensors weights + config JSON + tokenizer.

Written atomically: everything goes to a temporary sibling directory that is renamed into
place, so an interrupted save never leaves a half-written checkpoint.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file
from torch import nn

from harness.atomic import atomic_directory

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


def save_checkpoint(model: nn.Module, tokenizer: Any, directory: str | os.PathLike,
                    config: dict[str, Any]) -> Path:
    """Save weights (safetensors), `config` (JSON, must name its `architecture`) and tokenizer."""
    from harness.backbones.tokenizer_training import save_tokenizer

    if "architecture" not in config:
        raise ValueError("checkpoint config must name its 'architecture'")
    with atomic_directory(directory) as tmp:
        state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / WEIGHTS_FILE))
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True))
        save_tokenizer(tokenizer, tmp)
    return Path(directory)


def read_checkpoint_config(directory: str | os.PathLike) -> dict[str, Any]:
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint config missing (is {directory} a checkpoint?)")
    return json.loads(path.read_text())


def load_weights(model: nn.Module, directory: str | os.PathLike) -> nn.Module:
    """Load safetensors weights into `model`; every key must match."""
    path = Path(directory) / WEIGHTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: weights missing from checkpoint")
    state = load_file(str(path))
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{path}: weights do not match the model "
                         f"(missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]})")
    return model
