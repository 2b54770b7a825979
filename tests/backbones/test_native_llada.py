"""The native LLaDA / MMaDA model: upstream names, config round trip, refusals, attention semantics."""

from __future__ import annotations

import copy

import pytest
import torch

from harness.backbones.models.family import TinyDims, TokenIds, UnsupportedConfig
from harness.backbones.models.llada import (
    LLADA_FAMILY, MMADA_FAMILY, LLaDAConfig, MissingConfigField, build, config_json, init_weights,
    mmada_config_json, n_parameters, parse_config, parse_mmada_config, tiny_config)

# GSAI-ML/LLaDA-8B-Instruct config.json as published on the hub, read from the copy in
# github.com/yinj66/support_basis @66e6761a, "LLaDA-8B-Instruct-B&S-light/config.json"
# (LLaDA-8B-Base's config.json carries the same architecture fields; its own copy was not
# found in the searchable index). The same copy's model.safetensors.index.json gives
# metadata.total_size = 16031162368 bytes of bf16 = 8,015,581,184 parameters.
LLADA_8B_CONFIG = {
    "activation_type": "silu", "alibi": False, "alibi_bias_max": 8.0,
    "architectures": ["LLaDAModelLM"], "attention_dropout": 0.0, "attention_layer_norm": False,
    "attention_layer_norm_with_affine": True,
    "auto_map": {"AutoConfig": "configuration_llada.LLaDAConfig",
                 "AutoModelForCausalLM": "modeling_llada.LLaDAModelLM",
                 "AutoModel": "modeling_llada.LLaDAModelLM"},
    "bias_for_layer_norm": False, "block_group_size": 1, "block_type": "llama", "d_model": 4096,
    "embedding_dropout": 0.0, "embedding_size": 126464, "eos_token_id": 126081,
    "flash_attention": False, "include_bias": False, "include_qkv_bias": False,
    "init_cutoff_factor": None, "init_device": "meta", "init_fn": "mitchell", "init_std": 0.02,
    "input_emb_norm": False, "layer_norm_type": "rms", "layer_norm_with_affine": True,
    "mask_token_id": 126336, "max_sequence_length": 4096, "mlp_hidden_size": 12288, "mlp_ratio": 4,
    "model_type": "llada", "multi_query_attention": None, "n_heads": 32, "n_kv_heads": 32,
    "n_layers": 32, "pad_token_id": 126081, "precision": "amp_bf16", "residual_dropout": 0.0,
    "rms_norm_eps": 1e-05, "rope": True, "rope_full_precision": True, "rope_theta": 500000.0,
    "scale_logits": False, "transformers_version": "4.46.3", "use_cache": False,
    "vocab_size": 126464, "weight_tying": False,
}
LLADA_8B_PARAMS = 16031162368 // 2

IDS = TokenIds(vocab_size=96, mask_token_id=95, eos_token_id=1, pad_token_id=1)


def tiny(n_heads=4, n_kv_heads=4, **changes) -> LLaDAConfig:
    dims = TinyDims(n_layers=2, d_model=32, n_heads=n_heads, n_kv_heads=n_kv_heads, mlp_hidden=48,
                    max_positions=64)
    cfg = tiny_config(dims, IDS)
    return LLaDAConfig(**{**cfg.__dict__, **changes}) if changes else cfg


def upstream_names(n_layers, *, tied=False, bias=False, qkv_bias=False, norm_bias=False):
    """Parameter names as modeling_llada.py's LLaDAModelLM / LLaDALlamaBlock create them."""
    t = "model.transformer"
    names = {f"{t}.wte.weight", f"{t}.ln_f.weight"}
    if norm_bias:
        names.add(f"{t}.ln_f.bias")
    if not tied:
        names.add(f"{t}.ff_out.weight")
        if bias:
            names.add(f"{t}.ff_out.bias")
    for i in range(n_layers):
        b = f"{t}.blocks.{i}"
        for norm in ("attn_norm", "ff_norm"):
            names.add(f"{b}.{norm}.weight")
            if norm_bias:
                names.add(f"{b}.{norm}.bias")
        for lin in ("q_proj", "k_proj", "v_proj", "attn_out", "ff_proj", "up_proj", "ff_out"):
            names.add(f"{b}.{lin}.weight")
            if bias or (qkv_bias and lin in ("q_proj", "k_proj", "v_proj")):
                names.add(f"{b}.{lin}.bias")
    return names


