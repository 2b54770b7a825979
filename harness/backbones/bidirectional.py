"""Bidirectional attention for `transformers` decoder-only classes (Llama, Qwen2, ...).

transformers 5.x builds every decoder's attention mask through
`masking_utils.create_causal_mask`, which falls back to `create_bidirectional_mask`
when the model config says `is_causal = False`; the attention modules also carry an
`is_causal` flag that SDPA reads when no mask is materialised. Setting both turns an
AR decoder into the bidirectional denoiser that AR-adapted MDLMs (DiffuLLaMA, and the
structural twin of Dream) are. Weights are untouched. `tests/backbones` checks that a
later token changes earlier positions' logits after the switch (and not before).
"""

from __future__ import annotations

from torch import nn


def make_bidirectional(model: nn.Module) -> nn.Module:
    """Switch `model` (a transformers PreTrainedModel) to full bidirectional attention."""
    config = getattr(model, "config", None)
    if config is None:
        raise TypeError(f"{type(model).__name__} has no transformers config; cannot switch "
                        f"its attention to bidirectional")
    configs = [config] + [getattr(config, name) for name in ("text_config",)
                          if getattr(config, name, None) is not None]
    for cfg in configs:
        cfg.is_causal = False
    flipped = 0
    for module in model.modules():
        if hasattr(module, "is_causal") and isinstance(module.is_causal, bool):
            module.is_causal = False
            flipped += 1
    if flipped == 0:
        raise TypeError(f"{type(model).__name__}: no attention module with an 'is_causal' flag "
                        f"found; this transformers class cannot be made bidirectional here")
    return model

