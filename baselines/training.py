"""The shared training loop of the gradient baselines (GA, GradDiff, NPO).

AdamW on a masked-diffusion objective (`baselines.objectives`), linear warm-up then a
decay schedule, fixed batch size with gradient accumulation, every random draw from
generators seeded by `EditRequest.seed`. Precision (harness/precision.py,
docs/precision.md): forwards compute in the weights' dtype, as every method does; bf16 /
fp16 weights are stepped through fp32 master copies with fp32 AdamW states (float32 weights,
the CPU default, are their own masters: no copy). Every `eval_every`
optimiser steps the mean forget and retain `full_mask` log-probabilities are computed
(`harness.evaluation.answer_logprob.score_facts`) and `baselines.convergence` decides whether
to stop (target drop / plateau / step cap) or whether the model collapsed. The loop never
raises on a diverging run: it stops and records `collapsed=True` with the reason. An
out-of-memory error is never a collapse: the loop frees its gradients and optimizer state
and re-raises it, tagged with the loop's phase and step (`oom_phase`), and the job records
`status: oom` (harness.jobs.run_method).

Phases (`MethodOutcome.phase_seconds`; rules: docs/measurements/edit_timing_rules.md):
- `setup`: encodings of the method's own training data, the NPO reference, the optimizer;
- `train`: the optimiser steps;
- `convergence_eval`: the forget scoring the stopping rule reads (part of the edit time);
- `collapse_guard`: retain scoring, the degenerate-generation check and the evaluation of a
  collapsed model: the harness's guards, reported and listed in
  `MethodOutcome.excluded_phases` (not part of the edit time);
- `undo_copy` (only with `keep_original`): the CPU copy of the weights kept for `undo`,
  also excluded.
Each phase timer synchronises the CUDA device at both ends (harness.measure.timed).

`warm_up_training` (called by the job before the edit timer, through the gradient
methods' `warm_up`): one forward + backward + clip + AdamW step of the model on its forget
rows with lr 0 and zeroed gradients, on a throwaway optimizer, RNG states restored, so that
the backward and optimizer kernels' first-call costs stay out of the edit; the weights are
bitwise unchanged.
"""

from __future__ import annotations

import copy
import math
import random
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any, Iterator, Protocol, Sequence

import torch
from tqdm.auto import tqdm

from harness.backbones.base import Backbone
from harness.data.fact import Fact
from harness.diffusion.batching import EncodedFact, QABatch, collate, encode_facts
from harness.measure import bookkeeping, is_oom, timed
from harness.precision import MasterWeights, PrecisionPolicy, policy_for, split_decay
from harness.methods.base import EditRequest, MethodOutcome
from harness.methods.defaults import learning_rate
from harness.evaluation.answer_logprob import score_facts
from harness.evaluation.finite import json_safe
from harness.evaluation.retain_sample import seeded_subset

# The loop's config and its parser: torch-free, so that the workflow checks it at plan time.
from baselines.configs import SCHEDULES, TRAINING_KEYS, TrainingConfig, split_config  # noqa: F401
from baselines.convergence import (
    StopDecision,
    StoppingRule,
    degenerate_reason,
    nonfinite_loss_reason,
    retain_drop_reason,
)


def default_lr(backbone: Backbone, method: str) -> float:
    """Method `method`'s learning rate on `backbone` when its config leaves `lr` null: by
    whether the backbone was trained here (its adapter's `trained_here`), from
    harness/methods/defaults/<method>.yaml (how the rates were chosen:
    docs/measurements/lr_sweep_embedded.md)."""
    return learning_rate(method, trained_here=backbone.trained_here)


class Objective(Protocol):
    """What a gradient baseline minimises on one micro-batch."""

    needs_retain: bool

    def setup(self, backbone: Backbone) -> None: ...

    def loss(self, backbone: Backbone, forget: QABatch, retain: QABatch | None,
             generator: torch.Generator) -> torch.Tensor: ...


def gradient_policy(backbone: Backbone) -> PrecisionPolicy:
    """The precision policy of a gradient baseline on `backbone` (harness/precision.py)."""
    return policy_for(backbone.dtype, backbone.device, gradient=True,
                      tf32=_tf32_enabled(backbone.device))


def _tf32_enabled(device: torch.device) -> bool:
    """Whether the job switched TF32 on (it sets one policy for every method)."""
    return device.type == "cuda" and bool(torch.backends.cuda.matmul.allow_tf32)


