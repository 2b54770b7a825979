"""MMaDA-8B-Base (Gen-Verse) and its structural twin.

MMaDA's language tower is LLaDA's (`MMadaModelLM` subclasses `LLaDAModelLM`): the same
module tree and parameter names; only the text forward runs here (image tokens never
appear). Its config.json is read in MMaDA's own format (`MMADA_FAMILY`). Sources:
docs/backbones.md.
"""

from __future__ import annotations

from dataclasses import replace

from harness.backbones.adapters.llada import LLADA_PROFILE
from harness.backbones.models.llada import MMADA_FAMILY
from harness.backbones.native import PretrainedBackbone, TwinBackbone
from harness.backbones.registry import register_adapter

MMADA_PROFILE = replace(LLADA_PROFILE, name="mmada", family=MMADA_FAMILY,
                        known_mask_token_note="<|mdm_mask|> = 126336 as in LLaDA")


@register_adapter("mmada-hf")
class MMaDAHubBackbone(PretrainedBackbone):
    profile = MMADA_PROFILE


@register_adapter("mmada-twin")
class MMaDATwinBackbone(TwinBackbone):
    profile = MMADA_PROFILE
