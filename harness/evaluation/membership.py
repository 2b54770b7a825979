"""Membership inference from the masked-diffusion likelihood (issue 18 item 3; MUSE's PrivLeak).

Members are the forget facts (trained before unlearning), non-members the holdout facts
(never trained). An attack maps a fact's per-token scores (`token_scores.TokenScores`: the
`full_mask` estimator, every answer token masked at once, so p_i conditions on the question
and the masks: the masked-diffusion counterpart of an autoregressive model's next-token
distribution; one forward, no random draw) to a membership score, HIGHER = MORE LIKELY A
MEMBER:

- `loss` (Yeom et al. 2018; the LOSS attack of MUSE and open-unlearning): minus the mean
  token NLL, (1/n) sum_i log p_i(a_i).
- `zlib` (Carlini et al. 2021, "Extracting Training Data from Large Language Models",
  section 5.2): the ratio of the log-perplexity (mean token NLL) to the zlib entropy of the
  text (bytes of `zlib.compress` of the UTF-8 answer), negated: a text the model finds
  likelier than its compressibility suggests is more likely memorised.
- `min_k` (Shi et al. 2024, "Detecting Pretraining Data from Large Language Models",
  Min-K% Prob): the mean of log p_i(a_i) over the k% answer tokens of lowest log-probability.
- `min_k_plus_plus` (Zhang et al. 2024, "Min-K%++: Improved Baseline for Detecting
  Pre-Training Data from Large Language Models", eq. 2): per token
  (log p_i(a_i) - mu_i) / sigma_i, with mu_i and sigma_i the mean and standard deviation of
  log p_i(z) for z ~ p_i; the mean of the k% lowest. sigma_i is floored at `SIGMA_FLOOR`
  (a distribution that is one-hot to float64 precision).
k% of n tokens is max(1, floor(k n)) tokens (the reference implementation's int(k n), at
least one).

AUC of an attack: P(score(member) > score(non-member)) + P(tie) / 2, the Mann-Whitney U of
the members divided by n_members * n_nonmembers (`scipy.stats.mannwhitneyu`), with the
standard error of Hanley & McNeil (1982, Radiology 143:29, eq. 2). 0.5: the attack cannot
tell forget from holdout; 1: every forget fact scores above every holdout fact; below 0.5:
the forget facts look less familiar than facts never seen (over-unlearning).
PrivLeak (Shi et al. 2024, "MUSE: Machine Unlearning Six-Way Evaluation for Language
Models"): (AUC_unlearned - AUC_retain) / AUC_retain, the retain model's AUC being the target
of exact unlearning; about 0 is good, > 0 leaks membership, < 0 over-unlearns.

Defaults: harness/evaluation/probes/membership.yaml (read by `MembershipConfig`).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml
from scipy.stats import mannwhitneyu

from harness.evaluation.config_mapping import from_mapping

if TYPE_CHECKING:  # annotation only: this module imports no torch (the probe's options are
    # checked with MembershipConfig before a model is loaded)
    from harness.evaluation.token_scores import TokenScores

SIGMA_FLOOR = 1e-12
DEFAULTS_FILE = Path(__file__).parent / "probes" / "membership.yaml"


# ---------------------------------------------------------------- attacks (registry)

Attack = Callable[["TokenScores", float], float]
ATTACKS: dict[str, Attack] = {}


def register_attack(name: str) -> Callable[[Attack], Attack]:
    def add(fn: Attack) -> Attack:
        if name in ATTACKS:
            raise ValueError(f"membership attack '{name}' registered twice")
        ATTACKS[name] = fn
        return fn
    return add


def n_lowest(n_tokens: int, k_fraction: float) -> int:
    """How many of `n_tokens` the k% lowest are: max(1, floor(k n))."""
    return max(1, math.floor(k_fraction * n_tokens + 1e-9))


def _mean_lowest(values: np.ndarray, k_fraction: float) -> float:
    return float(np.sort(values)[:n_lowest(values.size, k_fraction)].mean())


def _array(values: Any) -> np.ndarray:
    """A CPU tensor or sequence as float64 numpy."""
    return np.asarray(values, dtype=np.float64)


def zlib_entropy(text: str) -> int:
    """Bytes of the zlib-compressed UTF-8 text (Carlini et al. 2021's zlib entropy)."""
    return len(zlib.compress(text.encode("utf-8")))


@register_attack("loss")
def loss_score(scores: "TokenScores", k_fraction: float) -> float:
    """Minus the mean token NLL (LOSS; k unused)."""
    return float(_array(scores.logp).mean())


@register_attack("zlib")
def zlib_score(scores: "TokenScores", k_fraction: float) -> float:
    """Minus (mean token NLL / zlib entropy of the answer text) (k unused)."""
    return float(_array(scores.logp).mean()) / zlib_entropy(scores.answer)


@register_attack("min_k")
def min_k_score(scores: "TokenScores", k_fraction: float) -> float:
    """Mean log-probability of the k% least likely answer tokens (Min-K% Prob)."""
    return _mean_lowest(_array(scores.logp), k_fraction)


@register_attack("min_k_plus_plus")
def min_k_plus_plus_score(scores: "TokenScores", k_fraction: float) -> float:
    """Mean of the k% lowest standardised log-probabilities (log p - mu) / sigma (Min-K%++)."""
    sigma = np.maximum(_array(scores.sigma), SIGMA_FLOOR)
    return _mean_lowest((_array(scores.logp) - _array(scores.mu)) / sigma, k_fraction)


def attack_scores(token_scores: Sequence["TokenScores"], attack: str, k_fraction: float
                  ) -> np.ndarray:
    """[n] membership scores of one attack (higher = more likely a member). A non-finite
    score raises ValueError naming the attack and the facts."""
    if attack not in ATTACKS:
        raise ValueError(f"unknown membership attack '{attack}'; known: {', '.join(ATTACKS)}")
    values = np.array([ATTACKS[attack](s, k_fraction) for s in token_scores], dtype=np.float64)
    bad = [s.fact_key for s, v in zip(token_scores, values) if not math.isfinite(v)]
    if bad:
        raise ValueError(f"membership attack '{attack}': non-finite score for fact(s) "
                         f"{', '.join(bad[:5])}{' ...' if len(bad) > 5 else ''}")
    return values


# ---------------------------------------------------------------- AUC and PrivLeak

@dataclass(frozen=True)
class AUC:
    """Area under the ROC curve of members vs non-members, with its standard error."""

    auc: float
    stderr: float  # Hanley & McNeil (1982)
    n_members: int
    n_nonmembers: int


def hanley_mcneil_stderr(auc: float, n_members: int, n_nonmembers: int) -> float:
    """SE(A)^2 = [A(1-A) + (n1-1)(Q1-A^2) + (n2-1)(Q2-A^2)] / (n1 n2), Q1 = A/(2-A),
    Q2 = 2A^2/(1+A) (Hanley & McNeil 1982, eq. 2; n1 members, n2 non-members)."""
    a, n1, n2 = auc, n_members, n_nonmembers
    q1, q2 = a / (2.0 - a), 2.0 * a * a / (1.0 + a)
    var = (a * (1.0 - a) + (n1 - 1) * (q1 - a * a) + (n2 - 1) * (q2 - a * a)) / (n1 * n2)
    return math.sqrt(max(var, 0.0))


def roc_auc(members: Sequence[float] | np.ndarray, nonmembers: Sequence[float] | np.ndarray
            ) -> AUC:
    """AUC (Mann-Whitney U / (n1 n2), ties counted half) and its Hanley-McNeil SE."""
    x = np.asarray(members, dtype=np.float64)
    y = np.asarray(nonmembers, dtype=np.float64)
    if x.size == 0 or y.size == 0:
        raise ValueError(f"membership AUC needs members and non-members; got {x.size} "
                         f"member(s) and {y.size} non-member(s)")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("membership AUC: non-finite score")
    u = float(mannwhitneyu(x, y, alternative="two-sided", method="asymptotic").statistic)
    auc = u / (x.size * y.size)
    return AUC(auc, hanley_mcneil_stderr(auc, x.size, y.size), int(x.size), int(y.size))


def privleak(auc_unlearned: float, auc_retain: float | None) -> float | None:
    """MUSE's PrivLeak, (AUC_unlearned - AUC_retain) / AUC_retain; None without a retain AUC."""
    if auc_retain is None:
        return None
    if not 0.0 < auc_retain <= 1.0:
        raise ValueError(f"PrivLeak: the retain model's AUC must be in (0, 1], got {auc_retain}")
    return (auc_unlearned - auc_retain) / auc_retain


# ---------------------------------------------------------------- config and the whole probe

_DEFAULTS: dict[str, Any] = dict(yaml.safe_load(DEFAULTS_FILE.read_text(encoding="utf-8")))


@dataclass(frozen=True)
class MembershipConfig:
    """The membership probe's settings (defaults: harness/evaluation/probes/membership.yaml)."""

    k_fraction: float = _DEFAULTS["k_fraction"]
    attacks: tuple[str, ...] = tuple(_DEFAULTS["attacks"])

    def __post_init__(self) -> None:
        if not isinstance(self.attacks, (list, tuple)):
            raise ValueError(f"membership config: attacks must be a list of attack names, "
                             f"got {self.attacks!r}")
        object.__setattr__(self, "attacks", tuple(self.attacks))
        k = self.k_fraction
        if isinstance(k, bool) or not isinstance(k, (int, float)) or not 0.0 < k <= 1.0:
            raise ValueError(f"membership config: k_fraction must be a number in (0, 1], "
                             f"got {k!r}")
        unknown = [a for a in self.attacks if a not in ATTACKS]
        if unknown or not self.attacks:
            raise ValueError(f"membership config: attacks {list(self.attacks)} must be a "
                             f"non-empty list of {', '.join(ATTACKS)}")

    @classmethod
    def from_mapping(cls, overrides: Mapping[str, Any] | None = None,
                     source: str = "membership config") -> "MembershipConfig":
        """The defaults updated with `overrides` (unknown keys: ValueError naming them)."""
        return from_mapping(cls, overrides, source, "membership config")


if set(_DEFAULTS) != {f.name for f in fields(MembershipConfig)}:
    raise ValueError(f"{DEFAULTS_FILE}: keys {sorted(_DEFAULTS)} differ from MembershipConfig's "
                     f"fields {sorted(f.name for f in fields(MembershipConfig))}")


def membership_aucs(members: Sequence["TokenScores"], nonmembers: Sequence["TokenScores"],
                    config: MembershipConfig) -> dict[str, AUC]:
    """Every configured attack's AUC of `members` vs `nonmembers`."""
    return {attack: roc_auc(attack_scores(members, attack, config.k_fraction),
                            attack_scores(nonmembers, attack, config.k_fraction))
            for attack in config.attacks}


def auc_columns(aucs: Mapping[str, AUC]) -> dict[str, float]:
    """Flat columns `<attack>_auc` and `<attack>_auc_se` of every attack."""
    out: dict[str, float] = {}
    for attack, result in aucs.items():
        out[f"{attack}_auc"] = result.auc
        out[f"{attack}_auc_se"] = result.stderr
    return out