# ---------------------------------------------------------------- parameter names and shapes

@pytest.mark.parametrize("changes,expect", [
    ({}, {}),
    ({"weight_tying": True}, {"tied": True}),
    ({"include_qkv_bias": True}, {"qkv_bias": True}),
    ({"include_bias": True}, {"bias": True, "norm_bias": True}),
    ({"include_bias": True, "bias_for_layer_norm": False}, {"bias": True}),
    ({"bias_for_layer_norm": True}, {"norm_bias": True}),
])
def test_state_dict_keys_are_upstream_names(changes, expect):
    cfg = tiny(**changes)
    with torch.device("meta"):
        model = build(cfg)
    keys = set(model.state_dict())
    assert keys == upstream_names(cfg.n_layers, **expect)
    assert sum(p.numel() for p in model.parameters()) == n_parameters(cfg)
    assert list(model.buffers()) == []


def test_gqa_shapes_and_padded_embedding():
    cfg = tiny(n_heads=4, n_kv_heads=2, embedding_size=128)
    with torch.device("meta"):
        model = build(cfg)
    sd = model.state_dict()
    assert set(sd) == upstream_names(cfg.n_layers)
    head_dim = 32 // 4
    assert sd["model.transformer.blocks.0.q_proj.weight"].shape == (32, 32)
    assert sd["model.transformer.blocks.0.k_proj.weight"].shape == (2 * head_dim, 32)
    assert sd["model.transformer.blocks.0.v_proj.weight"].shape == (2 * head_dim, 32)
    assert sd["model.transformer.blocks.0.ff_out.weight"].shape == (48, 32)[::-1]
    assert sd["model.transformer.wte.weight"].shape == (128, 32)
    assert sd["model.transformer.ff_out.weight"].shape == (128, 32)
    real = build(cfg)
    logits = real(torch.randint(0, 96, (2, 5)))
    assert logits.shape == (2, 5, 128)


def test_block_mlp_output_is_plain_linear_fed_by_the_gated_hidden_state():
    cfg = tiny()
    model = build(cfg)
    block = model.model.transformer.blocks[0]
    assert type(block.ff_out) is torch.nn.Linear and block.ff_out.in_features == cfg.mlp_hidden_size
    seen = {}
    block.ff_out.register_forward_hook(lambda m, i, o: seen.update({"in": i[0]}))
    x = torch.randint(0, 96, (1, 6))
    model(x)
    h = model.model.transformer.blocks[0]
    # recompute the block's MLP input by hand
    emb = model.model.transformer.wte(x)
    a = emb + h.attention(h.attn_norm(emb), *_rope(cfg, 6), None)
    hn = h.ff_norm(a)
    torch.testing.assert_close(seen["in"], torch.nn.functional.silu(h.ff_proj(hn)) * h.up_proj(hn))


def _rope(cfg, length):
    from harness.backbones.models.llada import rotary_tables
    return rotary_tables(length, cfg.head_dim, cfg.rope_theta, "cpu")


# ---------------------------------------------------------------- real 8B config

def test_real_8b_config_parses_and_counts_parameters_on_meta():
    cfg = parse_config(copy.deepcopy(LLADA_8B_CONFIG), "LLaDA-8B/config.json")
    assert (cfg.d_model, cfg.n_heads, cfg.n_kv_heads, cfg.n_layers) == (4096, 32, 32, 32)
    assert cfg.mlp_hidden_size == 12288 and cfg.n_embeddings == 126464
    assert LLADA_FAMILY.config_mask_token_id(cfg) == 126336
    with torch.device("meta"):
        model = LLADA_FAMILY.build(cfg)
    LLADA_FAMILY.reset_buffers(model)
    assert sum(p.numel() for p in model.parameters()) == LLADA_8B_PARAMS  # 8,015,581,184
    assert len(model.state_dict()) == 2 + 1 + 9 * 32


