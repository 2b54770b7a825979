"""LLaDA-MoE-7B-A1B-Base (inclusionAI, ~1.4B active) and its structural twin.

The MoE layer's residual write is the gate-weighted sum of its routed experts; the edit
hooks that combined output through a parameter-free tap `mlp.combine` keyed by the MoE
layer's input (see harness/backbones/moe_modules.py and docs/backbones.md for why not
each expert's down-projection). Real tree (remote code, OLMoE-like; unverified):
`model.layers[i].mlp` with `gate` + `experts[j].{gate,up,down}_proj`; override with
`options.blocks_path` / `options.moe_module_path` if the checkpoint differs.
"""

from __future__ import annotations

from dataclasses import replace

from harness.backbones.mdlm_adapter import BackboneProfile, HubBackbone
from harness.backbones.registry import register_adapter
from harness.backbones.twin_backbone import LLaDAStyleTwinModels, TwinBackbone
from harness.backbones.twin_tokenizers import TwinTokens

LLADA_MOE_PROFILE = BackboneProfile(
    family="llada-moe",
    blocks_path="model.layers",
    mlp_out_path="mlp.combine",
    embeddings_path="model.embed_tokens",
    shifted_logits=False,
    needs_remote_code=True,
    auto_class="AutoModel",
    known_mask_token_id=156895,
    known_mask_token_note="<|mask|> = 156895 in LLaDA-MoE's generate example (unverified)",
    moe_module_path="mlp",
)


@register_adapter("llada-moe-hf")
class LLaDAMoEHubBackbone(HubBackbone):
    profile = LLADA_MOE_PROFILE


@register_adapter("llada-moe-twin")
class LLaDAMoETwinBackbone(LLaDAStyleTwinModels, TwinBackbone):
    # The twin's tree is the project's LLaDA-style one; its MoE MLP calls `combine` natively.
    profile = replace(LLADA_MOE_PROFILE, blocks_path="model.transformer.blocks",
                      embeddings_path="model.transformer.wte", moe_module_path=None)
    architecture = "llada-moe-twin"
    tokens = TwinTokens(mask="<|mdm_mask|>", eos="<|endoftext|>")
    moe = True
