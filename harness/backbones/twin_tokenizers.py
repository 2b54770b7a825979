"""Tokenizers of the structural twins: corpus-trained BPE plus each real model's specials.

The BPE vocabulary comes from `train_bpe_tokenizer` (trained on the corpus, no hub); the
special tokens mirror the real model's (its mask token, EOS, BOS if its tokenizer adds
one, chat header tokens for Instruct models) so that the adapter's token handling (mask id
resolution, BOS prefix, chat template) runs on the twin exactly as on the real model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from tokenizers import processors
from transformers import PreTrainedTokenizerFast

from harness.backbones.tokenizer_training import train_bpe_tokenizer


@dataclass(frozen=True)
class TwinTokens:
    """Special tokens of a real model, as its twin's tokenizer carries them."""

    mask: str
    eos: str
    bos: str | None = None
    add_bos: bool = False  # prepend BOS when encoding with add_special_tokens=True
    extra: tuple[str, ...] = ()
    chat_template: str | None = None
    mask_in_tokenizer: bool = True  # False: the real tokenizer has no mask token (id from config)

    def all_specials(self) -> list[str]:
        return [t for t in (self.mask, self.eos, self.bos, *self.extra) if t]


def build_twin_tokenizer(texts: Sequence[str], tokens: TwinTokens, vocab_size: int = 1024,
                         chat: bool = False) -> PreTrainedTokenizerFast:
    """Corpus-trained BPE with `tokens`' special tokens (appended after the BPE vocabulary)."""
    base = train_bpe_tokenizer(texts, vocab_size=vocab_size)
    backend = base.backend_tokenizer
    missing = [t for t in tokens.all_specials() if backend.token_to_id(t) is None]
    if missing:
        backend.add_special_tokens(missing)
    if tokens.add_bos:
        if not tokens.bos:
            raise ValueError("TwinTokens.add_bos needs a bos token")
        bos_id = backend.token_to_id(tokens.bos)
        backend.post_processor = processors.TemplateProcessing(
            single=f"{tokens.bos} $A", pair=f"{tokens.bos} $A {tokens.bos} $B",
            special_tokens=[(tokens.bos, bos_id)])
    kwargs = {"eos_token": tokens.eos, "pad_token": tokens.eos}
    if tokens.mask_in_tokenizer:
        kwargs["mask_token"] = tokens.mask
    if tokens.bos:
        kwargs["bos_token"] = tokens.bos
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, **kwargs)
    if chat:
        if not tokens.chat_template:
            raise ValueError("this twin's real model has no chat template; drop options.chat")
        tok.chat_template = tokens.chat_template
    return tok

