"""The native LLaDA-MoE model: upstream names, config handling, routing, tap, attention.

Facts and their sources: docs/backbones/llada_moe.md.
"""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from harness.backbones.models.family import TinyDims, TokenIds, UnsupportedConfig
from harness.backbones.models.llada_moe import (
    LLADA_MOE_FAMILY,
    LLADA_MOE_MASK_TOKEN_ID,
    LLaDAMoEConfig,
    build,
    config_json,
    config_mask_token_id,
    init_weights,
    parse_config,
    reset_buffers,
    tiny_config,
)
from harness.backbones.moe_modules import CombinedExpertOutput

# inclusionAI/LLaDA-MoE-7B-A1B-Base config.json, reconstructed (the file itself is not in any
# source reachable from here). Verified values and where: hidden 2048, 16 layers, 16 heads,
# 16 kv heads, 64 experts, top-8, expert width 1024, dense width 8192, moe_layer_freq all 1,
# rope_theta 50000, max_position_embeddings 8192, qk_layernorm true, silu (a LLaDA-MoE port's
# README quoting the config, index id 67583251364); model_type "llada" (ZHZisZZ/dllm
# examples/llada/README.md:17-20); eos 156892 / mask 156895 (inclusionAI/dInfer
# benchmarks/benchmark.py:79-80); no shared expert, untied head and vocab 157184 are implied by
# the checkpoint size (3 bf16 shards, 14.7 GB = 2 bytes x 7.357e9, HF file listing) and the
# shared Ling tokenizer. rms_norm_eps, pad_token_id, partial_rotary_factor=1.0 and
# norm_topk_prob=false are NOT verified verbatim (see the doc).
REAL_CONFIG = {
    "architectures": ["LLaDAMoEModelLM"],
    "model_type": "llada",
    "vocab_size": 157184,
    "hidden_size": 2048,
    "dense_intermediate_size": 8192,
    "expert_intermediate_size": 1024,
    "shared_expert_intermediate_size": None,
    "num_hidden_layers": 16,
    "num_attention_heads": 16,
    "num_key_value_heads": 16,
    "hidden_act": "silu",
    "max_position_embeddings": 8192,
    "initializer_range": 0.02,
    "rms_norm_eps": 1e-05,
    "use_cache": False,
    "pad_token_id": 156892,
    "eos_token_id": 156892,
    "tie_word_embeddings": False,
    "rope_theta": 50000,
    "partial_rotary_factor": 1.0,
    "rope_scaling": None,
    "attention_bias": False,
    "attention_dropout": 0.0,
    "clip_qkv": None,
    "num_experts_per_tok": 8,
    "num_experts": 64,
    "output_router_logits": False,
    "router_aux_loss_coef": 0.01,
    "norm_topk_prob": False,
    "qk_layernorm": True,
    "moe_layer_freq": [1] * 16,
    "moe_router_enable_expert_bias": False,
    "moe_router_score_function": "softmax",
    "routed_scaling_factor": 1,
    "torch_dtype": "bfloat16",
}

DIMS = TinyDims(n_layers=2, d_model=32, n_heads=4, n_kv_heads=2, mlp_hidden=16,
                n_experts=6, experts_per_token=2, max_positions=64)
IDS = TokenIds(vocab_size=50, mask_token_id=49, eos_token_id=48, pad_token_id=47)


def tiny(**overrides) -> LLaDAMoEConfig:
    return replace(tiny_config(DIMS, IDS), **overrides)


def tiny_model(seed: int = 0, **overrides):
    return init_weights(build(tiny(**overrides)), seed).eval()


def expected_keys(cfg: LLaDAMoEConfig) -> set[str]:
    """Upstream parameter names, written out from the pattern in the doc."""
    keys = {"model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"}
    for i in range(cfg.num_hidden_layers):
        p = f"model.layers.{i}."
        keys |= {p + "input_layernorm.weight", p + "post_attention_layernorm.weight"}
        for proj in ("q_proj", "k_proj", "v_proj", "o_proj"):
            keys.add(p + f"self_attn.{proj}.weight")
            if cfg.attention_bias:
                keys.add(p + f"self_attn.{proj}.bias")
        if cfg.qk_layernorm:
            keys |= {p + "self_attn.q_norm.weight", p + "self_attn.k_norm.weight"}
        if cfg.moe_layer_freq[i]:
            keys.add(p + "mlp.gate.weight")
            for j in range(cfg.num_experts):
                keys |= {p + f"mlp.experts.{j}.{w}_proj.weight" for w in ("gate", "up", "down")}
            if cfg.shared_expert_intermediate_size:
                keys |= {p + f"shared_expert.{w}_proj.weight" for w in ("gate", "up", "down")}
        else:
            keys |= {p + f"mlp.{w}_proj.weight" for w in ("gate", "up", "down")}
    return keys


