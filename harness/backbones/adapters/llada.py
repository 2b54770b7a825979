"""LLaDA-8B-Base / -Instruct (GSAI-ML) and their structural twin.

Native class: `harness/backbones/models/llada.py` (LLaDA's `LLaDAModelLM` module tree and
config.json field names). Blocks `model.transformer.blocks[i]`, MLP output projection
`ff_out`, embeddings `model.transformer.wte`; aligned (unshifted) logits; mask token
`<|mdm_mask|>` = 126336 (config.json `mask_token_id`). Instruct is prompted through its
tokenizer's chat template (`options.prompt_format: chat`). Sources: docs/backbones.md.
"""

from __future__ import annotations

from harness.backbones.chat_formats import LLADA_CHAT_TEMPLATE, LLADA_CHAT_TOKENS
from harness.backbones.models.llada import LLADA_FAMILY
from harness.backbones.native import BackboneProfile, PretrainedBackbone, TwinBackbone
from harness.backbones.registry import register_adapter
from harness.backbones.twin_tokenizers import TwinTokens

LLADA_MASK_TOKEN_ID = 126336

LLADA_TOKENS = TwinTokens(mask="<|mdm_mask|>", eos="<|endoftext|>", bos="<|startoftext|>",
                          add_bos=False, extra=LLADA_CHAT_TOKENS,
                          chat_template=LLADA_CHAT_TEMPLATE)

# mlp_ratio: the default 3.0 is LLaDA-8B's mlp_hidden_size 12288 / d_model 4096.
LLADA_PROFILE = BackboneProfile(
    name="llada",
    family=LLADA_FAMILY,
    blocks_path="model.transformer.blocks",
    mlp_out_path="ff_out",
    embeddings_path="model.transformer.wte",
    final_norm_path="model.transformer.ln_f",
    shifted_logits=False,
    tokens=LLADA_TOKENS,
    known_mask_token_id=LLADA_MASK_TOKEN_ID,
    known_mask_token_note="<|mdm_mask|> = 126336, LLaDA's generate.py / model card",
)


@register_adapter("llada-hf")
class LLaDAHubBackbone(PretrainedBackbone):
    profile = LLADA_PROFILE


@register_adapter("llada-twin")
class LLaDATwinBackbone(TwinBackbone):
    profile = LLADA_PROFILE
