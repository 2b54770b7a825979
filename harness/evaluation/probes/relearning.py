"""Relearning probe (issue 18 item 4): how much forget log-prob a few fine-tuning steps
bring back.

The model is fine-tuned as ctx hands it over (an inference-time method's hook stays
attached; a weight method's edited weights are trained further) on a small relearn set
(option `source`: a seeded fraction of ctx.forget, retain facts of the forget authors, or a
seeded retain sample; the retain pool is ctx.retain_train followed by the ctx.retain facts
not in it), then the scored forget facts (the forget facts not relearned) are scored again
with ctx.estimator. The weights are restored bitwise afterwards (the probe runs last all the
same: harness.evaluation.probes.RUN_LAST). The work: harness/evaluation/relearning.py.

Columns (nats per fact): `recovered` (forget log-prob after minus before relearning, on
the scored facts), `forget_logp_before` / `forget_logp_after`, `relearn_logp_before` /
`relearn_logp_after` (the relearned facts themselves), `final_loss`, and `n_relearn`,
`n_scored`, `steps`, `lr`. Compare a row's `recovered` with the retain model's row (the
same relearning on a model that never learned the facts).
Options (robustness.options.relearning) over harness/evaluation/probes/relearning.yaml.
"""

from __future__ import annotations

from typing import Any, Mapping

from harness.evaluation.probes import (ProbeContext, ProbeError, ProbeResult,
                                       options_with_defaults, register_probe)


def config_of(options: Mapping[str, Any]):
    """The probe's options over its defaults, typed and checked (ProbeError naming the key:
    the robustness job then exits 2 before any model work)."""
    from harness.evaluation.relearning import RelearnConfig

    try:
        return RelearnConfig.from_mapping(options_with_defaults("relearning", options),
                                          source="robustness.options.relearning")
    except ValueError as err:
        raise ProbeError(str(err)) from None


@register_probe("relearning", validate=config_of)
def relearning(ctx: ProbeContext) -> ProbeResult:
    from harness.evaluation.relearning import relearning_probe

    config = config_of(ctx.options)
    train_keys = {f.key for f in ctx.retain_train}
    pool = [*ctx.retain_train, *(f for f in ctx.retain if f.key not in train_keys)]
    result = relearning_probe(ctx.backbone, ctx.forget, pool, config, ctx.seed,
                              estimator=ctx.estimator, batch_size=ctx.batch_size)
    return result.columns()
