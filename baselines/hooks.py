"""Forward hooks used by ROME/MEMIT: read a module's input/output, add a vector at positions."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn


def _tensor(output):
    return output[0] if isinstance(output, (tuple, list)) else output


@contextmanager
def capture(module: nn.Module, what: str = "input") -> Iterator[list[torch.Tensor]]:
    """Collect the module's first input ('input') or its output ('output') on each forward."""
    if what not in ("input", "output"):
        raise ValueError(f"capture: what must be 'input' or 'output', got {what!r}")
    seen: list[torch.Tensor] = []

    def hook(mod, args, output):
        seen.append((args[0] if what == "input" else _tensor(output)).detach())

    handle = module.register_forward_hook(hook)
    try:
        yield seen
    finally:
        handle.remove()


def at_positions(hidden: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """[N, D] rows hidden[r, positions[r]] of a [N, L, D] tensor."""
    rows = torch.arange(hidden.shape[0], device=hidden.device)
    return hidden[rows, positions.to(hidden.device)]


@contextmanager
def add_at_positions(module: nn.Module, delta: torch.Tensor, positions: list[torch.Tensor]
                     ) -> Iterator[None]:
    """Add `delta` [D] to the module's output at positions[0][r] of row r (differentiable).

    `positions` is a one-element list so that the caller can swap the positions between
    forwards of differently shaped batches without re-registering the hook."""

    def hook(mod, args, output):
        out = _tensor(output)
        pos = positions[0].to(out.device)
        rows = torch.arange(out.shape[0], device=out.device)
        bump = torch.zeros_like(out)
        bump = bump.index_put((rows, pos), delta.to(out.dtype).expand(len(rows), -1))
        new = out + bump
        if isinstance(output, tuple):
            return (new,) + tuple(output[1:])
        return new

    handle = module.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()