def test_mlp_hidden_size_null_derives_from_mlp_ratio():
    raw = dict(LLADA_8B_CONFIG, mlp_hidden_size=None, mlp_ratio=3)
    assert parse_config(raw, "c.json").mlp_hidden_size == 3 * 4096


def test_n_kv_heads_null_and_multi_query_attention():
    assert parse_config(dict(LLADA_8B_CONFIG, n_kv_heads=None), "c").n_kv_heads == 32
    assert parse_config(dict(LLADA_8B_CONFIG, n_kv_heads=None, multi_query_attention=True),
                        "c").n_kv_heads == 1
    with pytest.raises(ValueError, match="multi_query_attention"):
        parse_config(dict(LLADA_8B_CONFIG, n_kv_heads=8, multi_query_attention=True), "c")


# ---------------------------------------------------------------- config round trip

@pytest.mark.parametrize("changes", [
    {}, {"weight_tying": True}, {"include_bias": True, "bias_for_layer_norm": False},
    {"n_kv_heads": 2, "embedding_size": 128, "rope_full_precision": False},
    {"mask_token_id": None, "eos_token_id": None, "pad_token_id": None, "layer_norm_with_affine": False},
])
def test_config_json_round_trips(changes):
    cfg = tiny(**changes)
    raw = config_json(cfg)
    assert raw["architectures"] == ["LLaDAModelLM"] and raw["model_type"] == "llada"
    assert parse_config(raw, "twin/config.json") == cfg


def test_real_config_round_trips_through_config_json():
    cfg = parse_config(copy.deepcopy(LLADA_8B_CONFIG), "c")
    out = config_json(cfg)
    assert parse_config(out, "c") == cfg
    for key, value in LLADA_8B_CONFIG.items():  # the writer reproduces the published file
        if key != "transformers_version":
            assert out[key] == value, key


def test_mmada_format_keeps_extra_fields_and_uses_llada_forward():
    dims = TinyDims(n_layers=2, d_model=32, n_heads=4, n_kv_heads=4, mlp_hidden=48)
    cfg = MMADA_FAMILY.tiny_config(dims, IDS)
    raw = mmada_config_json(cfg)
    assert raw["architectures"] == ["MMadaModelLM"] and raw["model_type"] == "mmada"
    assert raw["codebook_size"] == 8192 and raw["num_vq_tokens"] == 256
    back = parse_mmada_config(raw, "mmada/config.json")
    assert back == cfg and dict(back.extra)["llm_vocab_size"] == 96
    with torch.device("meta"):
        assert set(MMADA_FAMILY.build(back).state_dict()) == upstream_names(2)
    # the two on-disk formats are not interchangeable
    with pytest.raises(UnsupportedConfig, match="model_type"):
        parse_config(raw, "mmada/config.json")
    with pytest.raises(UnsupportedConfig, match="model_type"):
        parse_mmada_config(config_json(cfg), "llada/config.json")


# ---------------------------------------------------------------- refusals

@pytest.mark.parametrize("field,value", [
    ("block_type", "sequential"), ("block_type", "parallel"), ("alibi", True),
    ("layer_norm_type", "default"), ("layer_norm_type", "gemma_rms"), ("activation_type", "swiglu"),
    ("activation_type", "gelu"), ("rope", False), ("clip_qkv", 8.0), ("attention_layer_norm", True),
    ("input_emb_norm", True), ("scale_logits", True), ("block_group_size", 2),
    ("rope_scaling", {"type": "linear", "factor": 2.0}), ("model_type", "llama"),
])
def test_unsupported_values_raise_naming_field_and_value(field, value):
    raw = dict(LLADA_8B_CONFIG, **{field: value})
    with pytest.raises(UnsupportedConfig) as err:
        parse_config(raw, "ckpt/config.json")
    msg = str(err.value)
    assert err.value.field == field and err.value.value == value
    assert f"'{field}'" in msg and repr(value) in msg and "ckpt/config.json" in msg


