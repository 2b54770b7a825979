"""The fine-tuning loop: AdamW on the LLaDA SFT loss, warm-up + decay, seeded shuffling."""

from __future__ import annotations

import math
import time
from typing import Callable, Sequence

import torch
from tqdm.auto import tqdm

from harness.backbones.base import Backbone
from harness.data.fact import Fact
from harness.diffusion.batching import collate, encode_facts
from harness.diffusion.loss import sft_loss
from harness.finetune.config import FinetuneConfig, FinetuneReport


def _cosine(progress: float) -> float:
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def _linear(progress: float) -> float:
    return 1.0 - progress


SCHEDULES: dict[str, Callable[[float], float]] = {"cosine": _cosine, "linear": _linear}


def lr_factor(step: int, total: int, cfg: FinetuneConfig) -> float:
    """Multiplier of cfg.lr at optimiser step `step` (0-based) of `total`."""
    try:
        decay = SCHEDULES[cfg.schedule]
    except KeyError:
        raise ValueError(f"unknown lr schedule '{cfg.schedule}'; known: "
                         f"{', '.join(SCHEDULES)}") from None
    warmup = int(round(cfg.warmup_ratio * total))
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * decay(min(1.0, progress))


def epoch_batches(lengths: Sequence[int], batch_size: int, length_window: int,
                  generator: torch.Generator) -> list[list[int]]:
    """One epoch's batches (indices into `lengths`): a seeded shuffle cut into windows of
    `length_window` batches, each window sorted by length (stable) and cut into batches,
    then the batch order shuffled. Every index appears exactly once."""
    order = torch.randperm(len(lengths), generator=generator).tolist()
    window = batch_size * length_window
    out: list[list[int]] = []
    for start in range(0, len(order), window):
        part = sorted(order[start:start + window], key=lambda i: lengths[i])
        out += [part[i:i + batch_size] for i in range(0, len(part), batch_size)]
    if length_window > 1:
        out = [out[i] for i in torch.randperm(len(out), generator=generator).tolist()]
    return out


def finetune(backbone: Backbone, facts: Sequence[Fact], cfg: FinetuneConfig = FinetuneConfig(),
             progress: bool = True) -> FinetuneReport:
    """Train `backbone.model` in place on `facts` (question -> answer) with the SFT loss."""
    if not facts:
        raise ValueError("finetune: no training facts")
    encoded = encode_facts(backbone, facts)
    model = backbone.model
    device = backbone.device
    use_bf16 = cfg.bf16 and device.type == "cuda"
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.dim() >= 2 else no_decay).append(p)
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}],
                                  lr=cfg.lr, betas=cfg.betas)
    lengths = [len(e.prompt_ids) + len(e.answer_ids) for e in encoded]  # for length grouping
    n_batches = math.ceil(len(encoded) / cfg.batch_size)  # windows hold whole batches
    total_steps = math.ceil(n_batches / cfg.grad_accum) * cfg.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, total_steps, cfg))
    shuffle_gen = torch.Generator().manual_seed(cfg.seed)
    mask_gen = torch.Generator().manual_seed(cfg.seed + 1)
    epoch_losses: list[float] = []
    steps = 0
    start, cpu_start = time.perf_counter(), time.process_time()
    model.train()
    bar = tqdm(total=cfg.epochs * n_batches, desc=f"finetune {backbone.name}", disable=not progress,
               unit="batch")
    try:
        for _ in range(cfg.epochs):
            total, rows = 0.0, 0
            for i, indices in enumerate(epoch_batches(lengths, cfg.batch_size,
                                                      cfg.length_window, shuffle_gen)):
                batch = collate(backbone, [encoded[j] for j in indices], min_eos=cfg.min_eos)
                with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_bf16):
                    per_row = sft_loss(backbone, batch, mask_gen, cfg.eps)
                (per_row.mean() / cfg.grad_accum).backward()
                total += float(per_row.detach().sum())
                rows += len(batch)
                if (i + 1) % cfg.grad_accum == 0 or i + 1 == n_batches:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                    optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
                    steps += 1
                bar.update(1)
                bar.set_postfix(loss=f"{total / rows:.3f}")
            epoch_losses.append(total / rows)
    finally:
        bar.close()
        model.eval()
    return FinetuneReport(config=cfg.to_dict(), n_facts=len(encoded), steps=steps,
                          seconds=time.perf_counter() - start, epoch_losses=epoch_losses,
                          device=str(device), cpu_seconds=time.process_time() - cpu_start)
