"""Stopping and collapse rules shared by the gradient baselines.

Stopping (evaluated every `eval_every` optimiser steps on the mean forget `full_mask`
log-probability per sample):
- `target`: the mean has dropped by at least `target_forget_drop` nats since the start
  (matched-efficacy comparison with TimeROME-DLM) -> converged;
- `plateau`: over the last `plateau_window` evaluations the mean moved by less than
  `plateau_rel_tol` relative to its value at the start of the window -> converged;
- `step_cap`: `max_steps` reached without either -> not converged.

Collapse (the run stops and is recorded as collapsed; nothing is raised):
- a non-finite loss;
- the mean retain log-probability per sample fell by more than `collapse_retain_drop`
  nats below its value before unlearning;
- greedy generations on a few retain prompts degenerate to one repeated token.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Sequence


@dataclass(frozen=True)
class StopDecision:
    """Why training stops; `converged` is False for the step cap and for collapse."""

    reason: str  # "target" | "plateau" | "step_cap" | "collapse"
    converged: bool
    detail: str = ""


@dataclass
class StoppingRule:
    """Target / plateau / step-cap rule over successive forget log-prob evaluations."""

    max_steps: int
    target_forget_drop: float | None = None
    plateau_window: int = 4  # evaluations
    plateau_rel_tol: float = 0.01
    history: list[tuple[int, float]] = field(default_factory=list)  # (step, forget mean)

    def __post_init__(self) -> None:
        if self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {self.max_steps}")
        if self.plateau_window < 1:
            raise ValueError(f"plateau_window must be >= 1, got {self.plateau_window}")
        if self.target_forget_drop is not None and not self.target_forget_drop > 0:
            raise ValueError(f"target_forget_drop must be > 0 nats, got {self.target_forget_drop}")

    @property
    def start(self) -> float:
        if not self.history:
            raise RuntimeError("StoppingRule: no evaluation recorded yet")
        return self.history[0][1]

    def drop(self) -> float:
        """Forget log-prob drop (nats per sample) at the latest evaluation."""
        return self.start - self.history[-1][1]

    def update(self, step: int, forget_mean: float) -> StopDecision | None:
        """Record the evaluation made after `step` optimiser steps; decide whether to stop."""
        self.history.append((step, forget_mean))
        if len(self.history) == 1:  # the evaluation before unlearning
            return None
        drop = self.drop()
        if self.target_forget_drop is not None and drop >= self.target_forget_drop:
            return StopDecision("target", True, f"forget log-prob dropped {drop:.3f} nats "
                                f">= target {self.target_forget_drop:.3f} at step {step}")
        if len(self.history) > self.plateau_window:
            then = self.history[-1 - self.plateau_window][1]
            rel = abs(forget_mean - then) / max(abs(then), 1e-8)
            if rel < self.plateau_rel_tol:
                return StopDecision("plateau", True, f"forget log-prob moved {rel:.4f} (relative) "
                                    f"over {self.plateau_window} evaluations at step {step}")
        if step >= self.max_steps:
            return StopDecision("step_cap", False, f"step cap {self.max_steps} reached with a "
                                f"forget drop of {drop:.3f} nats")
        return None


def nonfinite_loss_reason(loss: float, step: int) -> str | None:
    """Collapse reason for a NaN/inf loss, else None."""
    if math.isfinite(loss):
        return None
    return f"non-finite loss ({loss}) at step {step}"


def retain_drop_reason(retain_before: float, retain_now: float, max_drop: float,
                       step: int) -> str | None:
    """Collapse reason if the mean retain log-prob per sample fell by more than `max_drop`."""
    if not math.isfinite(retain_now):
        return f"non-finite retain log-prob ({retain_now}) at step {step}"
    drop = retain_before - retain_now
    if drop > max_drop:
        return (f"retain log-prob fell {drop:.2f} nats per sample (> {max_drop:g}) "
                f"at step {step}")
    return None


def is_degenerate(token_ids: Sequence[int], ignore: Sequence[int] = (),
                  max_share: float = 0.9, min_tokens: int = 3) -> bool:
    """True if one token makes up at least `max_share` of a generation (`ignore`d ids
    such as EOS/mask are dropped first); too-short generations are not judged."""
    kept = [t for t in token_ids if t not in set(ignore)]
    if len(kept) < min_tokens:
        return False
    top = Counter(kept).most_common(1)[0][1]
    return top / len(kept) >= max_share


def degenerate_reason(generations: Sequence[Sequence[int]], ignore: Sequence[int],
                      step: int, min_fraction: float = 0.5) -> str | None:
    """Collapse reason if at least `min_fraction` of the generations are degenerate."""
    if not generations:
        return None
    bad = sum(is_degenerate(g, ignore) for g in generations)
    if bad / len(generations) >= min_fraction:
        return (f"{bad}/{len(generations)} greedy retain generations degenerate to one "
                f"repeated token at step {step}")
    return None