@pytest.mark.parametrize("field", ["d_model", "n_heads", "n_layers", "vocab_size", "embedding_size",
                                   "block_type", "rope", "rope_theta", "weight_tying"])
def test_missing_required_field_names_file_and_field(field):
    raw = {k: v for k, v in LLADA_8B_CONFIG.items() if k != field}
    with pytest.raises(MissingConfigField) as err:
        parse_config(raw, "ckpt/config.json")
    assert "ckpt/config.json" in str(err.value) and f"'{field}'" in str(err.value)


def test_missing_mlp_size_and_ratio():
    raw = {k: v for k, v in LLADA_8B_CONFIG.items() if k not in ("mlp_hidden_size", "mlp_ratio")}
    with pytest.raises(MissingConfigField, match="mlp_hidden_size"):
        parse_config(raw, "c")


def test_absent_optional_fields_take_upstream_defaults():
    optional = ["rms_norm_eps", "rope_full_precision", "include_bias", "include_qkv_bias", "alibi",
                "bias_for_layer_norm", "layer_norm_with_affine", "attention_layer_norm",
                "input_emb_norm", "scale_logits", "block_group_size", "multi_query_attention"]
    raw = {k: v for k, v in LLADA_8B_CONFIG.items() if k not in optional}
    cfg = parse_config(raw, "c")
    assert cfg.rms_norm_eps == 1e-5 and cfg.rope_full_precision and not cfg.include_bias
    assert cfg.bias_for_layer_norm is None and not cfg.norm_has_bias


def test_inconsistent_shapes_raise():
    with pytest.raises(ValueError, match="divisible"):
        parse_config(dict(LLADA_8B_CONFIG, n_heads=30), "c")
    with pytest.raises(ValueError, match="multiple of n_kv_heads"):
        parse_config(dict(LLADA_8B_CONFIG, n_kv_heads=5), "c")
    with pytest.raises(ValueError, match="embedding_size"):
        parse_config(dict(LLADA_8B_CONFIG, embedding_size=1000), "c")


# ---------------------------------------------------------------- attention semantics

def _model(cfg=None, seed=0):
    torch.manual_seed(seed)
    model = build(cfg or tiny())
    init_weights(model, seed)
    return model.eval()


def test_attention_is_bidirectional():
    model = _model()
    ids = torch.randint(0, 95, (1, 10))
    changed = ids.clone()
    changed[0, -1] = (ids[0, -1] + 1) % 95
    with torch.no_grad():
        a, b = model(ids), model(changed)
    assert (a[0, 0] - b[0, 0]).abs().max() > 1e-6  # the first position sees the last token