@dataclass
class _PhaseClock:
    """The loop's phase timers (synchronised on CUDA), remembering which phase is running
    so that an out-of-memory error can say where it happened."""

    seconds: dict[str, float]
    device: torch.device
    current: str = "setup"
    step: int = 0

    @contextmanager
    def counted(self, name: str) -> Iterator[None]:
        self.current = name  # left as is when the body raises: the OOM handler reads it
        with timed(self.seconds, name, self.device):
            yield

    @contextmanager
    def guard(self, name: str) -> Iterator[None]:
        """A phase of the harness's bookkeeping (excluded from the edit time)."""
        self.current = name
        with bookkeeping(self.seconds, name, self.device):
            yield


def tag_oom(err: BaseException, phase: str, step: int) -> BaseException:
    """Mark an out-of-memory error with the training loop's phase and step: attributes
    `oom_phase` / `oom_step` (the job's record reads them) and an exception note."""
    if getattr(err, "oom_phase", None) is None:
        err.oom_phase = phase  # type: ignore[attr-defined]
        err.oom_step = step  # type: ignore[attr-defined]
        err.add_note(f"out of memory in the training loop's phase '{phase}' at step {step}")
    return err


def release_training_memory(model: torch.nn.Module, optimizer: torch.optim.Optimizer | None,
                            masters: MasterWeights | None) -> None:
    """Free what an interrupted loop holds beyond the model (gradients, optimizer state,
    master copies) and return the cached blocks to the device, before anything else runs."""
    model.zero_grad(set_to_none=True)
    if optimizer is not None:
        optimizer.state.clear()
        optimizer.param_groups.clear()
    if masters is not None:
        masters.copies.clear()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class _Batches:
    """Seeded batch streams: forget rows in reshuffled epochs, retain rows drawn at random."""

    def __init__(self, backbone: Backbone, forget: Sequence[EncodedFact],
                 retain: Sequence[EncodedFact], batch_size: int, seed: int):
        self.backbone = backbone
        self.forget, self.retain = list(forget), list(retain)
        self.forget_size = min(batch_size, len(self.forget))
        self.retain_size = min(batch_size, len(self.retain)) if self.retain else 0
        self.rng = random.Random(seed)
        self.order: list[int] = []

    def next_forget(self) -> QABatch:
        if len(self.order) < self.forget_size:
            fresh = list(range(len(self.forget)))
            self.rng.shuffle(fresh)
            self.order += fresh
        rows, self.order = self.order[:self.forget_size], self.order[self.forget_size:]
        return collate(self.backbone, [self.forget[i] for i in rows])

    def next_retain(self) -> QABatch:
        rows = self.rng.sample(range(len(self.retain)), self.retain_size)
        return collate(self.backbone, [self.retain[i] for i in rows])


@dataclass
class _Evaluation:
    step: int
    forget: float
    retain: float
    loss: float | None


def _generations(backbone: Backbone, prompts: Sequence[Fact]) -> list[list[int]]:
    if not prompts:
        return []
    from harness.diffusion.sampling import sample_answers

    return sample_answers(backbone, prompts).token_ids


# Phases that are the harness's bookkeeping (reported, excluded from the edit time).
UNDO_COPY = "undo_copy"
COLLAPSE_GUARD = "collapse_guard"
CONVERGENCE_EVAL = "convergence_eval"
EXCLUDED_PHASES = (UNDO_COPY, COLLAPSE_GUARD)


def mean_full_mask(backbone: Backbone, facts: Sequence[Fact], batch_size: int) -> float:
    """Mean full_mask answer log-prob per sample in nats (NaN for no facts)."""
    if not facts:
        return float("nan")
    return score_facts(backbone, facts, "full_mask", batch_size=batch_size).mean


@dataclass
class _Held:
    """What the loop allocates beyond the model, for `release_training_memory` on OOM."""

    optimizer: torch.optim.Optimizer | None = None
    masters: MasterWeights | None = None


def train_unlearning(request: EditRequest, objective: Objective, cfg: TrainingConfig,
                     method: str) -> MethodOutcome:
    """Run `objective` on `request.backbone` (in place) until a stopping/collapse rule fires.

    An out-of-memory error (torch.OutOfMemoryError, MemoryError) is re-raised after the
    loop's memory is released, tagged with the phase and step it happened in (`tag_oom`):
    it is a failed run (`status: oom`), never a collapse."""
    backbone = request.backbone
    if not request.forget:
        raise ValueError(f"method '{method}': the forget set is empty")
    if objective.needs_retain and not request.retain:
        raise ValueError(f"method '{method}': needs retain facts (EditRequest.retain is empty)")
    clock = _PhaseClock({}, backbone.device)
    held = _Held()
    try:
        return _train(request, objective, cfg, method, clock, held)
    except BaseException as err:  # noqa: BLE001 - only OOM is handled, the rest re-raised
        if not is_oom(err):
            raise
        release_training_memory(backbone.model, held.optimizer, held.masters)
        raise tag_oom(err, clock.current, clock.step)


