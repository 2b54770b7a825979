"""The edit memory: hook maths, exact removal, save/load and the identity check."""

from __future__ import annotations

import pytest
import torch

from harness.timerome.config import TimeROMEConfig
from harness.timerome.memory import EditMemory, IdentityMismatch

# These memories hold random keys without a retain covariance: the plain variant (identity
# metric, no gate) unless a test turns the gate on itself.
PLAIN = dict(precondition="none", gate=False)


def _random_memory(backbone, n: int, config: TimeROMEConfig, layer: int = 1) -> EditMemory:
    gen = torch.Generator().manual_seed(0)
    proj = backbone.mlp_out_proj(layer)
    keys = torch.randn((n, proj.in_features), generator=gen)
    deltas = torch.randn((n, proj.out_features), generator=gen)
    memory = EditMemory(config, backbone.identity())
    memory.insert(layer, keys, deltas, [f"f{i}" for i in range(n)])
    return memory


def _ids(backbone):
    return torch.randint(2, 200, (3, 17), generator=torch.Generator().manual_seed(1))


def test_hook_removal_restores_outputs_exactly(tiny_backbone):
    ids = _ids(tiny_backbone)
    with torch.inference_mode():
        before = tiny_backbone.logits(ids)
        memory = _random_memory(tiny_backbone, 4, TimeROMEConfig(alpha=2.0, **PLAIN))
        memory.attach(tiny_backbone)
        during = tiny_backbone.logits(ids)
        memory.detach()
        after = tiny_backbone.logits(ids)
    assert (during - before).abs().max() > 1e-3
    assert torch.equal(before, after)


