"""Native Dream / DiffuLLaMA families: upstream names, config round trips, unsupported values,
real-size parameter counts on the meta device, bidirectionality, padding, meta-build parity."""

from __future__ import annotations

import copy

import pytest
import torch

from harness.backbones.models.diffullama import DIFFULLAMA_FAMILY
from harness.backbones.models.dream import DREAM_FAMILY
from harness.backbones.models.family import TinyDims, TokenIds, UnsupportedConfig

# Dream-org/Dream-v0-Base-7B config.json (Hugging Face model repository; field names as in
# DreamLM's configuration_dream.py, ZHZisZZ/dllm dllm/pipelines/dream/models/configuration_dream.py:28-49).
# Values as published on the hub (not reachable from this sandbox; see docs/backbones/dream_diffullama.md).
DREAM_7B_CONFIG = {
    "architectures": ["DreamModel"], "attention_dropout": 0.0,
    "auto_map": {"AutoConfig": "configuration_dream.DreamConfig",
                 "AutoModel": "modeling_dream.DreamModel"},
    "bos_token_id": 151643, "eos_token_id": 151643, "hidden_act": "silu", "hidden_size": 3584,
    "initializer_range": 0.02, "intermediate_size": 18944, "mask_token_id": 151666,
    "max_position_embeddings": 131072, "max_window_layers": 28, "model_type": "Dream",
    "num_attention_heads": 28, "num_hidden_layers": 28, "num_key_value_heads": 4,
    "pad_token_id": 151643, "rms_norm_eps": 1e-06, "rope_scaling": None, "rope_theta": 1000000.0,
    "sliding_window": 131072, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
    "transformers_version": "4.46.2", "use_cache": True, "use_sliding_window": False,
    "vocab_size": 152064,
}
# diffusionfamily/diffullama config.json (Hugging Face; LLaMA-2-7B's config, model_type llama).
DIFFULLAMA_CONFIG = {
    "architectures": ["LlamaForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
    "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu", "hidden_size": 4096,
    "initializer_range": 0.02, "intermediate_size": 11008, "max_position_embeddings": 4096,
    "mlp_bias": False, "model_type": "llama", "num_attention_heads": 32, "num_hidden_layers": 32,
    "num_key_value_heads": 32, "pretraining_tp": 1, "rms_norm_eps": 1e-05, "rope_scaling": None,
    "rope_theta": 10000.0, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
    "use_cache": True, "vocab_size": 32000,
}

FAMILIES = {"dream": DREAM_FAMILY, "diffullama": DIFFULLAMA_FAMILY}
REAL = {"dream": (DREAM_7B_CONFIG, 7_615_616_512), "diffullama": (DIFFULLAMA_CONFIG, 6_738_415_616)}
DIMS = TinyDims(n_layers=2, d_model=32, n_heads=4, n_kv_heads=2, mlp_hidden=48, max_positions=64)
IDS = TokenIds(vocab_size=67, mask_token_id=66, eos_token_id=1, pad_token_id=1, bos_token_id=2)


def tiny(name):
    torch.manual_seed(0)
    fam = FAMILIES[name]
    cfg = fam.tiny_config(DIMS, IDS)
    return fam, cfg, fam.build(cfg).eval()


def expected_keys(name, n_layers):
    keys = ["model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"]
    for i in range(n_layers):
        p = f"model.layers.{i}."
        keys += [p + "input_layernorm.weight", p + "post_attention_layernorm.weight",
                 p + "self_attn.o_proj.weight"]
        keys += [p + f"self_attn.{x}_proj.weight" for x in "qkv"]
        keys += [p + f"mlp.{x}_proj.weight" for x in ("gate", "up", "down")]
        if name == "dream":  # Qwen2: q/k/v carry a bias
            keys += [p + f"self_attn.{x}_proj.bias" for x in "qkv"]
    return sorted(keys)


@pytest.mark.parametrize("name", FAMILIES)
def test_state_dict_keys_are_upstream_names(name):
    _, cfg, model = tiny(name)
    assert sorted(model.state_dict()) == expected_keys(name, DIMS.n_layers)
    assert model.config.is_causal is False
    flags = [m.is_causal for m in model.modules() if isinstance(getattr(m, "is_causal", None), bool)]
    assert flags and not any(flags)  # every attention module non-causal


@pytest.mark.parametrize("name", FAMILIES)
def test_config_round_trip_and_format(name):
    fam, cfg, _ = tiny(name)
    raw = fam.config_json(cfg)
    assert fam.parse_config(raw, "tiny/config.json") == cfg
    real, _ = REAL[name]
    parsed = fam.parse_config(copy.deepcopy(real), "real/config.json")
    again = fam.config_json(parsed)
    assert fam.parse_config(again, "x") == parsed
    if name == "dream":
        assert raw["architectures"] == ["DreamModel"] and raw["model_type"] == "Dream"
        assert raw["auto_map"] == DREAM_7B_CONFIG["auto_map"]
        assert fam.config_mask_token_id(parsed) == 151666
    else:
        assert raw["architectures"] == ["LlamaForCausalLM"] and raw["model_type"] == "llama"
        assert fam.config_mask_token_id(parsed) is None  # no mask field in DiffuLLaMA's config
    assert fam.config_mask_token_id(cfg) == IDS.mask_token_id


UNSUPPORTED = {
    "dream": [("rope_scaling", {"rope_type": "linear", "factor": 2.0}),
              ("use_sliding_window", True), ("hidden_act", "gelu"), ("attention_dropout", 0.1),
              ("model_type", "qwen2"), ("attention_bias", False)],
    "diffullama": [("rope_scaling", {"rope_type": "linear", "factor": 2.0}),
                   ("attention_bias", True), ("mlp_bias", True), ("pretraining_tp", 2),
                   ("hidden_act", "gelu"), ("model_type", "mistral")],
}


@pytest.mark.parametrize("name,field,value",
                         [(n, f, v) for n, cases in UNSUPPORTED.items() for f, v in cases])
def test_unsupported_values_raise_named_error(name, field, value):
    raw = copy.deepcopy(REAL[name][0])
    raw[field] = value
    with pytest.raises(UnsupportedConfig) as err:
        FAMILIES[name].parse_config(raw, "snap/config.json")
    assert err.value.field == field and err.value.value == value
    assert field in str(err.value) and "snap/config.json" in str(err.value)


@pytest.mark.parametrize("name", FAMILIES)
def test_real_config_meta_parameter_count(name):
    raw, expected = REAL[name]
    fam = FAMILIES[name]
    cfg = fam.parse_config(copy.deepcopy(raw), "real/config.json")
    with torch.device("meta"):
        model = fam.build(cfg)
    n = sum(p.numel() for p in model.parameters())
    assert n == expected
    fam.reset_buffers(model)
    inv = model.model.rotary_emb.inv_freq
    assert inv.device.type == "cpu" and inv.shape == (cfg.hidden_size // cfg.num_attention_heads // 2,)
    assert torch.isclose(inv[1], torch.tensor(cfg.rope_theta ** (-2 / (cfg.hidden_size // cfg.num_attention_heads))))


@pytest.mark.parametrize("name", FAMILIES)
def test_bidirectional_later_token_changes_earlier_logits(name):
    _, _, model = tiny(name)
    x = torch.randint(3, 60, (1, 8))
    y = x.clone()
    y[0, -1] = (y[0, -1] + 7) % 60
    with torch.no_grad():
        a, b = model(x), model(y)
    assert a.shape == (1, 8, IDS.vocab_size)
    assert (a[0, 0] - b[0, 0]).abs().max() > 1e-4


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("side", ["right", "left"])
def test_padded_keys_do_not_change_unpadded_rows(name, side):
    _, _, model = tiny(name)
    x = torch.randint(3, 60, (1, 6))
    pad = torch.full((1, 3), IDS.pad_token_id)
    if side == "right":
        padded, keep = torch.cat([x, pad], 1), slice(0, 6)
        mask = torch.tensor([[1] * 6 + [0] * 3])
    else:
        padded, keep = torch.cat([pad, x], 1), slice(3, 9)
        mask = torch.tensor([[0] * 3 + [1] * 6])
    with torch.no_grad():
        ref = model(x)
        out = model(padded, attention_mask=mask)
        junk = padded.clone()
        junk[mask == 0] = 5
        out2 = model(junk, attention_mask=mask)
    torch.testing.assert_close(out[0, keep], ref[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out2[0, keep], ref[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", FAMILIES)
def test_meta_build_assign_matches_cpu_build(name):
    fam, cfg, model = tiny(name)
    with torch.device("meta"):
        meta = fam.build(cfg)
    fam.reset_buffers(meta)
    meta.load_state_dict(model.state_dict(), assign=True)
    meta.eval()
    assert not any(t.is_meta for t in list(meta.parameters()) + list(meta.buffers()))
    x = torch.randint(0, IDS.vocab_size, (2, 7))
    with torch.no_grad():
        torch.testing.assert_close(meta(x), model(x), atol=0, rtol=0)
