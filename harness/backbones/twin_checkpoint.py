"""Checkpoints of structural twins: safetensors weights + config.json + HF tokenizer files.

Like `checkpoint.save_checkpoint`, but the tokenizer is written with `save_pretrained`
so that its special tokens (BOS, mask) and chat template survive the round trip.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from safetensors.torch import save_file
from torch import nn

from harness.atomic import atomic_directory
from harness.backbones.checkpoint import CONFIG_FILE, WEIGHTS_FILE


def save_twin_checkpoint(model: nn.Module, tokenizer: Any, directory: str | os.PathLike,
                         config: dict[str, Any]) -> Path:
    if "architecture" not in config:
        raise ValueError("twin checkpoint config must name its 'architecture'")
    with atomic_directory(directory) as tmp:
        state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / WEIGHTS_FILE))
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True))
        tokenizer.save_pretrained(str(tmp))
    return Path(directory)
