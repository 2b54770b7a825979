"""Train a byte-level BPE tokenizer on a corpus with the `tokenizers` library (no hub)."""

from __future__ import annotations

from typing import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

MASK_TOKEN = "<|mdm_mask|>"
EOS_TOKEN = "<|endoftext|>"
SPECIAL_TOKENS = [MASK_TOKEN, EOS_TOKEN]


def train_bpe_tokenizer(texts: Iterable[str], vocab_size: int = 2048,
                        min_frequency: int = 1) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer; the mask token gets id 0 and EOS id 1."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                  special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(list(texts), trainer=trainer)
    return wrap_tokenizer(tok)


def wrap_tokenizer(tok: Tokenizer) -> PreTrainedTokenizerFast:
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS_TOKEN,
                                   pad_token=EOS_TOKEN, mask_token=MASK_TOKEN)
