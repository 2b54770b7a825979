"""Sampler probe: does the answer come back when the sampler changes, and does the edit
hold at every denoising level t?

Generation-based forgetting: the mean ROUGE-L recall of the forget facts' generated answers
(harness.diffusion.sampling) under settings a user of an MDLM would try, each changing one
thing from Table 1's generation (greedy, low-confidence remasking, one block, each row its
answer's length + 4 masks in one step per token; config evaluation.gen_steps if set):

- `steps_x<f>_rougeL`: fewer denoising steps, ceil(f x Table 1's steps) (f < 1: several
  tokens unmasked per step). More steps than masks change nothing in this sampler (a step
  that unmasks no token), so "more steps" is
- `extra<n>_rougeL`: a longer canvas, answer + n masks in as many steps;
- `block<b>_rougeL`: semi-autoregressive blocks of b tokens, filled left to right;
- `random_remask_rougeL`: each step keeps uniformly random masked positions instead of the
  most confident (LLaDA's `remasking='random'`);
- `temp<T>_rougeL`: sampled at temperature T, mean over `sample_seeds`;
  `temp<T>_rougeL_max`: per fact the best of those samples (an attacker who samples a few
  times keeps the best), mean over facts;
- `max_rougeL`: the largest of the columns above (the sampler that recovers most).

Per-level forget log-prob (`logp_t<t>`, nats per still-masked answer token): at level t a
fraction t of each answer's tokens is still masked (at least one; `levels.mask_at_level`,
the nested reveal orders TimeROME-DLM traces along, here `level_draws` random orders per
fact), the rest revealed; the mean log p of the true tokens at the still-masked positions.
t = 1 is the full_mask score per token; an edit that holds only when the whole answer is
masked shows no drop at small t.

Options: harness/evaluation/probes/sampler.yaml (config `robustness.options.sampler`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from numbers import Integral, Real
from typing import TYPE_CHECKING, Any

from harness.evaluation.probes import (ProbeContext, ProbeError, ProbeResult, mean,
                                       options_with_defaults, register_probe)

if TYPE_CHECKING:
    from harness.backbones.base import Backbone
    from harness.data.fact import Fact

_LISTS = {  # option -> (element check, requirement)
    "step_fractions": (lambda v: _real(v) and 0 < v <= 1, "numbers in (0, 1]"),
    "extra_tokens": (lambda v: _int(v) and v >= 0, "integers >= 0"),
    "block_lengths": (lambda v: _int(v) and v >= 1, "integers >= 1"),
    "temperatures": (lambda v: _real(v) and v > 0, "numbers > 0"),
    "sample_seeds": (lambda v: _int(v) and v >= 0, "integers >= 0"),
    "levels": (lambda v: _real(v) and 0 < v <= 1, "numbers in (0, 1]"),
}


def _int(v: Any) -> bool:
    return isinstance(v, Integral) and not isinstance(v, bool)


def _real(v: Any) -> bool:
    return isinstance(v, Real) and not isinstance(v, bool) and math.isfinite(v)


def parse_options(options: Mapping[str, Any]) -> dict[str, Any]:
    opts = options_with_defaults("sampler", options)
    for key, (ok, need) in _LISTS.items():
        value = opts[key]
        if not isinstance(value, list) or not all(ok(v) for v in value):
            raise ProbeError(f"robustness.options.sampler.{key}: a list of {need}, got "
                             f"{value!r}")
    if opts["temperatures"] and not opts["sample_seeds"]:
        raise ProbeError("robustness.options.sampler.sample_seeds: temperatures need at "
                         "least one seed")
    if not isinstance(opts["random_remasking"], bool):
        raise ProbeError(f"robustness.options.sampler.random_remasking: true or false, got "
                         f"{opts['random_remasking']!r}")
    if not (_int(opts["level_draws"]) and opts["level_draws"] >= 1):
        raise ProbeError(f"robustness.options.sampler.level_draws: an integer >= 1, got "
                         f"{opts['level_draws']!r}")
    return opts


def _label(x: float) -> str:
    return f"{x:g}"


def sampled_rouge(ctx: ProbeContext, facts: Sequence["Fact"], *, extra: int | None = None,
                  step_fraction: float = 1.0, block_length: int | None = None,
                  temperature: float = 0.0, remasking: str = "low_confidence",
                  seed: int | None = None) -> list[float]:
    """Per fact, the ROUGE-L recall of its answer generated with one setting changed from
    Table 1's. Rows are generated in groups of equal answer length (so each row's canvas is
    its own answer + `extra` masks and its steps a fraction of its own)."""
    from harness.diffusion.batching import encode_facts
    from harness.diffusion.sampling import DEFAULT_EXTRA_TOKENS, sample_answers
    from harness.evaluation.rouge import rouge_l_recall

    extra = DEFAULT_EXTRA_TOKENS if extra is None else extra
    encoded = encode_facts(ctx.backbone, facts)
    groups: dict[int, list[int]] = {}
    for i, e in enumerate(encoded):
        groups.setdefault(len(e.answer_ids), []).append(i)
    texts: list[str] = [""] * len(encoded)
    for n, rows in sorted(groups.items()):
        gen_length = n + extra
        base = ctx.generation.steps if ctx.generation.steps is not None else gen_length
        n_blocks = -(-gen_length // block_length) if block_length else 1
        steps = max(n_blocks, math.ceil(step_fraction * base))
        out = sample_answers(ctx.backbone, [encoded[i] for i in rows], gen_length=gen_length,
                             steps=steps, block_length=block_length, temperature=temperature,
                             seed=ctx.seed if seed is None else seed,
                             batch_size=ctx.batch_size, remasking=remasking)
        for i, text in zip(rows, out.texts):
            texts[i] = text
    return rouge_l_recall(texts, [f.answer for f in facts])


def level_logps(backbone: "Backbone", facts: Sequence["Fact"], levels: Sequence[float],
                draws: int, seed: int, batch_size: int) -> dict[float, float]:
    """Level t -> mean over facts of the mean log p (nats per token) of the answer tokens
    still masked at t, averaged over `draws` seeded reveal orders per fact (per-fact
    streams: independent of the batch)."""
    import torch

    from harness.diffusion.batching import batches, encode_facts
    from harness.diffusion.seeding import fact_generator
    from harness.evaluation.answer_logprob import token_logprobs
    from harness.timerome.levels import mask_at_level

    encoded = encode_facts(backbone, facts)
    per_fact = {t: torch.zeros(len(encoded), dtype=torch.float64) for t in levels}
    with torch.inference_mode():
        for index, batch in batches(backbone, encoded, max(1, batch_size // len(levels))):
            for draw in range(draws):
                orders = [int(batch.prompt_lengths[r]) + torch.randperm(
                    int(batch.answer_lengths[r]), generator=fact_generator(seed, e.fact.key,
                                                                           salt=draw + 1))
                          for r, e in enumerate(batch.encoded)]
                masked = [mask_at_level(batch, orders, t, backbone.mask_token_id)
                          for t in levels]
                ids = torch.cat([m[0] for m in masked])
                still = torch.cat([m[1] for m in masked])
                targets = batch.input_ids.repeat(len(levels), 1)
                logp = token_logprobs(backbone, ids, targets, still).sum(-1).cpu().double()
                per_token = (logp / still.sum(-1).cpu()).view(len(levels), len(batch))
                for j, t in enumerate(levels):
                    per_fact[t][index] += per_token[j] / draws
    return {t: float(per_fact[t].mean()) for t in levels}


@register_probe("sampler", validate=parse_options)
def sampler(ctx: ProbeContext) -> ProbeResult:
    opts = parse_options(ctx.options)
    facts = list(ctx.forget)
    if not facts:
        raise ProbeError("sampler: no forget facts")
    out: ProbeResult = {}
    for f in opts["step_fractions"]:
        out[f"steps_x{_label(f)}_rougeL"] = mean(sampled_rouge(ctx, facts, step_fraction=f))
    for n in opts["extra_tokens"]:
        out[f"extra{n}_rougeL"] = mean(sampled_rouge(ctx, facts, extra=n))
    for b in opts["block_lengths"]:
        out[f"block{b}_rougeL"] = mean(sampled_rouge(ctx, facts, block_length=b))
    if opts["random_remasking"]:
        out["random_remask_rougeL"] = mean(sampled_rouge(ctx, facts, remasking="random"))
    for temp in opts["temperatures"]:
        runs = [sampled_rouge(ctx, facts, temperature=float(temp), seed=s)
                for s in opts["sample_seeds"]]
        out[f"temp{_label(temp)}_rougeL"] = mean([mean(r) for r in runs])
        out[f"temp{_label(temp)}_rougeL_max"] = mean([max(per) for per in zip(*runs)])
    generated = [v for v in out.values() if v is not None]
    out["max_rougeL"] = max(generated) if generated else None
    for t, value in level_logps(ctx.backbone, facts, opts["levels"], opts["level_draws"],
                                ctx.seed, ctx.batch_size).items():
        out[f"logp_t{_label(t)}"] = value
    return out
