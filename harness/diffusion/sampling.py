"""LLaDA-style answer generation: reverse diffusion with low-confidence remasking.

The answer region starts fully masked: prompt + [mask] * gen_length + EOS (rows right-
padded with EOS, as `batching.collate` lays out training rows, each to its own width
rounded up to 8 and batched with rows of the same width). Over `steps` forwards the
masked positions of the current block are predicted at once (argmax, or a sample from
softmax(logits / temperature) via Gumbel noise when temperature > 0) and the k most
confident predictions are kept; k spreads each block's tokens evenly over its steps
(LLaDA's schedule). With `block_length` < gen_length, blocks are filled left to right
(semi-autoregressive). The mask token is never predicted, so no mask survives. The text
is the generated region decoded up to the first EOS. `remasking="random"` keeps k
uniformly random masked positions of the block instead of the k most confident ones
(LLaDA's `remasking='random'` option; the draws come from the same seeded generator).

Unless given, a row's gen_length is its own reference answer's length plus
`DEFAULT_EXTRA_TOKENS` (and steps = gen_length): a fact gets the same number of masks, and
so the same greedy answer, whichever facts share its list. (It used to be the longest
answer of the list, so a fact's generation depended on the list it was evaluated in.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from harness.backbones.base import Backbone
from harness.data.fact import Fact
from harness.diffusion.batching import EncodedFact, encode_facts, round_width, width_groups

DEFAULT_EXTRA_TOKENS = 4  # default gen_length of a row = its answer (tokens) + this
REMASKING = ("low_confidence", "random")  # which masked predictions a step keeps


@dataclass
class Generation:
    texts: list[str]  # decoded answers, cut at the first EOS
    token_ids: list[list[int]]  # the gen_length generated ids per row (EOS included)
    gen_lengths: list[int]  # per row
    steps: list[int]  # per row
    block_lengths: list[int]  # per row


def transfer_schedule(n_tokens: int, steps: int) -> list[int]:
    """How many tokens to unmask at each of `steps` steps: n spread evenly, early-heavy."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    base, extra = divmod(n_tokens, steps)
    return [base + (1 if i < extra else 0) for i in range(steps)]


def _block_steps(steps: int, n_blocks: int) -> list[int]:
    if steps < n_blocks:
        raise ValueError(f"steps ({steps}) must be >= the number of blocks ({n_blocks})")
    return transfer_schedule(steps, n_blocks)


def _pick(logits: torch.Tensor, temperature: float, generator: torch.Generator
          ) -> tuple[torch.Tensor, torch.Tensor]:
    """(predicted ids, confidence = model probability of the prediction) per position."""
    logits = logits.float()
    probs = torch.softmax(logits, dim=-1)
    if temperature > 0:
        u = torch.rand(logits.shape, generator=generator, dtype=torch.float64)
        gumbel = -torch.log(-torch.log(u.clamp_min(1e-20))).to(logits.device)
        pred = (logits.double() / temperature + gumbel).argmax(-1)
    else:
        pred = logits.argmax(-1)
    return pred, probs.gather(-1, pred.unsqueeze(-1)).squeeze(-1)


