"""Membership-inference probe (issue 18 item 3): can an attacker tell the forget facts from
facts the model never saw?

Members are ctx.forget (trained before unlearning), non-members ctx.holdout (never
trained). Each attack of harness/evaluation/membership.py (LOSS, ZLib, Min-K%, Min-K%++)
scores every fact from its per-token log-probabilities under the `full_mask` estimator
(harness/evaluation/token_scores.py: every answer token masked at once, one deterministic
forward through the edited model, hook included) whatever ctx.estimator is: the attacks are
defined per token, and `full_mask` gives each token one well-defined distribution.

Columns: `<attack>_auc` (forget vs holdout; 0.5 = indistinguishable) and `<attack>_auc_se`
(Hanley-McNeil standard error) per configured attack, `n_forget`, `n_holdout`. With no
holdout facts (real TOFU ships no holdout split) the AUC columns are None. MUSE's PrivLeak
is the report's join of a row's AUC with the retain model's row:
`harness.evaluation.membership.privleak(auc, auc_retain)`.
Options (robustness.options.membership) over harness/evaluation/probes/membership.yaml.
"""

from __future__ import annotations

from typing import Any, Mapping

from harness.evaluation.membership import MembershipConfig, auc_columns, membership_aucs
from harness.evaluation.probes import (ProbeContext, ProbeError, ProbeResult,
                                       options_with_defaults, register_probe)


def config_of(options: Mapping[str, Any]) -> MembershipConfig:
    """The probe's options over its defaults, typed and checked (ProbeError naming the key:
    the robustness job then exits 2 before any model work)."""
    try:
        return MembershipConfig.from_mapping(options_with_defaults("membership", options),
                                             source="robustness.options.membership")
    except ValueError as err:
        raise ProbeError(str(err)) from None


@register_probe("membership", validate=config_of)
def membership(ctx: ProbeContext) -> ProbeResult:
    config = config_of(ctx.options)
    counts: ProbeResult = {"n_forget": float(len(ctx.forget)),
                           "n_holdout": float(len(ctx.holdout))}
    if not ctx.forget or not ctx.holdout:
        return {**{c: None for a in config.attacks for c in (f"{a}_auc", f"{a}_auc_se")},
                **counts}
    from harness.evaluation.token_scores import full_mask_token_scores

    members = full_mask_token_scores(ctx.backbone, ctx.forget, ctx.batch_size)
    nonmembers = full_mask_token_scores(ctx.backbone, ctx.holdout, ctx.batch_size)
    return {**auc_columns(membership_aucs(members, nonmembers, config)), **counts}
