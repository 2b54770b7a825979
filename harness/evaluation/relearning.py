"""Relearning: how much forgotten knowledge a few fine-tuning steps bring back (issue 18 item 4).

The unlearned model (an inference-time edit's hook left attached: the attacker fine-tunes
the model as it is served) is fine-tuned for `steps` AdamW steps with the masked-diffusion
SFT loss (`harness.diffusion.loss.sft_loss`, LLaDA's objective, the loss the backbones were
fine-tuned with) on a small relearn set, chosen by `source` (registry `RELEARN_SETS`):

- `forget`: a seeded fraction of the forget set; the other forget facts are scored (Deeb &
  Roger 2024, "Do Unlearning Methods Remove Information from Language Model Weights?":
  fine-tune on some forgotten facts, test on the held-out rest);
- `retain_same_author`: retain facts of the forget set's authors (related knowledge, as in
  Hu et al. 2024, "Jogging the Memory of Unlearned LLMs Through Targeted Relearning
  Attacks"); every forget fact is scored;
- `retain`: a seeded sample of retain facts (benign fine-tuning); every forget fact is scored.

Reported: the mean answer log-prob per fact (nats) of the scored forget facts before and
after relearning, `recovered` = after - before, the same for the relearn facts themselves,
and the final loss. The weights (every state-dict tensor), the `requires_grad` flags, the
gradients and the train/eval mode are restored afterwards, also on an error, so the model
leaves the probe bitwise as it came in (an edit memory's fused weight is rebuilt from the
restored weight: `harness.timerome.memory.FusedLinear`). Every draw comes from the seed
(fact choice `retain_sample.seeded_blocks`, batch order, masking generator, and the global
torch RNG forked and seeded for anything else).

Defaults: harness/evaluation/probes/relearning.yaml (`RelearnConfig`). The learning rate
of the twins (1e-3) was chosen with `relearning_probe` on the default workflow's fine-tuned
and retain models of llada-8b-base-twin (forget01, 10 facts: 2 relearned, 8 scored; gradient
ascent at its defaults; recovered nats per fact, measured 2026-12-02): after gradient ascent
(forget log-prob -1.5 -> -48.4), 1.9 at lr 1e-4 and 10 steps, 6.7 at 1e-4 and 30 steps, 25.7
at 1e-3 and 10 steps, 29.1 at 1e-3 and 30 steps; the retain model (never trained on the
facts) relearning the same way: +0.1, -0.3, -1.9, -7.7. At 1e-3 the relearned facts
themselves are fully learned (-53.0 -> -0.03) in 10 steps.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
import yaml

from harness.backbones.base import Backbone
from harness.data.fact import Fact
from harness.diffusion.batching import collate, encode_facts
from harness.diffusion.loss import sft_loss
from harness.evaluation.answer_logprob import score_facts
from harness.evaluation.retain_sample import seeded_blocks
from harness.evaluation.config_mapping import from_mapping

DEFAULTS_FILE = Path(__file__).parent / "probes" / "relearning.yaml"
_DEFAULTS: dict[str, Any] = dict(yaml.safe_load(DEFAULTS_FILE.read_text(encoding="utf-8")))


# ---------------------------------------------------------------- relearn sets (registry)

RelearnSet = Callable[[Sequence[Fact], Sequence[Fact], int, int],
                      tuple[list[Fact], list[Fact]]]
RELEARN_SETS: dict[str, RelearnSet] = {}


def register_relearn_set(name: str) -> Callable[[RelearnSet], RelearnSet]:
    def add(fn: RelearnSet) -> RelearnSet:
        if name in RELEARN_SETS:
            raise ValueError(f"relearn set '{name}' registered twice")
        RELEARN_SETS[name] = fn
        return fn
    return add


@register_relearn_set("forget")
def forget_fraction(forget: Sequence[Fact], retain: Sequence[Fact], n: int, seed: int
                    ) -> tuple[list[Fact], list[Fact]]:
    """(n seeded forget facts to relearn, the other forget facts to score)."""
    if n >= len(forget):
        raise ValueError(f"relearning: {n} relearn fact(s) from a forget set of "
                         f"{len(forget)} leaves no forget fact to score")
    relearn, scored = seeded_blocks(forget, [n, len(forget) - n], seed)
    return relearn, scored


@register_relearn_set("retain_same_author")
def retain_same_author(forget: Sequence[Fact], retain: Sequence[Fact], n: int, seed: int
                       ) -> tuple[list[Fact], list[Fact]]:
    """(up to n seeded retain facts of the forget authors, every forget fact)."""
    authors = {f.author_id for f in forget}
    pool = [f for f in retain if f.author_id in authors]
    if not pool:
        raise ValueError(f"relearning: no retain fact shares an author with the forget set "
                         f"(authors {sorted(authors)}); use source 'forget' or 'retain'")
    return seeded_blocks(pool, [n], seed, last_may_be_short=True)[0], list(forget)


@register_relearn_set("retain")
def retain_sample(forget: Sequence[Fact], retain: Sequence[Fact], n: int, seed: int
                  ) -> tuple[list[Fact], list[Fact]]:
    """(up to n seeded retain facts, every forget fact)."""
    if not retain:
        raise ValueError("relearning: source 'retain' needs retain facts (none given)")
    return seeded_blocks(retain, [n], seed, last_may_be_short=True)[0], list(forget)


# ---------------------------------------------------------------- config

@dataclass(frozen=True)
class RelearnConfig:
    """The relearning probe's settings (defaults: harness/evaluation/probes/relearning.yaml)."""

    source: str = _DEFAULTS["source"]
    fraction: float = _DEFAULTS["fraction"]
    n_facts: int | None = _DEFAULTS["n_facts"]
    steps: int = _DEFAULTS["steps"]
    lr: float | None = _DEFAULTS["lr"]
    lr_trained_here: float = _DEFAULTS["lr_trained_here"]
    lr_hub: float = _DEFAULTS["lr_hub"]
    batch_size: int = _DEFAULTS["batch_size"]
    weight_decay: float = _DEFAULTS["weight_decay"]
    max_grad_norm: float = _DEFAULTS["max_grad_norm"]
    eps: float = _DEFAULTS["eps"]

    def __post_init__(self) -> None:
        def number(v: Any) -> bool:
            return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

        def integer(v: Any) -> bool:
            return isinstance(v, int) and not isinstance(v, bool)

        rules = {
            "source": (self.source in RELEARN_SETS, f"one of {', '.join(RELEARN_SETS)}"),
            "fraction": (number(self.fraction) and 0 < self.fraction <= 1, "in (0, 1]"),
            "n_facts": (self.n_facts is None or (integer(self.n_facts) and self.n_facts >= 1),
                        "null or an integer >= 1"),
            "steps": (integer(self.steps) and self.steps >= 0, "an integer >= 0"),
            "lr": (self.lr is None or (number(self.lr) and self.lr > 0), "null or > 0"),
            "lr_trained_here": (number(self.lr_trained_here) and self.lr_trained_here > 0,
                                "> 0"),
            "lr_hub": (number(self.lr_hub) and self.lr_hub > 0, "> 0"),
            "batch_size": (integer(self.batch_size) and self.batch_size >= 1,
                           "an integer >= 1"),
            "weight_decay": (number(self.weight_decay) and self.weight_decay >= 0, ">= 0"),
            "max_grad_norm": (number(self.max_grad_norm) and self.max_grad_norm > 0, "> 0"),
            "eps": (number(self.eps) and 0 <= self.eps < 1, "in [0, 1)"),
        }
        bad = [f"{key} must be {need}, got {getattr(self, key)!r}"
               for key, (ok, need) in rules.items() if not ok]
        if bad:
            raise ValueError("relearning config: " + "; ".join(bad))

    @classmethod
    def from_mapping(cls, overrides: Mapping[str, Any] | None = None,
                     source: str = "relearning config") -> "RelearnConfig":
        """The defaults updated with `overrides` (unknown keys: ValueError naming them)."""
        return from_mapping(cls, overrides, source, "relearning config")

    def n_relearn(self, n_forget: int) -> int:
        """Relearn facts: `n_facts`, else max(1, floor(fraction * n_forget))."""
        if self.n_facts is not None:
            return self.n_facts
        return max(1, math.floor(self.fraction * n_forget + 1e-9))

    def learning_rate(self, backbone: Backbone) -> float:
        """`lr`, else `lr_trained_here` or `lr_hub` by the backbone's `trained_here`."""
        if self.lr is not None:
            return float(self.lr)
        return float(self.lr_trained_here if backbone.trained_here else self.lr_hub)