def _train(request: EditRequest, objective: Objective, cfg: TrainingConfig, method: str,
           clock: _PhaseClock, held: _Held) -> MethodOutcome:
    backbone = request.backbone
    lr = cfg.lr if cfg.lr is not None else default_lr(backbone, method)
    phases = clock.seconds
    model = backbone.model
    policy = gradient_policy(backbone)
    original = None
    if cfg.keep_original:
        with clock.guard(UNDO_COPY):
            original = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    with clock.counted("setup"):
        forget_enc = encode_facts(backbone, request.forget)
        retain_enc = encode_facts(backbone, request.retain) if objective.needs_retain else []
        retain_eval = seeded_subset(request.retain, cfg.retain_eval_facts, request.seed,
                                    may_be_short=True) if request.retain else []
        gen_prompts = retain_eval[:cfg.generation_prompts]
        objective.setup(backbone)
        stream = _Batches(backbone, forget_enc, retain_enc, cfg.batch_size, request.seed)
        mask_gen = torch.Generator().manual_seed(request.seed + 1)
        params = [p for p in model.parameters() if p.requires_grad]
        masters = held.masters = MasterWeights(params, policy.master_dtype)
        stepped = masters.optimizer_params()
        optimizer = held.optimizer = build_optimizer(stepped, lr, cfg.weight_decay)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, cfg.lr_factor)

    rule = StoppingRule(cfg.max_steps, request.target_forget_drop, cfg.plateau_window,
                        cfg.plateau_rel_tol)
    trajectory: list[_Evaluation] = []
    gen_check = bool(gen_prompts)
    notes: list[str] = []

    def evaluate(step: int, loss: float | None, forget_phase: str = CONVERGENCE_EVAL
                 ) -> str | None:
        """Score, record, and return a collapse reason (None if healthy). The forget score
        is timed as `forget_phase` (the stopping rule's input), the rest as the guard."""
        with (clock.guard(forget_phase) if forget_phase in EXCLUDED_PHASES
              else clock.counted(forget_phase)):
            forget_mean = mean_full_mask(backbone, request.forget, cfg.score_batch_size)
        with clock.guard(COLLAPSE_GUARD):
            retain_mean = mean_full_mask(backbone, retain_eval, cfg.score_batch_size)
            trajectory.append(_Evaluation(step, forget_mean, retain_mean, loss))
            if not math.isfinite(forget_mean):
                return f"non-finite forget log-prob ({forget_mean}) at step {step}"
            if retain_eval and step > 0:
                reason = retain_drop_reason(trajectory[0].retain, retain_mean,
                                            cfg.collapse_retain_drop, step)
                if reason:
                    return reason
            if gen_check and step > 0:
                gens = _generations(backbone, gen_prompts)
                return degenerate_reason(gens, (backbone.mask_token_id,), step)
        return None

    decision: StopDecision | None = None
    collapse_reason: str | None = None
    steps = 0
    last_loss: float | None = None
    bar = tqdm(total=cfg.max_steps, desc=f"{method} {backbone.name}", unit="step",
               disable=not cfg.progress)
    try:
        collapse_reason = evaluate(0, None)
        if gen_check and collapse_reason is None:
            with clock.guard(COLLAPSE_GUARD):
                initial = degenerate_reason(_generations(backbone, gen_prompts),
                                            (backbone.mask_token_id,), 0)
            if initial:  # the model degenerates before unlearning: the check says nothing
                gen_check = False
                notes.append(f"generation check disabled: {initial}")
        if collapse_reason is None:
            rule.update(0, trajectory[-1].forget)
        model.train()
        while collapse_reason is None and decision is None:
            clock.step = steps + 1
            with clock.counted("train"):
                total = 0.0
                for _ in range(cfg.grad_accum):
                    forget = stream.next_forget()
                    retain = stream.next_retain() if objective.needs_retain else None
                    loss = objective.loss(backbone, forget, retain, mask_gen)
                    value = float(loss.detach())
                    collapse_reason = nonfinite_loss_reason(value, steps + 1)
                    if collapse_reason:
                        break
                    (loss / cfg.grad_accum).backward()
                    total += value / cfg.grad_accum
                if collapse_reason:
                    masters.zero_grad()
                    optimizer.zero_grad(set_to_none=True)
                    break
                masters.grads_to_masters()
                torch.nn.utils.clip_grad_norm_(stepped, cfg.max_grad_norm)
                optimizer.step()
                masters.masters_to_params()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                steps += 1
                last_loss = total
                bar.update(1)
                bar.set_postfix(loss=f"{total:.3f}")
            if steps % cfg.eval_every == 0 or steps >= cfg.max_steps:
                model.eval()
                collapse_reason = evaluate(steps, last_loss)
                model.train()
                if collapse_reason is None:
                    decision = rule.update(steps, trajectory[-1].forget)
    except (RuntimeError, FloatingPointError) as err:  # numerical blow-up inside a step
        if is_oom(err):  # out of memory is a failed run, not a collapse
            raise
        collapse_reason = f"{type(err).__name__} at step {steps}: {err}"
    finally:
        bar.close()
        model.eval()
        optimizer.zero_grad(set_to_none=True)

    if collapse_reason is not None:
        decision = StopDecision("collapse", False, collapse_reason)
        if trajectory[-1].step != steps:  # record where the collapsed model ended up
            try:  # reporting only: no stopping rule reads it
                evaluate(steps, last_loss, forget_phase=COLLAPSE_GUARD)
            except (RuntimeError, FloatingPointError) as err:
                if is_oom(err):
                    raise
                notes.append(f"final evaluation failed: {err}")
    assert decision is not None
    before, after = trajectory[0], trajectory[-1]
    details: dict[str, Any] = {
        "estimator": "full_mask",
        "lr": lr,
        "config": {**asdict(cfg), "lr": lr},
        "stop_reason": decision.reason,
        "stop_detail": decision.detail,
        "forget_logp_before": before.forget,
        "forget_logp_after": after.forget,
        "retain_logp_before": before.retain,
        "retain_logp_after": after.retain,
        "forget_drop": before.forget - after.forget,
        "retain_drop": before.retain - after.retain,
        "n_forget": len(request.forget),
        "n_retain_eval": len(retain_eval),
        "trajectory": [asdict(e) for e in trajectory],
        "master_weight_tensors": masters.n_copies,
        "notes": notes,
    }
    undo = (lambda: model.load_state_dict(original)) if original is not None else None
    return MethodOutcome(backbone=backbone, phase_seconds=phases, steps=steps,
                         converged=decision.converged, collapsed=collapse_reason is not None,
                         collapse_reason=collapse_reason, details=json_safe(details), undo=undo,
                         excluded_phases=tuple(p for p in EXCLUDED_PHASES if p in phases))


