"""Dream-v0-Base-7B (Dream-org) and its structural twin.

Dream is Qwen2.5-7B adapted to masked diffusion. Native class: transformers' own
`Qwen2ForCausalLM` made bidirectional, built from Dream's config.json field names
(`harness/backbones/models/dream.py`); no remote code. Module tree
`model.layers[i].mlp.down_proj`, embeddings `model.embed_tokens`, SHIFTED logits (row i-1
predicts token i), mask `<|mask|>` = 151666. Dream ships a slow tokenizer only
(vocab.json + merges.txt): a fast one is built from those files
(`harness/backbones/tokenizer_files.py`). Sources: docs/backbones.md.
"""

from __future__ import annotations

from harness.backbones.models.dream import DREAM_FAMILY
from harness.backbones.native import BackboneProfile, PretrainedBackbone, TwinBackbone
from harness.backbones.registry import register_adapter
from harness.backbones.twin_tokenizers import TwinTokens

DREAM_PROFILE = BackboneProfile(
    name="dream",
    family=DREAM_FAMILY,
    blocks_path="model.layers",
    mlp_out_path="mlp.down_proj",
    embeddings_path="model.embed_tokens",
    final_norm_path="model.norm",
    shifted_logits=True,
    tokens=TwinTokens(mask="<|mask|>", eos="<|endoftext|>"),
    tokenizer_layout="vocab_merges",
    known_mask_token_id=151666,
    known_mask_token_note="<|mask|> = 151666 in Dream's tokenizer_config.json",
    mlp_ratio=5.25,  # Dream-7B (Qwen2.5-7B): intermediate 18944 / hidden 3584 = 5.29
    kv_heads_divisor=7,  # Dream-7B: 28 query heads, 4 key/value heads
)


@register_adapter("dream-hf")
class DreamHubBackbone(PretrainedBackbone):
    profile = DREAM_PROFILE


@register_adapter("dream-twin")
class DreamTwinBackbone(TwinBackbone):
    profile = DREAM_PROFILE
