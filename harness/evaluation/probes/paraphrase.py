"""Paraphrase probe: the forget facts asked with their `paraphrased_question`.

An edit that only memorised the trained phrasing (its effect keyed to the exact question
tokens) leaves the answer intact under a paraphrase; one that removed the knowledge does
not. Columns (the row's Δ against the fine-tuned model is taken by the report):

- `logp`: mean answer log-prob (nats per answer; ctx's estimator, Table 1's full_mask by
  default) with the paraphrased question;
- `rougeL`: mean ROUGE-L recall of the greedy answer to the paraphrased question
  (Table 1's generation);
- `n_facts`: forget facts scored; `n_skipped`: forget facts without a paraphrased question
  (TOFU ships one for every record of `forget*_perturbed`; a fact the perturbed file lacks
  is skipped and counted here). No fact with a paraphrase is an error naming the split.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Mapping

from harness.evaluation.probes import (ProbeContext, ProbeError, ProbeResult, forget_logp,
                                       greedy_rouge, options_with_defaults, register_probe)


def validate(options: Mapping[str, Any]) -> None:
    options_with_defaults("paraphrase", options)  # no options: any key is unknown


@register_probe("paraphrase", validate=validate)
def paraphrase(ctx: ProbeContext) -> ProbeResult:
    validate(ctx.options)
    having = [f for f in ctx.forget if f.paraphrased_question]
    if not having:
        raise ProbeError(f"paraphrase: none of the {len(ctx.forget)} forget facts of "
                         f"{ctx.forget_split or 'the forget split'} has a paraphrased_question "
                         f"(the corpus's perturbed file for it is missing or has none)")
    asked = [replace(f, question=f.paraphrased_question) for f in having]
    return {"logp": forget_logp(ctx, asked), "rougeL": greedy_rouge(ctx, asked),
            "n_facts": float(len(having)), "n_skipped": float(len(ctx.forget) - len(having))}