# ------------------------------------------------------------------------------ names

@pytest.mark.parametrize("overrides", [
    {},
    {"qk_layernorm": False},
    {"shared_expert_intermediate_size": 24},
    {"attention_bias": True},
    {"moe_layer_freq": (0, 1), "shared_expert_intermediate_size": 8},
])
def test_state_dict_keys_are_upstream_names(overrides):
    cfg = tiny(**overrides)
    with torch.device("meta"):
        model = build(cfg)
    assert set(model.state_dict()) == expected_keys(cfg)
    assert not list(model.buffers())


def test_shapes_of_real_layout_on_meta():
    cfg = parse_config(REAL_CONFIG, "config.json")
    with torch.device("meta"):
        model = build(cfg)
    reset_buffers(model)
    sd = model.state_dict()
    assert set(sd) == expected_keys(cfg)
    assert sd["model.layers.0.self_attn.q_norm.weight"].shape == (128,)  # per head: head_dim
    assert sd["model.layers.0.mlp.gate.weight"].shape == (64, 2048)
    assert sd["model.layers.3.mlp.experts.63.down_proj.weight"].shape == (2048, 1024)
    assert sd["lm_head.weight"].shape == (157184, 2048)
    assert model.config is cfg


def test_real_config_parameter_count_total_and_active():
    cfg = parse_config(REAL_CONFIG, "config.json")
    with torch.device("meta"):
        model = build(cfg)
    total = sum(p.numel() for p in model.parameters())
    assert total == 7_356_880_896
    # the released shards total 14.7 GB in bf16 (2 bytes a parameter)
    assert 14.6e9 < 2 * total < 14.8e9
    expert = sum(p.numel() for p in model.model.layers[0].mlp.experts[0].parameters())
    inactive = cfg.num_hidden_layers * (cfg.num_experts - cfg.num_experts_per_tok) * expert
    embedding = model.model.embed_tokens.weight.numel()
    active = total - inactive - embedding  # model card: "activating 1.4B parameters"
    assert 1.35e9 < active < 1.45e9


# ------------------------------------------------------------------------------ config

@pytest.mark.parametrize("cfg", [
    tiny(),
    tiny(moe_layer_freq=(0, 1), shared_expert_intermediate_size=8, attention_bias=True,
         norm_topk_prob=True, qk_layernorm=False, partial_rotary_factor=0.5,
         eos_token_id=(48, 46), bos_token_id=45, head_dim=8),
    parse_config(REAL_CONFIG, "config.json"),
])
def test_config_round_trip(cfg):
    raw = config_json(cfg)
    assert raw["model_type"] == "llada" and raw["architectures"] == ["LLaDAMoEModelLM"]
    again = parse_config(raw, "written/config.json")
    assert again == cfg
    assert config_json(again) == raw


def test_real_config_parses_with_upstream_values():
    cfg = parse_config(REAL_CONFIG, "config.json")
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.num_experts, cfg.num_experts_per_tok) \
        == (2048, 16, 64, 8)
    assert cfg.qk_layernorm and not cfg.norm_topk_prob
    assert cfg.shared_expert_intermediate_size is None
    assert config_mask_token_id(cfg) is None  # the released config declares no mask id
    assert LLADA_MOE_MASK_TOKEN_ID == 156895
    assert config_mask_token_id(tiny()) == 49


