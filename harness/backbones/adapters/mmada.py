"""MMaDA-8B-Base (Gen-Verse) and its structural twin.

MMaDA's language tower is LLaDA's (`MMadaModelLM` subclasses `LLaDAModelLM`), so its
blocks live at `model.transformer.blocks[i]` with MLP output `ff_out`; the harness only
runs the text-only forward (`model(input_ids).logits`; image tokens never appear).
MMaDA's modeling code lives in its GitHub repository; if the hub repository has no
`auto_map`, point `options.model_class` at a local clone (`models:MMadaModelLM`).
"""

from __future__ import annotations

from dataclasses import replace

from harness.backbones.adapters.llada import LLADA_PROFILE, LLADA_TOKENS
from harness.backbones.mdlm_adapter import HubBackbone
from harness.backbones.registry import register_adapter
from harness.backbones.twin_backbone import LLaDAStyleTwinModels, TwinBackbone

MMADA_PROFILE = replace(LLADA_PROFILE, family="mmada",
                        known_mask_token_note="<|mdm_mask|> = 126336 as in LLaDA "
                                              "(unverified for MMaDA)")


@register_adapter("mmada-hf")
class MMaDAHubBackbone(HubBackbone):
    profile = MMADA_PROFILE


@register_adapter("mmada-twin")
class MMaDATwinBackbone(LLaDAStyleTwinModels, TwinBackbone):
    profile = MMADA_PROFILE
    architecture = "mmada-twin"
    tokens = LLADA_TOKENS
