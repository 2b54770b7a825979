"""The real (hub) adapters: remote-code policy before any download, offline local loads."""

from __future__ import annotations

import copy

import pytest
import torch
import transformers
from torch import nn

from harness.backbones import BackboneSpec, load_backbone
from harness.backbones.hf_loading import RemoteCodeNotTrusted
from harness.backbones.moe_modules import CombinedExpertOutput, attach_combined_output_tap
from harness.backbones.registry import adapter_class

REMOTE_CODE_ADAPTERS = {
    "llada-hf": "GSAI-ML/LLaDA-8B-Base",
    "mmada-hf": "Gen-Verse/MMaDA-8B-Base",
    "dream-hf": "Dream-org/Dream-v0-Base-7B",
    "llada-moe-hf": "inclusionAI/LLaDA-MoE-7B-A1B-Base",
}


@pytest.fixture
def no_hub_calls(monkeypatch, no_network):
    """Fail if any transformers loader is even called."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"from_pretrained called: {args} {kwargs}")

    for name in ("AutoModel", "AutoModelForCausalLM", "AutoTokenizer", "AutoConfig"):
        monkeypatch.setattr(getattr(transformers, name), "from_pretrained", refuse)


@pytest.mark.parametrize("adapter,hf_id", sorted(REMOTE_CODE_ADAPTERS.items()))
def test_remote_code_model_without_opt_in_fails_before_any_download(adapter, hf_id, no_hub_calls):
    spec = BackboneSpec(name="real", adapter=adapter, hf_id=hf_id, revision="0" * 40)
    with pytest.raises(RemoteCodeNotTrusted,
                       match=rf"backbone 'real' \({adapter}, {hf_id}\).*set 'trust_remote_code: true'"):
        load_backbone(spec)
    with pytest.raises(RemoteCodeNotTrusted):  # initial() (the fine-tuning entry) too
        adapter_class(adapter).initial(spec, [], 0)


def test_remote_code_without_pinned_revision_is_refused(no_hub_calls):
    spec = BackboneSpec(name="real", adapter="llada-hf", hf_id="GSAI-ML/LLaDA-8B-Base",
                        trust_remote_code=True)
    with pytest.raises(RemoteCodeNotTrusted, match="needs a pinned 'revision'"):
        load_backbone(spec)


def test_hub_adapter_without_source_names_the_fields(no_hub_calls):
    with pytest.raises(ValueError, match="set 'hf_id' \\(hub model\\) or 'path'"):
        load_backbone(BackboneSpec(name="real", adapter="diffullama-hf"))


def test_unknown_option_is_refused_before_loading(no_hub_calls):
    spec = BackboneSpec(name="real", adapter="diffullama-hf", hf_id="diffusionfamily/diffullama",
                        options={"mask_id": 3})
    with pytest.raises(ValueError, match="unknown option.*mask_id"):
        load_backbone(spec)


def save_hf_dir(backbone, directory) -> str:
    backbone.model.save_pretrained(str(directory))
    backbone.tokenizer.save_pretrained(str(directory))
    return str(directory)


def test_diffullama_hub_adapter_loads_a_local_llama_offline_like_its_twin(twins, tmp_path, no_network):
    twin = twins["diffullama-7b-twin"]
    path = save_hf_dir(twin, tmp_path / "llama")
    real = load_backbone(BackboneSpec(name="dl", adapter="diffullama-hf", path=path))
    assert type(real.model).__name__ == "LlamaForCausalLM"
    assert real.shifted_logits and real.mlp_out_proj_path(1) == "model.layers.1.mlp.down_proj"
    ids = torch.tensor([[5, 9, 17, 4, 8, 30]])
    with torch.no_grad():
        assert torch.equal(real.logits(ids), twin.logits(ids))  # same weights, same semantics
        changed = ids.clone()
        changed[0, -1] = 11
        assert (real.logits(changed)[0, 1] - real.logits(ids)[0, 1]).abs().max() > 1e-4


def test_mask_id_source_order_and_range_check(twins, tmp_path, no_network):
    path = save_hf_dir(twins["diffullama-7b-twin"], tmp_path / "llama")
    chosen = load_backbone(BackboneSpec(name="dl", adapter="diffullama-hf", path=path,
                                        options={"mask_token_id": 7}))
    assert (chosen.mask_token_id, chosen.mask_token.source) == (7, "config option 'mask_token_id'")
    with pytest.raises(ValueError, match="mask token id 811 .*outside the vocabulary"):
        load_backbone(BackboneSpec(name="dl", adapter="diffullama-hf", path=path,
                                   options={"mask_token_id": 811}))


def test_llada_moe_hub_adapter_taps_the_combined_expert_output(tmp_path, no_network):
    """A local OLMoE checkpoint stands in for LLaDA-MoE's (OLMoE-like) module tree."""
    cfg = transformers.OlmoeConfig(vocab_size=64, hidden_size=32, intermediate_size=32,
                                   num_hidden_layers=2, num_attention_heads=2,
                                   num_key_value_heads=2, num_experts=4, num_experts_per_tok=2,
                                   eos_token_id=1, pad_token_id=1, bos_token_id=None)
    torch.manual_seed(0)
    transformers.OlmoeForCausalLM(cfg).save_pretrained(str(tmp_path / "moe"))
    from tests.backbones.conftest import build_twin
    from tests.backbones.twin_cases import CASES

    build_twin(CASES[0]).tokenizer.save_pretrained(str(tmp_path / "moe"))
    spec = BackboneSpec(name="moe", adapter="llada-moe-hf", path=str(tmp_path / "moe"),
                        trust_remote_code=True,
                        options={"model_class": "transformers:OlmoeForCausalLM", "mask_token_id": 0})
    backbone = load_backbone(spec)
    assert backbone.mlp_out_proj_path(1) == "model.layers.1.mlp.combine"
    assert isinstance(backbone.mlp_out_proj(1), CombinedExpertOutput)
    ids = torch.tensor([[3, 9, 17, 4, 8]])
    with torch.no_grad():
        base = backbone.logits(ids)
    keys = []

    def push(module, inputs, output):
        keys.append(inputs[0])
        return output + 1.0

    handle = backbone.mlp_out_proj(1).register_forward_hook(push)
    with torch.no_grad():
        pushed = backbone.logits(ids)
    handle.remove()
    with torch.no_grad():
        restored = backbone.logits(ids)
    assert keys[0].shape == (1, 5, 32)  # keyed by the MoE input (d_model)
    assert (pushed - base).abs().max() > 1e-3
    assert torch.equal(restored, base)
    assert "model.layers.1.mlp.combine" not in "".join(backbone.model.state_dict())  # no new weights