def build_optimizer(params: Sequence[torch.Tensor], lr: float, weight_decay: float
                    ) -> torch.optim.AdamW:
    """AdamW with weight decay on the matrices only (the loop's and the warm-up's)."""
    decay, no_decay = split_decay(params)
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=lr)


def warm_up_training(request: EditRequest, cfg: TrainingConfig) -> None:
    """One forward + backward + clip + AdamW step of `request.backbone`'s model on up to
    `cfg.batch_size` forget rows, before the edit is timed, so that the first-call costs of
    the model's backward kernels and of the optimizer (and of the master-weight path) are
    paid outside every method's edit time (docs/measurements/edit_timing_rules.md, rule 4).

    It leaves the run's results unchanged: the optimizer is a throwaway AdamW with lr 0 that
    steps zeroed gradients (the update is exactly 0, weight decay multiplies by exactly 1,
    the masters write back their own values), gradients are freed, the train/eval mode is
    restored, and the global (CPU and CUDA) RNG states are forked and restored; the mask
    draw uses its own generator."""
    backbone = request.backbone
    model = backbone.model
    params = [p for p in model.parameters() if p.requires_grad]
    if not request.forget or not params:
        return  # nothing to warm (the method's own checks report an empty forget set)
    from baselines.objectives import answer_loss

    policy = gradient_policy(backbone)
    devices = [backbone.device] if backbone.device.type == "cuda" else []
    was_training = model.training
    masters = MasterWeights(params, policy.master_dtype)
    with torch.random.fork_rng(devices=devices):
        try:
            batch = collate(backbone, encode_facts(backbone, request.forget[:cfg.batch_size]))
            optimizer = build_optimizer(masters.optimizer_params(), 0.0, cfg.weight_decay)
            model.train()
            answer_loss(backbone, batch, torch.Generator().manual_seed(0), cfg.eps).mean() \
                .backward()
            masters.grads_to_masters()
            torch.nn.utils.clip_grad_norm_(masters.optimizer_params(), cfg.max_grad_norm)
            for p in masters.optimizer_params():
                if p.grad is not None:
                    p.grad.zero_()
            optimizer.step()
            masters.masters_to_params()
        finally:
            model.train(was_training)
            masters.zero_grad()
            model.zero_grad(set_to_none=True)


def frozen_reference(backbone: Backbone) -> Backbone:
    """A frozen deep copy of the backbone's model behind a shallow copy of the adapter."""
    reference = copy.copy(backbone)
    reference.model = copy.deepcopy(backbone.model).eval()
    for p in reference.model.parameters():
        p.requires_grad_(False)
    return reference