@pytest.mark.parametrize("field,value", [
    ("clip_qkv", 8.0),
    ("rope_scaling", {"rope_type": "linear", "factor": 2.0}),
    ("moe_router_score_function", "sigmoid"),
    ("moe_router_enable_expert_bias", True),
    ("moe_layer_freq", 1),
    ("moe_layer_freq", [1] * 15),
    ("moe_layer_freq", [2] * 16),
    ("partial_rotary_factor", -1),
    ("partial_rotary_factor", 1.5),
    ("hidden_act", "gelu"),
    ("tie_word_embeddings", True),
    ("shared_expert_intermediate_size", -1),
    ("head_dim", 64),
    ("num_experts_per_tok", 65),
    ("num_key_value_heads", 3),
    ("model_type", "olmoe"),
    ("architectures", ["OlmoeForCausalLM"]),
    ("rope_parameters", {"rope_type": "yarn", "factor": 4.0}),
])
def test_unsupported_values_raise_naming_field_and_value(field, value):
    raw = dict(REAL_CONFIG, **{field: value})
    with pytest.raises(UnsupportedConfig) as err:
        parse_config(raw, "/snap/config.json")
    assert err.value.field == field and err.value.value == value
    assert "/snap/config.json" in str(err.value) and field in str(err.value)


def test_dense_layers_need_a_dense_width():
    raw = dict(REAL_CONFIG, moe_layer_freq=[0] + [1] * 15, dense_intermediate_size=None)
    with pytest.raises(UnsupportedConfig, match="dense_intermediate_size"):
        parse_config(raw, "config.json")
    cfg = parse_config(dict(raw, dense_intermediate_size=8192), "config.json")
    assert not cfg.is_moe_layer(0) and cfg.is_moe_layer(1)


@pytest.mark.parametrize("field", ["hidden_size", "num_experts", "expert_intermediate_size",
                                   "moe_layer_freq", "rope_theta", "partial_rotary_factor"])
def test_missing_required_field_names_file_and_field(field):
    raw = {k: v for k, v in REAL_CONFIG.items() if k != field}
    with pytest.raises(KeyError) as err:
        parse_config(raw, "/snap/config.json")
    assert "/snap/config.json" in str(err.value) and repr(field) in str(err.value)


def test_family_and_tiny_config():
    assert LLADA_MOE_FAMILY.name == "llada-moe"
    assert LLADA_MOE_FAMILY.parse_config is parse_config and LLADA_MOE_FAMILY.build is build
    cfg = tiny_config(DIMS, IDS)
    assert (cfg.num_experts, cfg.num_experts_per_tok, cfg.expert_intermediate_size) == (6, 2, 16)
    assert cfg.moe_layer_freq == (1, 1) and cfg.qk_layernorm
    with pytest.raises(ValueError):
        tiny_config(replace(DIMS, n_experts=0, experts_per_token=0), IDS)
    a, b = tiny_model(seed=3), tiny_model(seed=3)
    for (name, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        assert torch.equal(p, q), name
    std = a.model.layers[0].mlp.experts[0].up_proj.weight.std().item()
    assert std == pytest.approx(0.02, rel=0.3)


# ------------------------------------------------------------------------------ reference

def reference_logits(model, ids, mask=None):
    """A slow, literal reading of the upstream forward.

    Per-token expert loop, explicit per-head attention, float64."""
    cfg = model.config
    sd = {k: v.double() for k, v in model.state_dict().items()}
    hd, h, kv = cfg.dims_per_head, cfg.num_attention_heads, cfg.num_key_value_heads

    def rms(x, w):
        return w * x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + cfg.rms_norm_eps)

    def swiglu(x, p):
        return (F.silu(x @ sd[p + "gate_proj.weight"].T) * (x @ sd[p + "up_proj.weight"].T)) \
            @ sd[p + "down_proj.weight"].T

    def lin(x, p):
        y = x @ sd[p + ".weight"].T
        return y + sd[p + ".bias"] if p + ".bias" in sd else y

    b, n = ids.shape
    x = sd["model.embed_tokens.weight"][ids]
    rot = cfg.rotary_dim
    inv = 1.0 / cfg.rope_theta ** (torch.arange(0, rot, 2, dtype=torch.float64) / rot)
    ang = torch.arange(n, dtype=torch.float64)[:, None] * inv
    cos, sin = torch.cat([ang, ang], -1).cos(), torch.cat([ang, ang], -1).sin()

    def rope(t):
        r, rest = t[..., :rot], t[..., rot:]
        half = rot // 2
        rotated = torch.cat([-r[..., half:], r[..., :half]], -1)
        return torch.cat([r * cos + rotated * sin, rest], -1)

    for i in range(cfg.num_hidden_layers):
        p = f"model.layers.{i}."
        a = rms(x, sd[p + "input_layernorm.weight"])
        q = lin(a, p + "self_attn.q_proj").view(b, n, h, hd)
        k = lin(a, p + "self_attn.k_proj").view(b, n, kv, hd)
        v = lin(a, p + "self_attn.v_proj").view(b, n, kv, hd)
        if cfg.qk_layernorm:
            q = rms(q, sd[p + "self_attn.q_norm.weight"])
            k = rms(k, sd[p + "self_attn.k_norm.weight"])
        out = torch.zeros(b, n, h, hd, dtype=torch.float64)
        for head in range(h):
            g = head // (h // kv)
            qh, kh = rope(q[:, :, head]), rope(k[:, :, g])
            s = qh @ kh.transpose(1, 2) / math.sqrt(hd)
            if mask is not None:
                s = s.masked_fill(~mask.bool()[:, None, :], float("-inf"))
            out[:, :, head] = s.softmax(-1) @ v[:, :, g]
        x = x + lin(out.reshape(b, n, h * hd), p + "self_attn.o_proj")
        m = rms(x, sd[p + "post_attention_layernorm.weight"])
        if cfg.moe_layer_freq[i]:
            probs = (m @ sd[p + "mlp.gate.weight"].T).softmax(-1)
            y = torch.zeros_like(m)
            for bi in range(b):
                for t in range(n):
                    top, idx = probs[bi, t].topk(cfg.num_experts_per_tok)
                    if cfg.norm_topk_prob:
                        top = top / top.sum()
                    for gate, e in zip(top, idx):
                        y[bi, t] += gate * swiglu(m[bi, t], p + f"mlp.experts.{int(e)}.")
            if cfg.shared_expert_intermediate_size:
                y = y + swiglu(m, p + "shared_expert.")
        else:
            y = swiglu(m, p + "mlp.")
        x = x + y
    return rms(x, sd["model.norm.weight"]) @ sd["lm_head.weight"].T


