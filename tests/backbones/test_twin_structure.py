"""Structural contracts of every twin: bidirectional, hook point, tokens, save/load."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from harness.backbones import BackboneSpec, load_backbone
from harness.backbones.registry import adapter_class
from tests.backbones.twin_cases import CASE_IDS, CASES

QUESTION = "Where was Zarvo Keth born?"


def sample_ids(backbone) -> torch.Tensor:
    prompt_ids, _ = backbone.tokenize_prompt(backbone.format_prompt(QUESTION))
    answer = backbone.tokenize_answer("Zarvo Keth was born in Brimholt.")
    return torch.tensor([prompt_ids + answer, prompt_ids + answer[::-1]])


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_changing_a_later_token_changes_earlier_logits(twins, case):
    backbone = twins[case.name]
    ids = sample_ids(backbone)
    changed = ids.clone()
    changed[:, -1] = backbone.mask_token_id
    with torch.no_grad():
        before, after = backbone.logits(ids), backbone.logits(changed)
    # Position 1 sees the last token only through bidirectional attention.
    assert (before[:, 1] - after[:, 1]).abs().max().item() > 1e-4


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_mlp_out_proj_is_the_documented_module_and_its_hook_fires(twins, case):
    backbone = twins[case.name]
    last = backbone.num_layers - 1
    for layer in (0, last):
        assert backbone.mlp_out_proj_path(layer) == case.twin_path.format(layer=layer)
    seen = []
    module = backbone.mlp_out_proj(last)
    handle = module.register_forward_hook(lambda m, inputs, out: seen.append((inputs[0], out)))
    try:
        with torch.no_grad():
            backbone.logits(sample_ids(backbone))
    finally:
        handle.remove()
    assert len(seen) == 1
    key, value = seen[0]
    d_model = backbone.input_embeddings().weight.shape[1]
    assert value.shape[-1] == d_model  # the output is a residual-stream contribution
    assert key.shape[:2] == value.shape[:2]


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_real_adapter_profile_composes_the_documented_real_path(case):
    profile = adapter_class(case.real_adapter).profile
    assert f"{profile.blocks_path}.3.{profile.mlp_out_path}" == case.real_path.format(layer=3)
    assert profile.shifted_logits == case.shifted
    assert adapter_class(case.adapter).profile.shifted_logits == case.shifted


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_save_pretrained_round_trip_gives_identical_logits(twins, case, tmp_path, no_network):
    backbone = twins[case.name]
    backbone.save_pretrained(str(tmp_path / "ckpt"))
    reloaded = load_backbone(replace(backbone.spec, path=str(tmp_path / "ckpt")))
    ids = sample_ids(backbone)
    with torch.no_grad():
        assert torch.equal(backbone.logits(ids), reloaded.logits(ids))
    assert reloaded.mask_token_id == backbone.mask_token_id
    assert reloaded.format_prompt(QUESTION) == backbone.format_prompt(QUESTION)
    assert reloaded.tokenize_prompt(reloaded.format_prompt(QUESTION)) == \
        backbone.tokenize_prompt(backbone.format_prompt(QUESTION))


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_mask_token_is_a_distinct_special_token(twins, case):
    backbone = twins[case.name]
    tok = backbone.tokenizer
    assert backbone.mask_token_id not in (backbone.eos_token_id, tok.bos_token_id)
    mask_text = tok.convert_ids_to_tokens(backbone.mask_token_id)
    # The mask token survives tokenisation as one id (it is a special token, not BPE pieces).
    assert tok(f"a {mask_text} b", add_special_tokens=False)["input_ids"].count(
        backbone.mask_token_id) == 1
    assert backbone.mask_token.source != ""


def test_instruct_twin_prompt_is_the_chat_template_with_bos_once(twins):
    backbone = twins["llada-8b-instruct-twin"]
    prompt = backbone.format_prompt(QUESTION)
    assert prompt.startswith("<|startoftext|><|start_header_id|>user<|end_header_id|>\n\n")
    assert prompt.endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")
    ids, offsets = backbone.tokenize_prompt(prompt)
    bos = backbone.tokenizer.bos_token_id
    assert ids.count(bos) == 1 and ids[0] == bos
    start = backbone.question_offset(QUESTION)
    inside = [i for i, (s, e) in enumerate(offsets) if s >= start and e <= start + len(QUESTION)]
    assert backbone.tokenizer.decode([ids[i] for i in inside]).strip() == QUESTION


def test_diffullama_twin_prepends_bos_like_llama(twins):
    backbone = twins["diffullama-7b-twin"]
    ids, offsets = backbone.tokenize_prompt(backbone.format_prompt(QUESTION))
    assert ids[0] == backbone.tokenizer.bos_token_id and offsets[0] == (0, 0)
    assert backbone.eos_token_id == backbone.tokenizer.convert_tokens_to_ids("</s>")


def test_unknown_twin_option_is_rejected_with_its_name():
    spec = BackboneSpec(name="x", adapter="dream-twin", options={"size": "micro", "depth": 3})
    with pytest.raises(ValueError, match="unknown option.*depth"):
        adapter_class("dream-twin").initial(spec, ["a b c"], 0)


def test_twin_without_path_names_the_backbone():
    with pytest.raises(ValueError, match="backbone 'x' \\(llada-twin\\).*'path'"):
        load_backbone(BackboneSpec(name="x", adapter="llada-twin"))


def test_checkpoint_of_another_family_is_refused_naming_the_file(twins, tmp_path):
    twins["llada-8b-base-twin"].save_pretrained(str(tmp_path / "llada"))
    with pytest.raises(ValueError, match=r"llada/config\.json"):
        load_backbone(BackboneSpec(name="d", adapter="dream-twin", path=str(tmp_path / "llada")))


def test_same_seed_same_twin_different_seed_different_twin():
    from tests.backbones.conftest import build_twin

    case = CASES[3]
    a, b, c = build_twin(case, seed=5), build_twin(case, seed=5), build_twin(case, seed=6)
    ids = sample_ids(a)
    with torch.no_grad():
        assert torch.equal(a.logits(ids), b.logits(ids))
        assert not torch.equal(a.logits(ids), c.logits(ids))


# The real configs' proportions (docs/measurements/twin_sizes.md): MLP (MoE: expert) width /
# hidden size, query heads per key/value head, (experts, experts per token).
REAL_PROPORTIONS = {
    "llada-twin": (12288 / 4096, 1, (0, 0)),
    "mmada-twin": (12288 / 4096, 1, (0, 0)),
    "dream-twin": (18944 / 3584, 28 / 4, (0, 0)),
    "diffullama-twin": (11008 / 4096, 1, (0, 0)),
    "llada-moe-twin": (1024 / 2048, 1, (64, 8)),
}


@pytest.mark.parametrize("adapter", sorted(REAL_PROPORTIONS))
def test_narrow_twins_are_deep_and_proportioned_like_their_real_backbone(adapter):
    from harness.backbones.native import twin_dims
    from harness.backbones.registry import adapter_class

    ratio, kv_divisor, (experts, top_k) = REAL_PROPORTIONS[adapter]
    dims = twin_dims(adapter_class(adapter).profile, {"size": "narrow"})
    assert dims.n_layers >= 6
    if experts:
        # 1/8 of the experts active per token, as in the real model; the active width per
        # token (top_k x expert width) is 3 x d_model like the dense LLaDA twin (real: 4x).
        assert dims.experts_per_token / dims.n_experts == top_k / experts
        assert dims.experts_per_token * dims.mlp_hidden / dims.d_model == pytest.approx(3.0)
    else:
        assert dims.mlp_hidden / dims.d_model == pytest.approx(ratio, abs=8 / dims.d_model)
    assert dims.n_heads // dims.n_kv_heads == min(dims.n_heads, int(kv_divisor))