def test_padding_keys_do_not_change_unpadded_rows():
    model = _model()
    ids = torch.randint(0, 95, (1, 7))
    padded = torch.cat([ids, torch.full((1, 3), IDS.pad_token_id)], dim=1)
    other = torch.cat([ids, torch.randint(0, 95, (1, 3))], dim=1)
    mask = torch.tensor([[1] * 7 + [0] * 3])
    with torch.no_grad():
        alone = model(ids)
        masked = model(padded, attention_mask=mask)
        masked_other = model(other, attention_mask=mask)
        unmasked = model(padded)
    torch.testing.assert_close(masked[:, :7], alone, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(masked_other[:, :7], alone, atol=1e-5, rtol=1e-5)
    assert (unmasked[:, :7] - alone).abs().max() > 1e-6  # without the mask the pads are seen
    assert torch.isfinite(masked).all()
    # an all-ones mask is the same as no mask
    torch.testing.assert_close(model(ids, attention_mask=torch.ones(1, 7)), alone)


def test_inputs_embeds_equal_input_ids():
    model = _model()
    ids = torch.randint(0, 95, (2, 6))
    with torch.no_grad():
        emb = model.model.transformer.wte(ids)
        torch.testing.assert_close(model(None, inputs_embeds=emb), model(ids))


def test_gqa_equals_mha_with_repeated_kv_heads():
    gqa_cfg = tiny(n_heads=4, n_kv_heads=2)
    mha_cfg = tiny(n_heads=4, n_kv_heads=4)
    gqa, mha = _model(gqa_cfg, seed=1), _model(mha_cfg, seed=2)
    head_dim, group = gqa_cfg.head_dim, 2
    sd = gqa.state_dict()
    for key, value in list(sd.items()):
        if key.endswith(("k_proj.weight", "v_proj.weight")):
            # kv head j serves query heads j*group .. j*group+group-1 (repeat_interleave)
            heads = value.view(gqa_cfg.n_kv_heads, head_dim, -1)
            sd[key] = heads.repeat_interleave(group, dim=0).reshape(-1, value.shape[-1])
    mha.load_state_dict(sd)
    ids = torch.randint(0, 95, (2, 9))
    mask = torch.tensor([[1] * 9, [1] * 6 + [0] * 3])
    with torch.no_grad():
        torch.testing.assert_close(gqa(ids, attention_mask=mask), mha(ids, attention_mask=mask),
                                   atol=1e-5, rtol=1e-5)


def test_weight_tying_uses_the_embedding_as_head():
    model = _model(tiny(weight_tying=True))
    assert "ff_out" not in model.model.transformer
    final = {}
    model.model.transformer.ln_f.register_forward_hook(lambda m, i, o: final.update({"h": o}))
    ids = torch.randint(0, 95, (1, 4))
    with torch.no_grad():
        logits = model(ids)
    assert logits.shape == (1, 4, 96)
    torch.testing.assert_close(logits, final["h"] @ model.model.transformer.wte.weight.T)


def test_rope_full_precision_false_runs_in_input_dtype():
    cfg_full, cfg_low = tiny(), tiny(rope_full_precision=False)
    full, low = _model(cfg_full), _model(cfg_low)
    low.load_state_dict(full.state_dict())
    ids = torch.randint(0, 95, (1, 8))
    with torch.no_grad():
        a = full.to(torch.bfloat16)(ids).float()
        b = low.to(torch.bfloat16)(ids).float()
        c = full.float()(ids)
    assert (a - b).abs().max() > 0  # precision of the rotation is observable in bf16
    assert (a - c).abs().max() < 0.5


def test_twin_init_is_seeded_and_meta_build_allocates_nothing():
    a, b = _model(seed=3), _model(seed=3)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)
    w = a.model.transformer.blocks[0].q_proj.weight
    assert 0.015 < w.std().item() < 0.025
    with torch.device("meta"):
        m = build(tiny())
    assert all(p.device.type == "meta" for p in m.parameters())
    assert m.config == tiny()


def test_rotary_embedding_rotates_each_half_pair_by_its_positions_angle():
    """RoPE (rotate-half form): the pair (x_i, x_{i+d/2}) turns by angle pos x inv_freq_i, so
    norms are kept and q.k depends on the positions' difference only."""
    from harness.backbones.models.llada import apply_rotary, rotary_tables
    head_dim, length = 8, 12
    sin, cos = rotary_tables(length, head_dim, 10000.0, "cpu")
    gen = torch.Generator().manual_seed(0)
    q, k = torch.randn((2, head_dim), generator=gen)
    qs = apply_rotary(q.expand(length, head_dim), sin, cos)
    ks = apply_rotary(k.expand(length, head_dim), sin, cos)
    half = head_dim // 2
    inv_freq = 1.0 / (10000.0 ** (torch.arange(0, head_dim, 2).float() / head_dim))
    angle = 5 * inv_freq  # position 5
    first = q[:half] * angle.cos() - q[half:] * angle.sin()
    second = q[half:] * angle.cos() + q[:half] * angle.sin()
    assert torch.allclose(qs[5], torch.cat([first, second]), atol=1e-6)
    assert torch.allclose(qs.norm(dim=-1), q.norm().expand(length), atol=1e-5)
    scores = qs @ ks.T  # [m, n]
    assert torch.allclose(scores.diagonal(2), scores[0, 2].expand(length - 2), atol=1e-5)