@pytest.mark.parametrize("overrides", [
    {},
    {"norm_topk_prob": True},
    {"shared_expert_intermediate_size": 24, "attention_bias": True},
    {"moe_layer_freq": (0, 1), "qk_layernorm": False, "partial_rotary_factor": 0.5},
])
def test_forward_matches_literal_reference(overrides):
    model = tiny_model(seed=1, **overrides)
    if overrides.get("attention_bias"):
        with torch.no_grad():
            for layer in model.model.layers:
                layer.self_attn.q_proj.bias.normal_(0, 0.1)
                layer.self_attn.o_proj.bias.normal_(0, 0.1)
    ids = torch.randint(0, 50, (2, 9), generator=torch.Generator().manual_seed(0))
    mask = torch.ones(2, 9, dtype=torch.long)
    mask[1, 6:] = 0
    with torch.no_grad():
        for m in (None, mask):
            got = model(ids, attention_mask=m).double()
            want = reference_logits(model, ids, m)
            assert got.shape == (2, 9, 50)
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------------------ routing

def test_only_top_k_experts_contribute():
    model = tiny_model(seed=2)
    mlp = model.model.layers[0].mlp
    x = torch.randn(1, 2, 32, generator=torch.Generator().manual_seed(1))  # 2 tokens x top-2 of 6
    with torch.no_grad():
        _, index = mlp.route(x.reshape(-1, 32))
        used = set(index.flatten().tolist())
        base = mlp(x)
        idle = sorted(set(range(6)) - used)
        assert idle, "the test needs an expert that no token selects"
        for e in idle:
            for w in mlp.experts[e].parameters():
                w.zero_()
        torch.testing.assert_close(mlp(x), base, rtol=0, atol=0)
        busy = int(index[0, 0])
        mlp.experts[busy].down_proj.weight.zero_()
        assert not torch.allclose(mlp(x)[0, 0], base[0, 0])


