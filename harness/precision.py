"""One precision policy for every method (docs/precision.md).

Why: with bf16 weights a plain AdamW step updates the bf16 weights themselves, and at the
baselines' learning rates (1e-5) every update to a weight with |w| >~ 2.6e-3 is smaller than
half a bf16 ulp and rounds away: the baselines plateau and never converge, which is a
precision artefact, not a property of the method. Real fine-tuning keeps fp32 master
weights and fp32 optimizer states and writes the rounded masters back after each step;
the gradient baselines do the same here. Every method (TimeROME included) computes in the
weights' dtype (no autocast anywhere: the same compute dtype for tracing, training and
scoring), and TF32 is set once per job, the same for all methods.

- `PrecisionPolicy`: the dtypes a run uses; `to_record()` is the record's `precision`.
- `policy_for(weight_dtype, device, gradient)`: the policy of a backbone for a method.
- `MasterWeights`: fp32 master copies of the trainable low-precision parameters, the
  parameters the optimizer steps, and the write-back after each step. With float32
  parameters (the CPU default, the embedded twins) it holds no copy and hands the
  optimizer the model's own parameters: the old path, bitwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import torch

LOW_PRECISION = (torch.bfloat16, torch.float16)
FLOAT_DTYPES = (torch.float32, torch.bfloat16, torch.float16, torch.float64)


def dtype_name(dtype: torch.dtype | None) -> str | None:
    """'bfloat16' for torch.bfloat16 (None stays None): how the record spells a dtype."""
    return None if dtype is None else str(dtype).removeprefix("torch.")


@dataclass(frozen=True)
class PrecisionPolicy:
    """The dtypes of one run. `master_dtype`/`optimizer_state_dtype` are None for a method
    that does not step the weights with an optimizer (TimeROME's solve; ROME/MEMIT, whose
    optimised value delta is float32 already)."""

    weight_dtype: torch.dtype  # dtype the backbone's parameters are stored in
    compute_dtype: torch.dtype  # dtype of every forward (tracing, training, scoring)
    master_dtype: torch.dtype | None  # dtype the optimizer steps trainable weights in
    optimizer_state_dtype: torch.dtype | None  # dtype of AdamW's moments
    tf32: bool  # TF32 matmuls / convolutions on CUDA (False on CPU: not applicable)
    device_type: str  # "cpu" | "cuda"

    def __post_init__(self) -> None:
        for name in ("weight_dtype", "compute_dtype"):
            if getattr(self, name) not in FLOAT_DTYPES:
                raise ValueError(f"PrecisionPolicy.{name}: {getattr(self, name)} is not a "
                                 f"floating dtype ({', '.join(map(str, FLOAT_DTYPES))})")
        if self.master_dtype is not None and self.master_dtype not in FLOAT_DTYPES:
            raise ValueError(f"PrecisionPolicy.master_dtype: {self.master_dtype} is not a "
                             "floating dtype")
        if self.tf32 and self.device_type != "cuda":
            raise ValueError(f"PrecisionPolicy: tf32 applies to CUDA only, device type is "
                             f"'{self.device_type}'")

    @property
    def needs_masters(self) -> bool:
        """True when the optimizer must step copies, not the stored weights."""
        return self.master_dtype is not None and self.master_dtype != self.weight_dtype

    @property
    def autocast(self) -> bool:
        """True when forwards would run in a dtype other than the weights' (never under
        `policy_for`: kept explicit so that a policy that did would be visible)."""
        return self.compute_dtype != self.weight_dtype

    def apply_tf32(self) -> None:
        """Set torch's TF32 switches to this policy (a job does this once, before any
        method runs, so that every method of every job computes alike)."""
        if self.device_type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = self.tf32
            torch.backends.cudnn.allow_tf32 = self.tf32

    def to_record(self) -> dict[str, Any]:
        """The record's `precision` field (JSON: dtype names, booleans)."""
        return {"weight_dtype": dtype_name(self.weight_dtype),
                "compute_dtype": dtype_name(self.compute_dtype),
                "master_dtype": dtype_name(self.master_dtype),
                "optimizer_state_dtype": dtype_name(self.optimizer_state_dtype),
                "master_weights": self.needs_masters,
                "autocast": self.autocast,
                "tf32": self.tf32,
                "device_type": self.device_type}


def policy_for(weight_dtype: torch.dtype, device: torch.device | str, gradient: bool,
               tf32: bool = False) -> PrecisionPolicy:
    """The policy for a backbone stored in `weight_dtype` on `device`; `gradient`: the
    method optimises the weights (GA, GradDiff, NPO): fp32 masters and fp32 AdamW states.
    Forwards compute in the weights' dtype for every method; TF32 is off by default
    (torch's own matmul default; cuDNN's default is on, which the job switches off)."""
    device_type = torch.device(device).type
    master = torch.float32 if gradient else None
    if gradient and weight_dtype == torch.float64:
        master = torch.float64  # never step in less than the weights hold
    return PrecisionPolicy(weight_dtype=weight_dtype, compute_dtype=weight_dtype,
                           master_dtype=master, optimizer_state_dtype=master,
                           tf32=tf32 and device_type == "cuda", device_type=device_type)


class MasterWeights:
    """Master copies of `params` in `master_dtype` for the parameters stored in another
    dtype; float32 parameters are their own masters (no copy, the old path bitwise).

    Use: build the optimizer on `optimizer_params()`; after `backward`, call
    `grads_to_masters()` (before clipping: the clip then reads the fp32 gradients), step
    the optimizer, then `masters_to_params()` writes the rounded masters back."""

    def __init__(self, params: Iterable[torch.nn.Parameter], master_dtype: torch.dtype | None):
        self.params = list(params)
        self.copies: dict[int, torch.Tensor] = {}
        if master_dtype is None:
            return
        for i, p in enumerate(self.params):
            if p.dtype != master_dtype:
                self.copies[i] = p.detach().to(master_dtype).clone().requires_grad_(True)

    def optimizer_params(self) -> list[torch.Tensor]:
        """What the optimizer steps: the master copy where there is one, else the param."""
        return [self.copies.get(i, p) for i, p in enumerate(self.params)]

    def grads_to_masters(self) -> None:
        """Move each copied parameter's gradient onto its master (in the master dtype) and
        free the low-precision gradient."""
        for i, master in self.copies.items():
            p = self.params[i]
            master.grad = None if p.grad is None else p.grad.detach().to(master.dtype)
            p.grad = None

    @torch.no_grad()
    def masters_to_params(self) -> None:
        """Write every master back into its parameter (rounded to the parameter's dtype)."""
        for i, master in self.copies.items():
            self.params[i].copy_(master)

    def zero_grad(self) -> None:
        for p in (*self.params, *self.copies.values()):
            p.grad = None

    @property
    def n_copies(self) -> int:
        return len(self.copies)


def split_decay(params: Sequence[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(matrices, vectors): AdamW's weight-decay group and its no-decay group."""
    return [p for p in params if p.dim() >= 2], [p for p in params if p.dim() < 2]
