"""Membership inference: per-token scores, the four attacks, AUC with its standard error,
PrivLeak (harness.evaluation.token_scores, harness.evaluation.membership)."""

from __future__ import annotations

import random
from dataclasses import replace
from itertools import combinations

import numpy as np
import pytest
import torch

from harness.backbones.registry import load_backbone
from harness.evaluation.answer_logprob import score_facts
from harness.evaluation.membership import (
    ATTACKS,
    MembershipConfig,
    attack_scores,
    hanley_mcneil_stderr,
    membership_aucs,
    privleak,
    roc_auc,
    zlib_entropy,
)
from harness.evaluation.token_scores import (
    TokenScores,
    distribution_moments,
    full_mask_token_scores,
)
from tests.conftest import TINY_SPEC

ALL = MembershipConfig()


# ---------------------------------------------------------------- AUC and its standard error

def _pair_count_auc(x, y) -> float:
    wins = sum((a > b) + 0.5 * (a == b) for a in x for b in y)
    return wins / (len(x) * len(y))


def test_auc_is_the_pairwise_win_rate_with_ties_counted_half():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 6, 17).astype(float)  # many ties
    y = rng.integers(0, 5, 11).astype(float)
    result = roc_auc(x, y)
    assert result.auc == pytest.approx(_pair_count_auc(x, y), abs=1e-12)
    assert (result.n_members, result.n_nonmembers) == (17, 11)
    # Swapping members and non-members mirrors the AUC.
    assert roc_auc(y, x).auc == pytest.approx(1 - result.auc, abs=1e-12)


def test_separated_scores_give_auc_one_and_reversed_zero():
    members, nonmembers = np.arange(10.0) + 100, np.arange(12.0)
    assert roc_auc(members, nonmembers).auc == 1.0
    assert roc_auc(nonmembers, members).auc == 0.0
    # Shifted by three standard deviations, overlapping tails: still near 1.
    rng = np.random.default_rng(1)
    shifted = roc_auc(rng.normal(3, 1, 40), rng.normal(0, 1, 40))
    assert shifted.auc > 0.95 and shifted.stderr < 0.03


def test_identical_distributions_give_half_within_two_standard_errors():
    """300 draws of members and non-members from one distribution: the AUC lies within 2
    Hanley-McNeil standard errors of 0.5 about 95% of the time (a standard error half as
    large would cover about 68%, twice as large about 100%)."""
    rng = np.random.default_rng(2)
    trials = [roc_auc(rng.normal(size=20), rng.normal(size=25)) for _ in range(300)]
    covered = np.mean([abs(t.auc - 0.5) <= 2 * t.stderr for t in trials])
    assert 0.90 <= covered <= 0.99, covered
    assert abs(np.mean([t.auc for t in trials]) - 0.5) < 0.02


def test_hanley_mcneil_at_half_is_the_null_variance():
    # Under H0 (no ties) Var(U / n1 n2) = (n1 + n2 + 1) / (12 n1 n2); Hanley-McNeil at A = 0.5
    # gives (n1 + n2 - 1) / (12 n1 n2): equal to within 2 / (n1 + n2).
    n1, n2 = 30, 50
    exact = ((n1 + n2 + 1) / (12 * n1 * n2)) ** 0.5
    assert hanley_mcneil_stderr(0.5, n1, n2) == pytest.approx(exact, rel=0.02)
    assert hanley_mcneil_stderr(1.0, n1, n2) == 0.0


def test_auc_refuses_empty_sets_and_non_finite_scores():
    with pytest.raises(ValueError, match="0 non-member"):
        roc_auc([1.0, 2.0], [])
    with pytest.raises(ValueError, match="non-finite"):
        roc_auc([1.0, float("nan")], [0.0])


def test_privleak_is_the_relative_difference_to_the_retain_auc():
    assert privleak(0.75, 0.5) == pytest.approx(0.5)
    assert privleak(0.4, 0.5) == pytest.approx(-0.2)
    assert privleak(0.7, None) is None
    with pytest.raises(ValueError, match="retain model's AUC"):
        privleak(0.7, 0.0)


# ---------------------------------------------------------------- the attacks' definitions

def _scores(key: str, logp, mu=None, sigma=None, answer: str = "x y z") -> TokenScores:
    logp = torch.tensor(logp, dtype=torch.float64)
    mu = torch.zeros_like(logp) if mu is None else torch.tensor(mu, dtype=torch.float64)
    sigma = torch.ones_like(logp) if sigma is None else torch.tensor(sigma, dtype=torch.float64)
    return TokenScores(key, answer, logp, mu, sigma)


