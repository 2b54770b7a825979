"""DiffuLLaMA (diffusionfamily/diffullama, LLaMA-2-7B adapted) and its structural twin.

The checkpoint is a plain `LlamaForCausalLM` (no remote code); the authors run it with
the causal mask removed. The adapter makes the transformers class bidirectional
(`bidirectional.make_bidirectional`), reads SHIFTED logits (AR-adapted), hooks
`model.layers[i].mlp.down_proj`. LLaMA-2's tokenizer has no mask token: the id comes from
`options.mask_token_id`, else the known constant (see docs/backbones.md).
"""

from __future__ import annotations

from transformers import LlamaConfig, LlamaForCausalLM

from harness.backbones.mdlm_adapter import BackboneProfile, HubBackbone
from harness.backbones.registry import register_adapter
from harness.backbones.twin_backbone import HFCausalTwinModels, TwinBackbone
from harness.backbones.twin_tokenizers import TwinTokens

DIFFULLAMA_PROFILE = BackboneProfile(
    family="diffullama",
    blocks_path="model.layers",
    mlp_out_path="mlp.down_proj",
    embeddings_path="model.embed_tokens",
    shifted_logits=True,
    needs_remote_code=False,
    auto_class="AutoModelForCausalLM",
    known_mask_token_id=811,
    known_mask_token_note="811, the id DiffuLLaMA's inference code uses as [MASK] (unverified)",
    bidirectional_patch=True,
    forward_kwargs={"use_cache": False},
)


@register_adapter("diffullama-hf")
class DiffuLLaMAHubBackbone(HubBackbone):
    profile = DIFFULLAMA_PROFILE


@register_adapter("diffullama-twin")
class DiffuLLaMATwinBackbone(HFCausalTwinModels, TwinBackbone):
    profile = DIFFULLAMA_PROFILE
    architecture = "diffullama-twin"
    # LLaMA-2 specials: <s> prepended, </s> EOS; the twin's tokenizer carries a distinct
    # mask token (the real one has none and uses the constant id).
    tokens = TwinTokens(mask="<mask>", eos="</s>", bos="<s>", add_bos=True)
    config_class = LlamaConfig
    model_class = LlamaForCausalLM
