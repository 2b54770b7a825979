"""Context batches for ROME/MEMIT keys and targets on a masked diffusion LM.

One fact becomes P x R rows: P prompt variants (the plain prompt plus P-1 short random
prefixes cut from corpus text, seeded) times R masked states of the answer (each a
seeded random subset of round(r * answer length) >= 1 answer tokens replaced by the mask
token, for r in `mask_ratios`). The key k* of the fact is the mean input of the edited
module at the last subject token over all rows; the value optimisation lowers the
answer's log-likelihood at the masked answer positions of all rows.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Sequence

import torch

from harness.backbones.base import Backbone
from harness.data.fact import Fact
from harness.diffusion.batching import EncodedFact, collate, encode_fact

from baselines.configs import ContextConfig  # torch-free: checked when the workflow plans


@dataclass
class ContextBatch:
    """Rows of one or more facts; `fact_index[r]` says which fact row r belongs to."""

    input_ids: torch.Tensor  # [N, L] with masked answer tokens
    targets: torch.Tensor  # [N, L] original ids
    masked: torch.Tensor  # [N, L] bool: masked answer positions (the loss positions)
    subject_pos: torch.Tensor  # [N] last subject token
    fact_index: torch.Tensor  # [N]

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])


def leading_special_tokens(backbone: Backbone) -> int:
    """How many special tokens the tokenizer puts before a prompt (e.g. BOS)."""
    with_special = len(backbone.tokenize_prompt("x")[0])
    plain = len(backbone.tokenizer("x", add_special_tokens=False)["input_ids"])
    return max(0, with_special - plain)


def prefix_token_lists(backbone: Backbone, corpus: Sequence[str], cfg: ContextConfig,
                       seed: int) -> list[list[int]]:
    """The empty prefix plus `cfg.n_prefixes` seeded random token prefixes from `corpus`."""
    prefixes: list[list[int]] = [[]]
    if cfg.n_prefixes == 0:
        return prefixes
    if not corpus:
        raise ValueError("edit contexts: random prefixes need corpus text (retain facts)")
    rng = random.Random(seed)
    lo, hi = cfg.prefix_tokens
    while len(prefixes) < cfg.n_prefixes + 1:
        ids = backbone.tokenizer(rng.choice(list(corpus)), add_special_tokens=False)["input_ids"]
        if ids:
            prefixes.append(list(ids[:rng.randint(lo, hi)]))
    return prefixes


def with_prefix(encoded: EncodedFact, prefix: Sequence[int], n_special: int) -> EncodedFact:
    """`encoded` with `prefix` inserted after the tokenizer's leading special tokens."""
    prompt = encoded.prompt_ids
    ids = tuple(prompt[:n_special]) + tuple(prefix) + tuple(prompt[n_special:])
    shift = len(prefix)
    return EncodedFact(encoded.fact, ids, encoded.answer_ids,
                       tuple(p + shift for p in encoded.subject_positions))


def build_contexts(backbone: Backbone, facts: Sequence[Fact], prefixes: Sequence[Sequence[int]],
                   cfg: ContextConfig, seed: int) -> ContextBatch:
    """All rows (prefix x mask ratio) of every fact, right-padded into one batch."""
    n_special = leading_special_tokens(backbone)
    rows: list[EncodedFact] = []
    owners: list[int] = []
    for i, fact in enumerate(facts):
        encoded = encode_fact(backbone, fact)
        for prefix in prefixes:
            rows += [with_prefix(encoded, prefix, n_special)] * len(cfg.mask_ratios)
            owners += [i] * len(cfg.mask_ratios)
    batch = collate(backbone, rows)
    masked = torch.zeros_like(batch.answer_mask)
    gen = torch.Generator().manual_seed(seed)
    ratios = list(cfg.mask_ratios) * (len(rows) // len(cfg.mask_ratios))
    for r, ratio in enumerate(ratios):
        positions = batch.answer_mask[r].nonzero().flatten()
        k = max(1, round(ratio * len(positions)))
        chosen = positions[torch.randperm(len(positions), generator=gen)[:k]]
        masked[r, chosen] = True
    return ContextBatch(batch.input_ids.masked_fill(masked, backbone.mask_token_id),
                        batch.input_ids, masked, batch.last_subject_pos, torch.tensor(owners))


def neutral_contexts(backbone: Backbone, facts: Sequence[Fact], n_answer_slots: int = 8
                     ) -> ContextBatch:
    """One 'Tell me about <subject>.' prompt per fact with a fully masked answer region
    (the KL term keeps the edited model's predictions there close to the original)."""
    rows = []
    for fact in facts:
        question = f"Tell me about {fact.subject}." if fact.subject else fact.question
        probe = Fact(question, "x", fact.subject, fact.subject_source, fact.author_id,
                     fact.split, fact.index)
        encoded = encode_fact(backbone, probe)
        rows.append(EncodedFact(fact, encoded.prompt_ids, (backbone.mask_token_id,) * n_answer_slots,
                                encoded.subject_positions))
    batch = collate(backbone, rows)
    return ContextBatch(batch.input_ids, batch.input_ids, batch.answer_mask.clone(),
                        batch.last_subject_pos, torch.arange(len(rows)))