if set(_DEFAULTS) != {f.name for f in fields(RelearnConfig)}:
    raise ValueError(f"{DEFAULTS_FILE}: keys {sorted(_DEFAULTS)} differ from RelearnConfig's "
                     f"fields {sorted(f.name for f in fields(RelearnConfig))}")


# ---------------------------------------------------------------- weights kept and restored

@contextmanager
def restored_weights(backbone: Backbone) -> Iterator[None]:
    """Run the block, then put back every state-dict tensor (a CPU copy taken on entry),
    the `requires_grad` flags, the gradients (as they were) and the train/eval mode."""
    model = backbone.model
    saved = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    flags = [p.requires_grad for p in model.parameters()]
    grads = [p.grad for p in model.parameters()]
    training = model.training
    try:
        yield
    finally:
        with torch.no_grad():
            model.load_state_dict(saved)
        for p, flag, grad in zip(model.parameters(), flags, grads):
            p.requires_grad_(flag)
            p.grad = grad
        model.train(training)


@contextmanager
def _seeded_global_rng(backbone: Backbone, seed: int) -> Iterator[None]:
    device = backbone.device
    cuda = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        yield


# ---------------------------------------------------------------- the fine-tuning steps

def relearn(backbone: Backbone, facts: Sequence[Fact], config: RelearnConfig, seed: int
            ) -> list[float]:
    """Fine-tune `backbone` in place on `facts` for `config.steps` AdamW steps (every
    parameter trained, gradient clipped, constant rate); returns the loss of each step.
    Batches cycle through the facts in seeded reshuffled epochs. A non-finite loss raises
    FloatingPointError naming the step (the caller restores the weights)."""
    if not facts:
        raise ValueError("relearning: the relearn set is empty")
    model = backbone.model
    encoded = encode_facts(backbone, facts)
    size = min(config.batch_size, len(encoded))
    order_rng = random.Random(seed)
    mask_gen = torch.Generator().manual_seed(seed + 1)
    params = list(model.parameters())
    for p in params:
        p.requires_grad_(True)
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate(backbone),
                                  weight_decay=config.weight_decay)
    order: list[int] = []
    losses: list[float] = []
    model.train()
    with _seeded_global_rng(backbone, seed):
        for step in range(1, config.steps + 1):
            if len(order) < size:
                fresh = list(range(len(encoded)))
                order_rng.shuffle(fresh)
                order += fresh
            rows, order = order[:size], order[size:]
            batch = collate(backbone, [encoded[i] for i in rows])
            loss = sft_loss(backbone, batch, mask_gen, config.eps).mean()
            value = float(loss.detach())
            if not math.isfinite(value):
                raise FloatingPointError(f"relearning: non-finite loss {value} at step {step}")
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(value)
    model.eval()
    return losses