def test_attack_values_follow_their_definitions():
    text = "the quick brown fox"
    s = _scores("f", [-1.0, -2.0, -4.0, -0.5, -3.0], mu=[-1, -1, -2, -1, -1],
                sigma=[1, 2, 1, 0.5, 4], answer=text)
    assert ATTACKS["loss"](s, 0.2) == pytest.approx(-2.1)
    assert ATTACKS["zlib"](s, 0.2) == pytest.approx(-2.1 / zlib_entropy(text))
    assert ATTACKS["min_k"](s, 0.2) == pytest.approx(-4.0)  # 1 token of 5
    assert ATTACKS["min_k"](s, 0.4) == pytest.approx(-3.5)  # 2 tokens: -4, -3
    # z = (logp - mu) / sigma = [0, -0.5, -2, 1, -0.5]
    assert ATTACKS["min_k_plus_plus"](s, 0.2) == pytest.approx(-2.0)
    assert ATTACKS["min_k_plus_plus"](s, 0.6) == pytest.approx(-1.0)


def test_each_attack_ranks_a_constructed_set_differently():
    """Four facts on which the definitions disagree: LOSS reads the mean, Min-K% the worst
    tokens, ZLib divides by the text's compressibility, Min-K%++ standardises by the
    distribution at each position. Every pair of attacks orders the facts differently."""
    repetitive = "aaaa " * 12
    varied = "Quixotic zephyrs jab vexing lumpy"
    facts = [
        _scores("even", [-1.0] * 5, answer=varied),  # no bad token
        _scores("one_bad", [0.0, 0.0, 0.0, 0.0, -4.0], answer=varied),  # better mean
        _scores("compressible", [-0.7] * 5, answer=repetitive),  # best mean, small zlib
        # Lowest tokens in absolute terms, but typical of flat distributions there.
        _scores("flat", [-0.6, -0.6, -0.6, -0.6, -6.0], mu=[-0.5] * 4 + [-7.0],
                sigma=[0.2] * 4 + [3.0], answer=varied),
    ]
    orders = {a: tuple(np.argsort(-attack_scores(facts, a, 0.2), kind="stable"))
              for a in ATTACKS}
    for a, b in combinations(ATTACKS, 2):
        assert orders[a] != orders[b], (a, b, orders)


def test_a_non_finite_attack_score_names_the_fact():
    with pytest.raises(ValueError, match="bad_fact"):
        attack_scores([_scores("ok", [-1.0]), _scores("bad_fact", [float("nan")])], "loss", 0.2)


def test_config_defaults_and_errors():
    assert ALL.k_fraction == 0.2 and set(ALL.attacks) == set(ATTACKS)
    assert MembershipConfig.from_mapping({"k_fraction": 0.5}).k_fraction == 0.5
    with pytest.raises(ValueError, match="unknown key.*k_frac"):
        MembershipConfig.from_mapping({"k_frac": 0.5})
    with pytest.raises(ValueError, match="k_fraction"):
        MembershipConfig(k_fraction=0.0)
    with pytest.raises(ValueError, match="attacks"):
        MembershipConfig(attacks=("loss", "gradnorm"))


# ---------------------------------------------------------------- per-token scores of a model

def test_distribution_moments_match_a_direct_computation():
    logits = torch.randn(7, 50, generator=torch.Generator().manual_seed(0)) * 3
    logits[0] = -1e4  # near one-hot row: float64 keeps sigma small but non-zero
    logits[0, 3] = 30.0
    targets = torch.tensor([3, 1, 2, 3, 4, 5, 6])
    logp, mu, sigma = distribution_moments(logits, targets, chunk_rows=3)
    ref = torch.log_softmax(logits.double(), -1)
    p = ref.exp()
    for i in range(1, 7):
        m = float((p[i] * ref[i]).sum())
        s = float((p[i] * (ref[i] - m) ** 2).sum()) ** 0.5
        assert float(logp[i]) == pytest.approx(float(ref[i, targets[i]]), abs=1e-10)
        assert float(mu[i]) == pytest.approx(m, abs=1e-10)
        assert float(sigma[i]) == pytest.approx(s, abs=1e-10)
    assert float(logp[0]) == pytest.approx(0.0, abs=1e-12) and float(sigma[0]) >= 0.0
    assert bool(torch.isfinite(mu).all() and torch.isfinite(sigma).all())