def _sample_batch(backbone: Backbone, rows: Sequence[EncodedFact], gen_length: int,
                  block_length: int, steps: int, temperature: float,
                  generator: torch.Generator, width: int,
                  remasking: str = "low_confidence") -> list[list[int]]:
    mask_id, eos = backbone.mask_token_id, backbone.eos_token_id
    prompt_lens = [len(e.prompt_ids) for e in rows]
    if width < max(prompt_lens) + gen_length + 1:
        raise ValueError(f"width {width} < longest prompt + gen_length + 1")
    x = torch.full((len(rows), width), eos, dtype=torch.long)
    pos = torch.arange(width)
    starts = torch.tensor(prompt_lens)
    for r, e in enumerate(rows):
        x[r, :prompt_lens[r]] = torch.tensor(e.prompt_ids)
        x[r, prompt_lens[r]:prompt_lens[r] + gen_length] = mask_id
    x = x.to(backbone.device)
    n_blocks = -(-gen_length // block_length)
    for b, block_steps in enumerate(_block_steps(steps, n_blocks)):
        lo = starts[:, None] + b * block_length
        hi = starts[:, None] + min((b + 1) * block_length, gen_length)
        in_block = ((pos[None] >= lo) & (pos[None] < hi)).to(x.device)
        for k in transfer_schedule(int((hi - lo)[0]), block_steps):
            logits = backbone.logits(x)
            logits[..., mask_id] = float("-inf")
            logits[..., backbone.emittable_vocab_size:] = float("-inf")  # padded rows: no token
            pred, conf = _pick(logits, temperature, generator)
            candidates = in_block & (x == mask_id)
            if k == 0:
                continue
            if remasking == "random":  # keep k uniformly random masked positions
                conf = torch.rand(conf.shape, generator=generator,
                                  dtype=torch.float64).to(conf.device)
            conf = conf.masked_fill(~candidates, float("-inf"))
            top = conf.topk(k, dim=1).indices
            chosen = torch.zeros_like(candidates).scatter_(1, top, True) & candidates
            x = torch.where(chosen, pred, x)
    if bool((x == mask_id).any()):  # the schedule unmasks every position; guard the invariant
        raise RuntimeError("generation left a mask token")
    return [x[r, prompt_lens[r]:prompt_lens[r] + gen_length].tolist() for r in range(len(rows))]


def _decode(backbone: Backbone, ids: list[int]) -> str:
    eos = backbone.eos_token_id
    cut = ids.index(eos) if eos in ids else len(ids)
    return backbone.tokenizer.decode(ids[:cut], skip_special_tokens=True).strip()


def sample_answers(backbone: Backbone, facts_or_encoded: Sequence[Fact] | Sequence[EncodedFact],
                   gen_length: int | None = None, steps: int | None = None,
                   block_length: int | None = None, temperature: float = 0.0, seed: int = 0,
                   batch_size: int = 32, remasking: str = "low_confidence") -> Generation:
    """Generate an answer for every fact's question; texts and generated token ids.

    gen_length / steps / block_length apply to every row when given; by default each row
    generates its own answer's length + `DEFAULT_EXTRA_TOKENS` tokens in as many steps.
    `remasking`: one of REMASKING (the module docstring)."""
    items = list(facts_or_encoded)
    if not items:
        return Generation([], [], [], [], [])
    encoded = items if isinstance(items[0], EncodedFact) else encode_facts(backbone, items)
    if gen_length is not None and gen_length < 1:
        raise ValueError(f"gen_length must be >= 1, got {gen_length}")
    if block_length is not None and block_length < 1:
        raise ValueError(f"block_length must be >= 1, got {block_length}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if remasking not in REMASKING:
        raise ValueError(f"unknown remasking '{remasking}'; known: {', '.join(REMASKING)}")
    lengths = [gen_length if gen_length is not None else len(e.answer_ids) + DEFAULT_EXTRA_TOKENS
               for e in encoded]
    blocks = [n if block_length is None else min(block_length, n) for n in lengths]
    row_steps = [n if steps is None else steps for n in lengths]
    generator = torch.Generator().manual_seed(seed)
    token_ids: list[list[int]] = [[] for _ in encoded]
    # Rows of equal width and schedule, each padded to its own width (batching.row_width):
    # a greedy generation does not depend on which questions share its batch.
    widths = [round_width(len(e.prompt_ids) + n + 1) for e, n in zip(encoded, lengths)]
    groups = list(zip(widths, lengths, blocks, row_steps))
    with torch.inference_mode():
        for rows in width_groups(groups, batch_size):
            width, n, block, n_steps = groups[rows[0]]
            out = _sample_batch(backbone, [encoded[i] for i in rows], n, block, n_steps,
                                temperature, generator, width, remasking)
            for i, ids in zip(rows, out):
                token_ids[i] = ids
    texts = [_decode(backbone, ids) for ids in token_ids]
    return Generation(texts, token_ids, lengths, row_steps, blocks)


def generate(backbone: Backbone, facts_or_encoded: Sequence[Fact] | Sequence[EncodedFact],
             gen_length: int | None = None, steps: int | None = None,
             block_length: int | None = None, temperature: float = 0.0, seed: int = 0,
             batch_size: int = 32, remasking: str = "low_confidence") -> list[str]:
    """Decoded answers (see `sample_answers` for the token ids)."""
    return sample_answers(backbone, facts_or_encoded, gen_length, steps, block_length,
                          temperature, seed, batch_size, remasking).texts