@pytest.mark.parametrize("n", [3, 300])  # 300 facts: the dense W = A_q B^T path
def test_contribution_is_per_fact_sparsified_sum(tiny_backbone, n):
    config = TimeROMEConfig(alpha=1.5, q=0.25, **PLAIN)
    memory = _random_memory(tiny_backbone, n, config)
    st = memory.factors[1]
    h = torch.randn((2, 5, st.keys.shape[0]), generator=torch.Generator().manual_seed(2))
    got = memory.contribution(1, h)
    coef = h.double() @ st.b  # [2, 5, n]
    keep = max(1, int(-(-0.25 * st.a.shape[0] // 1)))
    expected = torch.zeros(got.shape, dtype=torch.float64)
    for f in range(n):
        contrib = coef[..., f:f + 1] * st.a[:, f]  # c_f(h) a_f
        idx = contrib.abs().topk(keep, dim=-1).indices
        expected += torch.zeros_like(contrib).scatter(-1, idx, contrib.gather(-1, idx))
    assert torch.allclose(got.double(), 1.5 * expected, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("negative_tau", [False, True])  # scaled columns / explicit tau
@pytest.mark.parametrize("gate_rows", [True, False])  # CPU: open rows only; else: masked
def test_gated_hook_adds_only_the_facts_whose_gate_opens(tiny_backbone, gate_rows, negative_tau):
    """output + sum_f [cos(h, k_f) > tau_f] alpha c_f(h) a_f, from first principles in float64,
    for both ways the hook evaluates the gate, with positive thresholds (folded into the
    similarity columns) and with one negative threshold (compared explicitly)."""
    gen = torch.Generator().manual_seed(3)
    proj = tiny_backbone.mlp_out_proj(0)
    d_k, d_v, n = proj.in_features, proj.out_features, 6
    keys = torch.randn((n, d_k), generator=gen)
    # Hidden states near some keys (those gates open) and generic ones (closed).
    h = torch.randn((4, 5, d_k), generator=gen)
    h[0, :3] = keys[:3] + 0.1 * torch.randn((3, d_k), generator=gen)
    h[2, 4] = keys[5] + 0.1 * torch.randn(d_k, generator=gen)
    config = TimeROMEConfig(precondition="none", alpha=2.0, gate=True, gate_quantile=1.0)
    memory = EditMemory(config, tiny_backbone.identity(),
                        gate_reference={0: torch.randn((64, d_k), generator=gen)})
    memory.insert(0, keys, torch.randn((n, d_v), generator=gen), [f"f{i}" for i in range(n)])
    if negative_tau:
        memory.gate_tau[0][4] = -0.5  # fact 4 opens wherever cos(h, k_4) > -0.5
        memory._compile(0)
    memory._compiled[0]["gate_rows"] = gate_rows
    assert (memory._compiled[0]["tau"] is None) != negative_tau
    output = torch.randn((4, 5, d_v), generator=gen)
    got = memory.apply(0, h, output)

    st = memory.factors[0]
    cos = torch.nn.functional.normalize(h.double(), dim=-1) @ torch.nn.functional.normalize(
        st.keys, dim=0)
    gate = cos > torch.tensor(memory.gate_tau[0], dtype=torch.float64)
    expected = output.double() + 2.0 * ((h.double() @ st.b) * gate) @ st.a.T
    assert int(gate[..., :4].sum()) >= 3 and int(gate.sum()) < gate.numel() // 2  # open, closed
    assert torch.allclose(got.double(), expected, rtol=1e-4, atol=1e-4)
    closed = ~gate.any(-1)
    assert torch.equal(got[closed], output[closed])  # closed positions are left untouched


def test_save_load_round_trip_and_wrong_backbone(tiny_backbone, other_backbone, tmp_path):
    ids = _ids(tiny_backbone)
    memory = _random_memory(tiny_backbone, 5, TimeROMEConfig(alpha=3.0, q=0.5, **PLAIN))
    memory.attach(tiny_backbone)
    with torch.inference_mode():
        edited = tiny_backbone.logits(ids)
    path = memory.save(tmp_path / "mem.safetensors")
    memory.detach()
    loaded = EditMemory.load(path, tiny_backbone)
    with torch.inference_mode():
        assert torch.equal(tiny_backbone.logits(ids), edited)
    assert loaded.config == memory.config
    assert loaded.fact_keys == memory.fact_keys
    loaded.detach()
    with pytest.raises(IdentityMismatch) as err:
        EditMemory.load(path, other_backbone)
    message = str(err.value)
    assert tiny_backbone.identity()["weights_fingerprint"] in message
    assert other_backbone.identity()["weights_fingerprint"] in message
    assert not other_backbone.model.model.transformer["blocks"][1].ff_out._forward_hooks


def test_load_rejects_non_memory_file(tiny_backbone, tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "plain.safetensors"
    save_file({"x": torch.zeros(2)}, str(path))
    with pytest.raises(ValueError, match="not a TimeROME edit memory"):
        EditMemory.load(path, tiny_backbone)


def _additive_reference(backbone, memory, layer, ids):
    """Logits of the original layer plus the memory's contribution, added by a plain hook."""
    proj = backbone.mlp_out_proj(layer)
    handle = proj.register_forward_hook(lambda m, i, o: memory.apply(layer, i[0], o))
    try:
        return backbone.logits(ids)
    finally:
        handle.remove()


def test_linear_memory_folds_into_the_layer_and_unfolds_exactly(tiny_backbone):
    """Without the gate the update is folded into the float32 layer's own matmul: same
    logits as adding A_q B^T h separately, and detaching restores the layer's forward."""
    ids = _ids(tiny_backbone)
    proj = tiny_backbone.mlp_out_proj(1)
    gen = torch.Generator().manual_seed(4)
    memory = EditMemory(TimeROMEConfig(alpha=0.05, **PLAIN), tiny_backbone.identity())
    keys = torch.randn((300, proj.in_features), generator=gen)
    deltas = torch.randn((300, proj.out_features), generator=gen)
    with torch.inference_mode():
        before = tiny_backbone.logits(ids)
        memory.insert(1, keys[:3], deltas[:3], ["f0", "f1", "f2"])
        assert memory.hook_path(1) == "low_rank"  # not attached: no layer to fold into
        memory.attach(tiny_backbone)
        assert memory.hook_path(1) == "fused"
        # Inserting while attached re-folds the layer with the updated factors.
        memory.insert(1, keys[3:], deltas[3:], [f"f{i}" for i in range(3, 300)])
        assert memory.hook_path(1) == "fused"
        assert "forward" in proj.__dict__
        fused = tiny_backbone.logits(ids)
        memory.detach()
        reference = _additive_reference(tiny_backbone, memory, 1, ids)
        after = tiny_backbone.logits(ids)
    assert (reference - before).abs().max() > 1e-2
    assert torch.allclose(fused, reference, atol=1e-4, rtol=1e-4)
    assert torch.equal(after, before)
    assert "forward" not in proj.__dict__


def _fused_and_additive(backbone, memory, fold, ids):
    """Logits with the memory's fold installed on layer 1, then with the additive hook."""
    fold.install()
    try:
        with torch.inference_mode():
            fused = backbone.logits(ids)
    finally:
        fold.remove()
    with torch.inference_mode():
        return fused, _additive_reference(backbone, memory, 1, ids)


def test_folded_weight_follows_a_changed_layer_weight(tiny_backbone):
    """Changed in place (version counter) or replaced (new Parameter): never a stale fold."""
    ids = _ids(tiny_backbone)
    proj = tiny_backbone.mlp_out_proj(1)
    original, saved = proj.weight, proj.weight.detach().clone()
    memory = _random_memory(tiny_backbone, 300, TimeROMEConfig(alpha=0.05, **PLAIN))
    memory.attach(tiny_backbone)
    fold = memory._compiled[1]["fused"]
    memory.detach()
    try:
        _fused_and_additive(tiny_backbone, memory, fold, ids)  # builds the folded weight
        with torch.no_grad():
            proj.weight.mul_(1.5)
        fused, reference = _fused_and_additive(tiny_backbone, memory, fold, ids)
        assert torch.allclose(fused, reference, atol=1e-4, rtol=1e-4)
        replacement = torch.nn.Parameter(saved * 0.5)
        with torch.no_grad():  # same version counter: only its identity tells them apart
            while replacement._version < original._version:
                replacement.add_(0.0)
        proj.weight = replacement
        fused, reference = _fused_and_additive(tiny_backbone, memory, fold, ids)
        assert torch.allclose(fused, reference, atol=1e-4, rtol=1e-4)
    finally:
        proj.weight = original
        with torch.no_grad():
            proj.weight.copy_(saved)
    assert "forward" not in proj.__dict__


def test_fused_layer_passes_gradients_to_its_weight(tiny_backbone):
    """With gradients on, the fused layer adds W x separately, so the layer's weight gets the
    same gradient as under the plain additive hook."""
    ids = _ids(tiny_backbone)
    proj = tiny_backbone.mlp_out_proj(1)
    memory = _random_memory(tiny_backbone, 300, TimeROMEConfig(alpha=0.05, **PLAIN))

    def weight_grad():
        loss = tiny_backbone.logits(ids).logsumexp(-1).sum()
        return torch.autograd.grad(loss, proj.weight)[0]

    memory.attach(tiny_backbone)
    try:
        assert memory.hook_path(1) == "fused"
        fused = weight_grad()
    finally:
        memory.detach()
    handle = proj.register_forward_hook(lambda m, i, o: memory.apply(1, i[0], o))
    try:
        reference = weight_grad()
    finally:
        handle.remove()
    assert reference.abs().max() > 0
    assert torch.allclose(fused, reference, rtol=1e-4, atol=1e-5)


def test_reduced_precision_layers_keep_the_separate_product():
    from harness.timerome.memory import FusedLinear

    assert FusedLinear.applies(torch.nn.Linear(192, 64, bias=False), 192, 64)
    assert not FusedLinear.applies(torch.nn.Linear(192, 64, bias=False).to(torch.bfloat16),
                                   192, 64)
    assert not FusedLinear.applies(torch.nn.Linear(64, 192, bias=False), 192, 64)
