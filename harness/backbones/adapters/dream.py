"""Dream-v0-Base-7B (Dream-org) and its structural twin.

Dream is Qwen2.5-7B adapted to masked diffusion: bidirectional attention in its own
remote code (`DreamModel`), Qwen2 module tree `model.layers[i].mlp.down_proj`, embeddings
`model.embed_tokens`, SHIFTED logits (row i-1 predicts token i), mask id from the
tokenizer's `<|mask|>`. The twin is transformers' own `Qwen2ForCausalLM` (tiny config)
made bidirectional, so the module paths are Dream's.
"""

from __future__ import annotations

from dataclasses import replace

from transformers import Qwen2Config, Qwen2ForCausalLM

from harness.backbones.mdlm_adapter import BackboneProfile, HubBackbone
from harness.backbones.registry import register_adapter
from harness.backbones.twin_backbone import HFCausalTwinModels, TwinBackbone
from harness.backbones.twin_tokenizers import TwinTokens

DREAM_PROFILE = BackboneProfile(
    family="dream",
    blocks_path="model.layers",
    mlp_out_path="mlp.down_proj",
    embeddings_path="model.embed_tokens",
    shifted_logits=True,
    needs_remote_code=True,
    auto_class="AutoModel",
    known_mask_token_id=151666,
    known_mask_token_note="<|mask|> = 151666 in Dream's tokenizer (unverified)",
    attention_mask_4d=True,
)


@register_adapter("dream-hf")
class DreamHubBackbone(HubBackbone):
    profile = DREAM_PROFILE


@register_adapter("dream-twin")
class DreamTwinBackbone(HFCausalTwinModels, TwinBackbone):
    # The twin is a transformers AR class: switch it to bidirectional attention.
    profile = replace(DREAM_PROFILE, bidirectional_patch=True, needs_remote_code=False,
                      attention_mask_4d=False, forward_kwargs={"use_cache": False})
    architecture = "dream-twin"
    tokens = TwinTokens(mask="<|mask|>", eos="<|endoftext|>")
    config_class = Qwen2Config
    model_class = Qwen2ForCausalLM
    kv_heads_divisor = 2
