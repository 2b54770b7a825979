"""A tiny positional copy task that fixes a twin's logit-shift convention from its family's
own training objective (not from the adapter), so the adapter's shift can be checked.

Row r of a batch is the run of consecutive content ids c, c+1, ..., c+L-1 with one position
masked; the masked token is determined by its neighbours. The model is trained with the
family's *native* loss:
- "aligned": LLaDA's objective, cross-entropy of the logits at the masked position itself;
- "hf_causal_labels": the transformers causal-LM loss convention (what the class's own
  `labels=` loss does: row i-1 predicts token i), the convention AR-adapted MDLMs keep.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

SEQ_LEN = 6
N_CONTENT = 12


def content_ids(backbone) -> list[int]:
    specials = set(backbone.tokenizer.all_special_ids) | {backbone.mask_token_id}
    ids = [i for i in range(2, len(backbone.tokenizer)) if i not in specials]
    return ids[:N_CONTENT]


def copy_batch(backbone, generator: torch.Generator, batch: int = 64):
    content = torch.tensor(content_ids(backbone))
    start = torch.randint(0, N_CONTENT - SEQ_LEN + 1, (batch,), generator=generator)
    clean = content[start[:, None] + torch.arange(SEQ_LEN)[None, :]]
    pos = torch.randint(1, SEQ_LEN, (batch,), generator=generator)
    masked = torch.zeros_like(clean, dtype=torch.bool)
    masked[torch.arange(batch), pos] = True
    return clean.masked_fill(masked, backbone.mask_token_id), clean, masked


def native_loss(backbone, kind: str, noisy, clean, masked) -> torch.Tensor:
    if kind == "aligned":
        out = backbone.model(input_ids=noisy)
        logits = out if isinstance(out, torch.Tensor) else out.logits
        return F.cross_entropy(logits[masked], clean[masked])
    if kind == "hf_causal_labels":
        # The transformers causal-LM loss convention: logits at row i-1 are scored
        # against token i (what `labels=` does inside the class).
        logits = backbone.model(noisy)
        target = masked[:, 1:]
        return F.cross_entropy(logits[:, :-1][target], clean[:, 1:][target])
    raise KeyError(kind)


def train_native(backbone, kind: str, steps: int = 60, lr: float = 3e-3, seed: int = 0) -> float:
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    opt = torch.optim.Adam(backbone.model.parameters(), lr=lr)
    backbone.model.train()
    loss = torch.tensor(float("nan"))
    for _ in range(steps):
        noisy, clean, masked = copy_batch(backbone, gen)
        loss = native_loss(backbone, kind, noisy, clean, masked)
        opt.zero_grad()
        loss.backward()
        opt.step()
    backbone.model.eval()
    return float(loss.detach())


@torch.no_grad()
def read_scores(backbone, seed: int = 1) -> tuple[float, float, float]:
    """(mean log-prob of the masked token via `backbone.logits`, via the opposite shift,
    argmax accuracy via `backbone.logits`) on a fresh batch."""
    noisy, clean, masked = copy_batch(backbone, torch.Generator().manual_seed(seed), batch=128)
    aligned = backbone.logits(noisy).log_softmax(-1)
    raw = backbone.raw_logits(noisy).log_softmax(-1)
    # The opposite convention: an unshifted model read as shifted, or a shifted one read raw.
    wrong = torch.cat([raw[:, :1], raw[:, :-1]], 1) if not backbone.shifted_logits else raw
    target = clean[masked]
    right_lp = aligned[masked].gather(-1, target[:, None]).mean()
    wrong_lp = wrong[masked].gather(-1, target[:, None]).mean()
    acc = (aligned[masked].argmax(-1) == target).float().mean()
    return float(right_lp), float(wrong_lp), float(acc)
