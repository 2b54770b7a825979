"""The edit hook point of a mixture-of-experts layer.

A dense MLP has one output projection whose input (the MLP hidden state) is a single key
space. An MoE layer writes
    out(x) = sum_{e in topk(x)} g_e(x) * down_e(act(x W_gate_e) * x W_up_e)  (+ shared expert)
to the residual stream: there is no single module whose input is one key space and whose
output is that write (each expert's down-projection sees only the tokens routed to it, in
its own hidden space, and the routing of a fact's token can change with the masking level
t). We therefore hook the *combined* output, keyed by the MoE layer's input (the
normalised residual stream, one d_model key space shared by every token):
`CombinedExpertOutput` is a parameter-free identity module called as `combine(x, out)`;
its forward input[0] is the key x and its output is the residual contribution out, which
is exactly the `Backbone.mlp_out_proj` contract. The native LLaDA-MoE class
(`harness/backbones/models/llada_moe.py`) calls it at the end of every MLP; it has no
parameters, so the state-dict keys stay the checkpoint's.
"""

from __future__ import annotations

import torch
from torch import nn


class CombinedExpertOutput(nn.Module):
    """Identity tap: `forward(moe_input, combined) -> combined` (the MoE edit hook point)."""

    def forward(self, moe_input: torch.Tensor, combined: torch.Tensor) -> torch.Tensor:
        return combined