def test_norm_topk_prob_switches_gate_renormalisation():
    off = tiny_model(seed=4)
    on = tiny_model(seed=4, norm_topk_prob=True)
    x = torch.randn(10, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        g_off, i_off = off.model.layers[0].mlp.route(x)
        g_on, i_on = on.model.layers[0].mlp.route(x)
        probs = off.model.layers[0].mlp.gate(x).softmax(-1)
    assert torch.equal(i_off, i_on)
    torch.testing.assert_close(g_off, probs.gather(-1, i_off))  # raw softmax probabilities
    assert (g_off.sum(-1) < 0.999).all()
    torch.testing.assert_close(g_on.sum(-1), torch.ones(10))
    torch.testing.assert_close(g_on, g_off / g_off.sum(-1, keepdim=True))


# ------------------------------------------------------------------------------ edit tap

@pytest.mark.parametrize("shared", [None, 24])
def test_combine_tap_sees_moe_input_and_whole_contribution(shared):
    model = tiny_model(seed=5, shared_expert_intermediate_size=shared)
    layer = model.model.layers[1]
    assert isinstance(layer.mlp.combine, CombinedExpertOutput)
    seen = {}
    handles = [
        layer.post_attention_layernorm.register_forward_hook(
            lambda m, i, o: seen.__setitem__("normed", o)),
        layer.register_forward_pre_hook(lambda m, args: seen.__setitem__("layer_in", args[0])),
        layer.register_forward_hook(lambda m, i, o: seen.__setitem__("layer_out", o)),
        layer.mlp.combine.register_forward_hook(
            lambda m, i, o: seen.update(key=i[0], value=o)),
    ]
    ids = torch.randint(0, 50, (2, 7), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        model(ids)
        attn_out = layer.self_attn(layer.input_layernorm(seen["layer_in"]),
                                   *model.rotary(7, ids.device, torch.float32), None)
    for h in handles:
        h.remove()
    assert torch.equal(seen["key"], seen["normed"])  # key = the MoE input
    residual_after_attn = seen["layer_in"] + attn_out
    torch.testing.assert_close(seen["value"], seen["layer_out"] - residual_after_attn)
    if shared:
        with torch.no_grad():
            routed = seen["value"] - layer.shared_expert(seen["key"])
        assert routed.abs().max() > 0 and layer.shared_expert(seen["key"]).abs().max() > 0


def test_combine_tap_can_replace_the_contribution():
    model = tiny_model(seed=6)
    ids = torch.randint(0, 50, (1, 5), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        base = model(ids)
        h = model.model.layers[0].mlp.combine.register_forward_hook(lambda m, i, o: o * 0)
        edited = model(ids)
        h.remove()
    assert not torch.allclose(base, edited)


# ------------------------------------------------------------------------------ attention

def test_attention_is_bidirectional_and_logits_unshifted():
    model = tiny_model(seed=7)
    ids = torch.randint(0, 47, (1, 8), generator=torch.Generator().manual_seed(5))
    later = ids.clone()
    later[0, -1] = (ids[0, -1] + 1) % 47
    seen = {}
    h = model.model.norm.register_forward_hook(lambda m, i, o: seen.__setitem__("final", o))
    with torch.no_grad():
        a, b = model(ids), model(later)
        torch.testing.assert_close(b, model.lm_head(seen["final"]))  # position p -> logits[p]
    h.remove()
    assert not torch.allclose(a[0, 0], b[0, 0])  # the first position sees the last token


def test_padding_mask_hides_padding_keys():
    model = tiny_model(seed=8)
    ids = torch.randint(0, 47, (2, 10), generator=torch.Generator().manual_seed(6))
    mask = torch.ones(2, 10, dtype=torch.long)
    mask[0, 6:] = 0
    noisy = ids.clone()
    noisy[0, 6:] = (ids[0, 6:] + 5) % 47
    with torch.no_grad():
        a = model(ids, attention_mask=mask)
        b = model(noisy, attention_mask=mask)
        short = model(ids[:1, :6])
        unmasked = model(noisy)
    torch.testing.assert_close(a[0, :6], b[0, :6])
    torch.testing.assert_close(a[0, :6], short[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(a[1], b[1])
    assert not torch.allclose(unmasked[0, :6], a[0, :6])


def test_inputs_embeds_equals_input_ids():
    model = tiny_model(seed=9)
    ids = torch.randint(0, 50, (1, 6), generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        torch.testing.assert_close(model(ids), model(inputs_embeds=model.model.embed_tokens(ids)))
    with pytest.raises(ValueError):
        model()