# ---------------------------------------------------------------- the probe

@dataclass(frozen=True)
class RelearnResult:
    """Mean answer log-probs per fact (nats) before and after relearning."""

    source: str
    n_relearn: int
    n_scored: int
    steps: int
    lr: float
    forget_logp_before: float  # scored forget facts (not relearned)
    forget_logp_after: float
    relearn_logp_before: float  # the relearn facts themselves
    relearn_logp_after: float
    final_loss: float | None

    @property
    def recovered(self) -> float:
        """Forget log-prob that came back: after minus before (nats per fact)."""
        return self.forget_logp_after - self.forget_logp_before

    def columns(self) -> dict[str, float | None]:
        """Every number as a column (the source is a string: not one), plus `recovered`."""
        values = {k: v for k, v in asdict(self).items() if k != "source"}
        values["recovered"] = self.recovered
        return {k: (None if v is None else float(v)) for k, v in values.items()}


def relearning_probe(backbone: Backbone, forget: Sequence[Fact], retain: Sequence[Fact],
                     config: RelearnConfig, seed: int, estimator: str = "full_mask",
                     batch_size: int = 32) -> RelearnResult:
    """Choose the relearn and scored facts, score, relearn, score again, restore the
    weights; the backbone leaves as it came in."""
    if not forget:
        raise ValueError("relearning: the forget set is empty")
    relearn_facts, scored = RELEARN_SETS[config.source](
        forget, retain, config.n_relearn(len(forget)), seed)

    def mean_logp(facts: Sequence[Fact]) -> float:
        value = score_facts(backbone, facts, estimator, batch_size=batch_size, seed=seed).mean
        if not math.isfinite(value):
            raise FloatingPointError(f"relearning: non-finite {estimator} log-prob")
        return value

    before = mean_logp(scored), mean_logp(relearn_facts)
    with restored_weights(backbone):
        losses = relearn(backbone, relearn_facts, config, seed)
        after = mean_logp(scored), mean_logp(relearn_facts)
    return RelearnResult(config.source, len(relearn_facts), len(scored), config.steps,
                         config.learning_rate(backbone), before[0], after[0], before[1],
                         after[1], losses[-1] if losses else None)