class TupleMoE(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(4, 4)

    def forward(self, hidden_states):
        return self.proj(hidden_states), torch.zeros(1)


def test_tap_survives_deepcopy_and_tuple_outputs():
    moe = TupleMoE()
    attach_combined_output_tap(moe)
    assert attach_combined_output_tap(moe) is moe.combine  # idempotent
    clone = copy.deepcopy(moe)
    fired = []
    clone.combine.register_forward_hook(lambda m, i, o: fired.append("clone"))
    moe.combine.register_forward_hook(lambda m, i, o: fired.append("orig"))
    x = torch.randn(2, 4)
    out, aux = clone(x)
    assert fired == ["clone"] and torch.equal(out, moe.proj(x)) and aux.shape == (1,)


def test_placeholder_revision_is_refused_before_download(no_hub_calls):
    spec = BackboneSpec(name="real", adapter="dream-hf", hf_id="Dream-org/Dream-v0-Base-7B",
                        trust_remote_code=True, revision="TODO-pin-commit-sha")
    with pytest.raises(RemoteCodeNotTrusted, match="'TODO-pin-commit-sha' is a placeholder"):
        load_backbone(spec)


def test_sparse_moe_equals_the_dense_gate_weighted_sum_of_its_top_k_experts():
    from harness.backbones.moe_modules import SparseMoEMLP

    torch.manual_seed(0)
    moe = SparseMoEMLP(d_model=8, expert_hidden=6, n_experts=4, top_k=2)
    x = torch.randn(2, 5, 8)
    gates, index = moe.route(x)
    dense = torch.stack([expert(x) for expert in moe.experts], dim=-2)  # [2, 5, 4, 8]
    weights = torch.zeros(2, 5, 4).scatter(-1, index, gates)
    expected = (weights.unsqueeze(-1) * dense).sum(-2)
    assert torch.allclose(moe(x), expected, atol=1e-6)
    assert ((weights > 0).sum(-1) == 2).all()
