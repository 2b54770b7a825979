"""The one forward-hook utility (`harness.hooks`): hooks act inside their block and are
gone after it, also when the block raises."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from harness.hooks import (
    add_at_positions,
    capture_input,
    capture_inputs,
    capture_output,
    forward_hook,
    forward_hooks,
    install_forward_hook,
)


def _linear() -> nn.Linear:
    torch.manual_seed(0)
    return nn.Linear(3, 3)


def test_hook_is_removed_when_the_block_raises():
    layer, x = _linear(), torch.randn(2, 3)
    plain = layer(x)

    def double(_m, _a, output):
        return output * 2

    with pytest.raises(RuntimeError, match="boom"):
        with forward_hook(layer, double):
            assert torch.allclose(layer(x), plain * 2)
            raise RuntimeError("boom")
    assert not layer._forward_hooks
    assert torch.equal(layer(x), plain)


def test_several_hooks_all_removed_on_error_in_the_block():
    layers = [_linear(), _linear()]
    with pytest.raises(ValueError):
        with forward_hooks([(m, lambda *_: None) for m in layers]):
            assert all(len(m._forward_hooks) == 1 for m in layers)
            raise ValueError
    assert not any(m._forward_hooks for m in layers)


def test_capture_input_and_output_see_each_forward():
    layer, x = _linear(), torch.randn(2, 3)
    with capture_input(layer) as ins, capture_output(layer, lambda t: t[0]) as outs:
        y = layer(x)
        layer(x + 1)
    assert len(ins) == len(outs) == 2
    assert torch.equal(ins[0], x) and torch.equal(ins[1], x + 1)
    assert torch.equal(outs[0], y[0].detach())
    assert not layer._forward_hooks


def test_capture_inputs_keys_by_name():
    a, b = _linear(), _linear()
    x = torch.randn(1, 3)
    with capture_inputs({"a": a, "b": b}) as seen:
        b(a(x))
    assert torch.equal(seen["a"][0], x) and torch.equal(seen["b"][0], a(x).detach())


def test_add_at_positions_adds_only_at_the_given_position_of_each_row():
    layer = _linear()
    x = torch.randn(2, 4, 3)
    delta = torch.tensor([1.0, 2.0, 3.0])
    plain = layer(x)
    with add_at_positions(layer, delta, [torch.tensor([0, 3])]):
        bumped = layer(x)
    diff = bumped - plain
    assert torch.allclose(diff[0, 0], delta) and torch.allclose(diff[1, 3], delta)
    diff[0, 0] = 0
    diff[1, 3] = 0
    assert torch.all(diff.abs() < 1e-6)
    assert torch.equal(layer(x), plain)


def test_installed_hook_stays_until_removed():
    layer, x = _linear(), torch.randn(2, 3)
    handle = install_forward_hook(layer, lambda _m, _a, out: out + 1)
    first, second = layer(x), layer(x)
    assert torch.equal(first, second)
    handle.remove()
    assert torch.allclose(layer(x), first - 1)