def test_token_scores_add_up_to_full_mask_and_ignore_the_batch(finetuned_backbone, tiny_corpus):
    facts = tiny_corpus["full"][:12] + tiny_corpus["holdout10"]
    together = full_mask_token_scores(finetuned_backbone, facts, batch_size=32)
    alone = full_mask_token_scores(finetuned_backbone, facts[::-1], batch_size=1)[::-1]
    reference = score_facts(finetuned_backbone, facts, "full_mask").logp
    for s, a, ref, fact in zip(together, alone, reference, facts):
        assert s.fact_key == fact.key and s.answer == fact.answer.strip()
        assert s.total_logp == pytest.approx(float(ref), abs=1e-3)
        assert torch.allclose(s.logp, a.logp, atol=1e-5) and torch.allclose(s.mu, a.mu, atol=1e-5)
        assert bool((s.sigma >= 0).all()) and bool((s.logp <= 0).all())


def test_random_split_of_trained_facts_gives_auc_half(finetuned_backbone, tiny_corpus):
    """An untouched model, its 48 training facts split at random into 'forget' and
    'holdout': one distribution, so every attack's AUC is 0.5 within 2 standard errors."""
    facts = list(tiny_corpus["full"])
    random.Random(7).shuffle(facts)
    scores = full_mask_token_scores(finetuned_backbone, facts)
    aucs = membership_aucs(scores[:24], scores[24:], ALL)
    assert set(aucs) == set(ATTACKS)
    for attack, result in aucs.items():
        assert 0.05 < result.stderr < 0.15, (attack, result)
        assert abs(result.auc - 0.5) <= 2 * result.stderr, (attack, result)


def test_trained_facts_are_told_from_holdout_and_leak_against_the_retain_model(
        finetuned_backbone, retain_checkpoint_dir, tiny_corpus):
    """forget10 is in the fine-tuned model's training set and not in the retain model's;
    holdout10 is in neither. Every attack separates forget from holdout on the fine-tuned
    model (AUC >= 0.9, 5 vs 5 facts), and the fine-tuned model's PrivLeak against the
    retain model is clearly positive: it has not forgotten."""
    forget, holdout = tiny_corpus["forget10"], tiny_corpus["holdout10"]
    trained = membership_aucs(full_mask_token_scores(finetuned_backbone, forget),
                              full_mask_token_scores(finetuned_backbone, holdout), ALL)
    retain_model = load_backbone(replace(TINY_SPEC, path=str(retain_checkpoint_dir)))
    retained = membership_aucs(full_mask_token_scores(retain_model, forget),
                               full_mask_token_scores(retain_model, holdout), ALL)
    for attack in ATTACKS:
        assert trained[attack].auc >= 0.9, (attack, trained[attack])
        assert privleak(trained[attack].auc, retained[attack].auc) > 0.15, (
            attack, trained[attack], retained[attack])


def test_the_membership_probe_returns_checked_columns(finetuned_backbone, tiny_corpus):
    from harness.evaluation.probes import ProbeContext, run_probe

    ctx = ProbeContext(backbone=finetuned_backbone, method="no_edit", method_kind="reference",
                       forget=tuple(tiny_corpus["forget10"]), retain=(), retain_train=(),
                       holdout=tuple(tiny_corpus["holdout10"]), estimator="elbo",
                       batch_size=4, seed=0)
    columns = run_probe("membership", ctx)
    assert set(columns) == ({f"{a}_{c}" for a in ATTACKS for c in ("auc", "auc_se")}
                            | {"n_forget", "n_holdout"})
    assert columns["loss_auc"] >= 0.9 and columns["n_holdout"] == 5.0
    # k = 100%: Min-K% averages every token, i.e. it is LOSS.
    every = run_probe("membership", replace(ctx, options={"attacks": ["min_k"],
                                                          "k_fraction": 1.0}))
    assert set(every) == {"min_k_auc", "min_k_auc_se", "n_forget", "n_holdout"}
    assert every["min_k_auc"] == pytest.approx(columns["loss_auc"])
    # No holdout split (real TOFU): not measurable, not an error.
    none = run_probe("membership", replace(ctx, holdout=()))
    assert none["loss_auc"] is None and none["n_holdout"] == 0.0


def test_bad_membership_options_are_probe_errors():
    from harness.evaluation.probes import ProbeError, validate_probe_options

    validate_probe_options("membership", {"k_fraction": 0.1, "attacks": ["loss"]})
    for options, message in (({"k": 0.1}, "unknown key\\(s\\) k"),
                             ({"k_fraction": 1.5}, "k_fraction must be"),
                             ({"attacks": "loss"}, "attacks must be a list"),
                             ({"attacks": ["gradnorm"]}, "attacks .* must be")):
        with pytest.raises(ProbeError, match=f"robustness.options.membership: {message}"):
            validate_probe_options("membership", options)
