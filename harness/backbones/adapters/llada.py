"""LLaDA-8B-Base / -Instruct (GSAI-ML) and their structural twin.

Real tree (remote code `modeling_llada.py`, `LLaDAModelLM`): `model.transformer.blocks[i]`
with the MLP output projection `ff_out`; embeddings `model.transformer.wte`; aligned
(unshifted) logits; mask token `<|mdm_mask|>` = 126336. Instruct is prompted through its
tokenizer's chat template (`options.prompt_format: chat`). See docs/backbones.md.
"""

from __future__ import annotations

from harness.backbones.chat_formats import LLADA_CHAT_TEMPLATE, LLADA_CHAT_TOKENS
from harness.backbones.mdlm_adapter import BackboneProfile, HubBackbone
from harness.backbones.registry import register_adapter
from harness.backbones.twin_backbone import LLaDAStyleTwinModels, TwinBackbone
from harness.backbones.twin_tokenizers import TwinTokens

LLADA_MASK_TOKEN_ID = 126336

LLADA_PROFILE = BackboneProfile(
    family="llada",
    blocks_path="model.transformer.blocks",
    mlp_out_path="ff_out",
    embeddings_path="model.transformer.wte",
    shifted_logits=False,
    needs_remote_code=True,
    auto_class="AutoModel",
    known_mask_token_id=LLADA_MASK_TOKEN_ID,
    known_mask_token_note="<|mdm_mask|> = 126336, LLaDA's generate.py / model card",
)

LLADA_TOKENS = TwinTokens(mask="<|mdm_mask|>", eos="<|endoftext|>", bos="<|startoftext|>",
                          add_bos=False, extra=LLADA_CHAT_TOKENS,
                          chat_template=LLADA_CHAT_TEMPLATE)


@register_adapter("llada-hf")
class LLaDAHubBackbone(HubBackbone):
    profile = LLADA_PROFILE


@register_adapter("llada-twin")
class LLaDATwinBackbone(LLaDAStyleTwinModels, TwinBackbone):
    profile = LLADA_PROFILE
    architecture = "llada-twin"
    tokens = LLADA_TOKENS
