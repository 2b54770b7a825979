"""Find a backbone's output embedding (unembedding) matrix W_U [V, d_model]."""

from __future__ import annotations

import torch
from torch import nn

from harness.backbones.base import Backbone


def vocab_size(backbone: Backbone) -> int:
    return int(backbone.input_embeddings().weight.shape[0])


def unembedding_matrix(backbone: Backbone) -> torch.Tensor:
    """W_U [V, d]: `get_output_embeddings()` when the model has it (HF models), else the
    last nn.Linear whose out_features is the vocabulary size, else the (tied) input
    embedding table."""
    vocab = vocab_size(backbone)
    getter = getattr(backbone.model, "get_output_embeddings", None)
    if callable(getter):
        module = getter()
        if module is not None and getattr(module, "weight", None) is not None \
                and module.weight.shape[0] == vocab:
            return module.weight.detach()
    last = None
    for module in backbone.model.modules():
        if isinstance(module, nn.Linear) and module.out_features == vocab:
            last = module
    if last is not None:
        return last.weight.detach()
    return backbone.input_embeddings().weight.detach()
