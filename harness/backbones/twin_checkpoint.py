"""Checkpoints of structural twins: safetensors weights + config.json + HF tokenizer files.

Like `checkpoint.save_checkpoint`, but the tokenizer is written with `save_pretrained`
so that its special tokens (BOS, mask) and chat template survive the round trip.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from safetensors.torch import save_file
from torch import nn

from harness.backbones.checkpoint import CONFIG_FILE, WEIGHTS_FILE


@contextmanager
def atomic_directory(directory: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling directory that replaces `directory` when the block succeeds."""
    target = Path(directory)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        yield tmp
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


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
