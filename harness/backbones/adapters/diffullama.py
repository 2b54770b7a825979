"""DiffuLLaMA (diffusionfamily/diffullama, LLaMA-2-7B adapted) and its structural twin.

Native class: transformers' own `LlamaForCausalLM` made bidirectional, built from the
checkpoint's config.json (`harness/backbones/models/diffullama.py`). SHIFTED logits
(AR-adapted), hook `model.layers[i].mlp.down_proj`. LLaMA-2's tokenizer has no mask
token: the id comes from `options.mask_token_id`, else the known constant. Sources:
docs/backbones.md.
"""

from __future__ import annotations

from harness.backbones.models.diffullama import DIFFULLAMA_FAMILY, UPSTREAM_MASK_TOKEN_ID
from harness.backbones.native import BackboneProfile, PretrainedBackbone, TwinBackbone
from harness.backbones.registry import register_adapter
from harness.backbones.twin_tokenizers import TwinTokens

DIFFULLAMA_PROFILE = BackboneProfile(
    name="diffullama",
    family=DIFFULLAMA_FAMILY,
    blocks_path="model.layers",
    mlp_out_path="mlp.down_proj",
    embeddings_path="model.embed_tokens",
    final_norm_path="model.norm",
    shifted_logits=True,
    # LLaMA-2 specials: <s> prepended, </s> EOS; the twin's tokenizer carries a distinct
    # mask token (the real one has none and uses the constant id).
    tokens=TwinTokens(mask="<mask>", eos="</s>", bos="<s>", add_bos=True),
    known_mask_token_id=UPSTREAM_MASK_TOKEN_ID,
    known_mask_token_note="the id DiffuLLaMA's inference code uses as [MASK] "
                          "(docs/backbones/dream_diffullama.md)",
    mlp_ratio=2.6875,  # LLaMA-2-7B: intermediate 11008 / hidden 4096
)


@register_adapter("diffullama-hf")
class DiffuLLaMAHubBackbone(PretrainedBackbone):
    profile = DIFFULLAMA_PROFILE


@register_adapter("diffullama-twin")
class DiffuLLaMATwinBackbone(TwinBackbone):
    profile = DIFFULLAMA_PROFILE
