"""Mixture-of-experts MLP pieces: the LLaDA-MoE twin's sparse MLP and the edit hook point.

Where an edit hooks an MoE layer. A dense MLP has one output projection whose input (the
MLP hidden state) is a single key space. An MoE layer writes
    out(x) = sum_{e in topk(x)} g_e(x) * down_e(act(x W_gate_e) * x W_up_e)
to the residual stream: there is no single module whose input is one key space and whose
output is that write (each expert's down-projection sees only the tokens routed to it, in
its own hidden space, and the routing of a fact's token can change with the masking level
t). We therefore hook the *combined* output, keyed by the MoE layer's input (the
normalised residual stream, one d_model key space shared by every token):
`CombinedExpertOutput` is a parameter-free identity module called as `combine(x, out)`;
its forward input[0] is the key x and its output is the residual contribution out, which
is exactly the `Backbone.mlp_out_proj` contract. The twin's `SparseMoEMLP` calls it
natively; for a hub MoE model `attach_combined_output_tap` adds it (no weights change,
state-dict keys unchanged) through a forward hook on the MoE module.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

TAP_NAME = "combine"


class CombinedExpertOutput(nn.Module):
    """Identity tap: `forward(moe_input, combined) -> combined` (the MoE edit hook point)."""

    def forward(self, moe_input: torch.Tensor, combined: torch.Tensor) -> torch.Tensor:
        return combined


class ExpertMLP(nn.Module):
    """One SwiGLU expert: down_proj(silu(gate_proj(x)) * up_proj(x))."""

    def __init__(self, d_model: int, hidden: int):
        super().__init__()
        self.gate_proj = nn.Linear(d_model, hidden, bias=False)
        self.up_proj = nn.Linear(d_model, hidden, bias=False)
        self.down_proj = nn.Linear(hidden, d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class SparseMoEMLP(nn.Module):
    """Top-k routed SwiGLU experts (OLMoE-style: softmax router, top-k gates).

    Each expert runs only on the tokens routed to it (gather, expert, weighted
    index_add), so compute per token is `top_k` experts. `normalize_top_k` renormalises
    the selected gates to sum to 1.
    """

    def __init__(self, d_model: int, expert_hidden: int, n_experts: int, top_k: int,
                 normalize_top_k: bool = False):
        super().__init__()
        if not 1 <= top_k <= n_experts:
            raise ValueError(f"experts_per_token={top_k} must be in [1, n_experts={n_experts}]")
        self.top_k = top_k
        self.normalize_top_k = normalize_top_k
        self.gate = nn.Linear(d_model, n_experts, bias=False)
        self.experts = nn.ModuleList([ExpertMLP(d_model, expert_hidden) for _ in range(n_experts)])
        self.combine = CombinedExpertOutput()

    def route(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(gates [..., k], expert indices [..., k]) of each token."""
        probs = F.softmax(self.gate(x).float(), dim=-1)
        top, index = probs.topk(self.top_k, dim=-1)
        if self.normalize_top_k:
            top = top / top.sum(-1, keepdim=True)
        return top.to(x.dtype), index

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, x.shape[-1])
        gates, index = self.route(flat)
        combined = torch.zeros_like(flat)
        for e, expert in enumerate(self.experts):
            token, slot = (index == e).nonzero(as_tuple=True)
            if token.numel():
                combined = combined.index_add(0, token,
                                              gates[token, slot, None] * expert(flat[token]))
        return self.combine(x, combined.view_as(x))


def _route_through_tap(module: nn.Module, args: tuple, kwargs: dict, output: Any) -> Any:
    """Forward hook on a hub MoE module: pass its combined output through `module.combine`.

    A module-level function (no closure) so that `copy.deepcopy` of the model keeps working.
    """
    key = args[0] if args else kwargs.get("hidden_states")
    if key is None:
        raise RuntimeError(f"{type(module).__name__}: cannot find the MoE input to key the edit")
    tap = getattr(module, TAP_NAME)
    if isinstance(output, tuple):
        return (tap(key, output[0]), *output[1:])
    return tap(key, output)


def attach_combined_output_tap(moe_module: nn.Module) -> CombinedExpertOutput:
    """Give a hub MoE module a `combine` tap (idempotent); returns the tap."""
    existing = getattr(moe_module, TAP_NAME, None)
    if isinstance(existing, CombinedExpertOutput):
        return existing
    if existing is not None:
        raise TypeError(f"{type(moe_module).__name__} already has an attribute '{TAP_NAME}'")
    tap = CombinedExpertOutput()
    moe_module.add_module(TAP_NAME, tap)
    moe_module.register_forward_hook(_route_through_tap, with_kwargs=True)
    return tap
