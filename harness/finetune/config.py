"""Configuration and report of TOFU-style masked-diffusion fine-tuning."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from harness.diffusion.batching import MIN_EOS


@dataclass(frozen=True)
class FinetuneConfig:
    """Hyper-parameters of `finetune`.

    The defaults are the recipe chosen by measurement for the default twins (EMBEDDED_OPTIONS:
    size "narrow" = 6 layers, d_model 32; 2048-token BPE) on the default synthetic corpus
    (100 authors x 10 facts + 100 general facts, "object" answers); the measurements, their
    commands and what the recipe does not reach are in docs/measurements/twin_sizes.md.
    `eps` = 0.6 floors the masking level (t ~ U(0.6, 1]): training concentrates on the
    heavily masked inputs that full_mask scoring and greedy generation start from, and the
    LLaDA-family twins memorise in 100 epochs what took them 120-160 at eps 0.3
    (docs/measurements/twin_sizes.md, "Sweep 3"). LLaDA's own SFT uses eps = 1e-3 (pass it
    for the real backbones)."""

    epochs: int = 100
    lr: float = 6e-3
    weight_decay: float = 0.01
    batch_size: int = 16
    warmup_ratio: float = 0.05
    grad_accum: int = 1
    seed: int = 0
    max_grad_norm: float = 1.0
    schedule: str = "cosine"  # "cosine" | "linear" decay after warm-up (see loop.SCHEDULES)
    min_lr_ratio: float = 0.05  # final lr as a fraction of `lr`
    eps: float = 0.6  # t ~ U(eps, 1]
    bf16: bool = True  # bf16 autocast, only ever used on CUDA
    betas: tuple[float, float] = (0.9, 0.98)
    # length_window > 1 cuts batches from windows of that many batches' worth of shuffled
    # facts sorted by length (less padding: an epoch of the 6x64 twin went 3.3 -> 2.4 s).
    # It is off by default: with little EOS padding the model rarely learns to end an answer
    # inside a longer masked region, which greedy generation asks of it, and ROUGE-L fell
    # (6x32 twin, 100 epochs: 0.72/0.65 forget/retain with it, 0.82/0.93 without).
    # min_eos = every row ends with at least that many EOS targets (5 restored ROUGE-L only
    # in part, 0.81/0.71, and hurt the full_mask log-prob); see docs/measurements/twin_sizes.md.
    length_window: int = 1
    min_eos: int = MIN_EOS

    def __post_init__(self) -> None:
        checks = {"epochs": self.epochs >= 1, "lr": self.lr > 0, "batch_size": self.batch_size >= 1,
                  "grad_accum": self.grad_accum >= 1, "warmup_ratio": 0 <= self.warmup_ratio < 1,
                  "weight_decay": self.weight_decay >= 0, "max_grad_norm": self.max_grad_norm > 0,
                  "min_lr_ratio": 0 <= self.min_lr_ratio <= 1, "length_window": self.length_window >= 1,
                  "min_eos": self.min_eos >= 1}
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"invalid FinetuneConfig field(s): {', '.join(bad)} ({self})")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# Options of the default twin's initial model (BackboneSpec.options) that go with the
# FinetuneConfig defaults above.
EMBEDDED_OPTIONS: dict[str, Any] = {"size": "narrow", "vocab_size": 2048}


@dataclass
class FinetuneReport:
    """What a fine-tuning run did and how long it took."""

    config: dict[str, Any]
    n_facts: int
    steps: int
    seconds: float  # wall-clock seconds of the training loop
    epoch_losses: list[float]  # mean per-row SFT loss of each epoch
    device: str
    splits: dict[str, int] = field(default_factory=dict)  # training facts per source split
    excluded_splits: list[str] = field(default_factory=list)
    excluded_facts: int = 0
    backbone: dict[str, Any] = field(default_factory=dict)
    checkpoint_dir: str | None = None
    cpu_seconds: float = 0.0  # process CPU time of the loop (all threads)

    @property
    def final_loss(self) -> float:
        return self.epoch_losses[-1] if self.epoch_losses else float("nan")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["final_loss"] = self.final_loss
        return out
