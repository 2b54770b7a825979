"""The one forward-hook utility (after memit's `nethook`): every forward hook in `harness/`
and `baselines/` is registered here.

- `install_forward_hook(module, fn)`: the only `register_forward_hook` call; returns the
  torch handle for a hook that must outlive one block (TimeROME's edit memory installs its
  hooks with it and removes them on `detach`). `fn(module, inputs, output)` returns None
  to leave the output as it is, or the replacement output.
- `forward_hook(module, fn)`: the same hook for the duration of a `with` block; the handle
  is removed on exit, also when the body raises.
- `capture_input(module, select)` / `capture_output(module, select)`: collect the module's
  first input / its output tensor (detached, optionally reduced by `select`) per forward.
- `add_at_positions(module, delta, positions)`: add a vector to the output at one position
  per row (ROME/MEMIT's value optimisation).
- `output_tensor(output)` and `at_positions(hidden, positions)`: small helpers for hooks.
- `skipped_forwards(modules, output)`: the modules return `output` without computing
  anything while the block runs (the result of those layers is already known: TimeROME's
  tracing starts a restored run at the layer it restores, harness.timerome.tracing).
- `block_queries(block, queries)`: the block is called with `queries=...` (a forward
  pre-hook, the only one here): a block of a `ModelFamily.query_blocks` family then
  computes its output at those positions only (the last block of TimeROME's truncated runs).
"""

from __future__ import annotations

from contextlib import AbstractContextManager, ExitStack, contextmanager
from contextvars import ContextVar
from typing import Any, Callable, Iterator, Mapping, Sequence, TypeVar

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

HookFn = Callable[[nn.Module, tuple[Any, ...], Any], Any]
Select = Callable[[torch.Tensor], torch.Tensor]
Key = TypeVar("Key")


def install_forward_hook(module: nn.Module, fn: HookFn) -> RemovableHandle:
    """Register `fn` as a forward hook that stays until `handle.remove()` is called."""
    return module.register_forward_hook(fn)


@contextmanager
def forward_hook(module: nn.Module, fn: HookFn) -> Iterator[None]:
    """`fn` hooks `module`'s forward inside the block; removed on exit and on an exception."""
    handle = install_forward_hook(module, fn)
    try:
        yield
    finally:
        handle.remove()


@contextmanager
def forward_hooks(hooks: Sequence[tuple[nn.Module, HookFn]]) -> Iterator[None]:
    """Several (module, fn) hooks for one block, registered in order, all removed on exit."""
    with ExitStack() as stack:
        for module, fn in hooks:
            stack.enter_context(forward_hook(module, fn))
        yield


def output_tensor(output: Any) -> torch.Tensor:
    """The tensor of a module output (the first element of a tuple/list output)."""
    return output[0] if isinstance(output, (tuple, list)) else output


def _identity(tensor: torch.Tensor) -> torch.Tensor:
    return tensor


@contextmanager
def _collecting(module: nn.Module, take: Callable[[tuple, Any], torch.Tensor]
                ) -> Iterator[list[torch.Tensor]]:
    """Collect `take(inputs, output)` (detached) on each forward of `module`."""
    seen: list[torch.Tensor] = []

    def hook(_module, args, output):
        seen.append(take(args, output).detach())

    with forward_hook(module, hook):
        yield seen


def capture_input(module: nn.Module, select: Select = _identity
                  ) -> AbstractContextManager[list[torch.Tensor]]:
    """Collect `select(first input)` (detached) on each forward of `module`."""
    return _collecting(module, lambda args, _output: select(args[0]))


def capture_output(module: nn.Module, select: Select = _identity
                   ) -> AbstractContextManager[list[torch.Tensor]]:
    """Collect `select(output tensor)` (detached) on each forward of `module`."""
    return _collecting(module, lambda _args, output: select(output_tensor(output)))


@contextmanager
def capture_inputs(modules: Mapping[Key, nn.Module], select: Select = _identity
                   ) -> Iterator[dict[Key, list[torch.Tensor]]]:
    """`capture_input` on several modules at once: {key: inputs seen by modules[key]}."""
    with ExitStack() as stack:
        yield {key: stack.enter_context(capture_input(m, select)) for key, m in modules.items()}


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

    def hook(_module, _args, output):
        out = output_tensor(output)
        pos = positions[0].to(out.device)
        rows = torch.arange(out.shape[0], device=out.device)
        bump = torch.zeros_like(out)
        bump = bump.index_put((rows, pos), delta.to(out.dtype).expand(len(rows), -1))
        new = out + bump
        if isinstance(output, tuple):
            return (new,) + tuple(output[1:])
        return new

    with forward_hook(module, hook):
        yield


@contextmanager
def skipped_forwards(modules: Sequence[nn.Module], output: torch.Tensor) -> Iterator[None]:
    """Inside the block each module's forward returns `output` at once, whatever its input
    (its forward hooks still run; its submodules do not). The instance `forward` is restored
    on exit, also when the body raises."""
    def known(*_args: Any, **_kwargs: Any) -> torch.Tensor:
        return output

    replaced: list[tuple[nn.Module, Any]] = []
    token = _SKIPPED.set(_SKIPPED.get() | {id(m) for m in modules})
    try:
        for module in modules:
            replaced.append((module, module.__dict__.get("forward")))
            module.forward = known
        yield
    finally:
        _SKIPPED.reset(token)
        for module, previous in replaced:
            if previous is None:
                del module.forward
            else:
                module.forward = previous


_SKIPPED: ContextVar[frozenset[int]] = ContextVar("harness_skipped_forwards",
                                                  default=frozenset())


def skipped_count(modules: Sequence[nn.Module]) -> int:
    """How many of `modules` are skipped (`skipped_forwards`) right now: the compute counter
    (harness.compute) prices a forward by the blocks it actually computed."""
    skipped = _SKIPPED.get()
    return sum(id(m) in skipped for m in modules) if skipped else 0


@contextmanager
def block_queries(block: nn.Module, queries: torch.Tensor) -> Iterator[None]:
    """Inside the block every call of `block` gets the keyword `queries=queries` ([B, P]
    positions; the block must take it: `Backbone.query_blocks`); removed on exit, also when
    the body raises."""
    def add_queries(_module, args, kwargs):
        return args, {**kwargs, "queries": queries}

    handle = block.register_forward_pre_hook(add_queries, with_kwargs=True)
    try:
        yield
    finally:
        handle.remove()
