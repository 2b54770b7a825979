"""LLaDA-MoE-7B-A1B-Base (inclusionAI, about 1.4B active) and its structural twin.

Native class: `harness/backbones/models/llada_moe.py` (LLaDA-MoE's module tree and
config.json field names). The MoE layer's residual write (routed experts, plus the shared
expert if any) passes through a parameter-free tap `mlp.combine` keyed by the MoE layer's
input; the edit hooks that tap (see harness/backbones/moe_modules.py). Aligned logits.
The tokenizer ships no mask token: the id comes from the config or the known constant.
Sources: docs/backbones.md.
"""

from __future__ import annotations

from harness.backbones.models.llada_moe import LLADA_MOE_FAMILY
from harness.backbones.native import BackboneProfile, PretrainedBackbone, TwinBackbone
from harness.backbones.registry import register_adapter
from harness.backbones.twin_tokenizers import TwinTokens

LLADA_MOE_PROFILE = BackboneProfile(
    name="llada-moe",
    family=LLADA_MOE_FAMILY,
    blocks_path="model.layers",
    mlp_out_path="mlp.combine",
    embeddings_path="model.embed_tokens",
    final_norm_path="model.norm",
    shifted_logits=False,
    tokens=TwinTokens(mask="<|mask|>", eos="<|endoftext|>", mask_in_tokenizer=False),
    known_mask_token_id=156895,
    known_mask_token_note="<|mask|> = 156895, LLaDA-MoE's model card",
    # LLaDA-MoE-7B-A1B: 64 experts, 8 per token (1/8 active), each 1024 wide = 0.5 x hidden
    # 2048, so 4 x hidden active. The twin keeps 1/8 of its experts active at a per-token
    # width of 3 x d_model, as the dense LLaDA twin's MLP: 8 experts, top 1, 3 x d wide.
    mlp_ratio=3.0,
    experts=(8, 1),
)


@register_adapter("llada-moe-hf")
class LLaDAMoEHubBackbone(PretrainedBackbone):
    profile = LLADA_MOE_PROFILE


@register_adapter("llada-moe-twin")
class LLaDAMoETwinBackbone(TwinBackbone):
    profile = LLADA_MOE_PROFILE
