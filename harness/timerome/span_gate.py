"""The span gate (config `gate_span`): a fact's columns at one layer open only together.

With `sites: subject` a fact has one memory column per subject token s, at offset o_s from
the last subject token, each with its own cosine gate (memory.py). Alone, each column's gate
opens wherever one token's state resembles its key: a retain name that shares a first-name
token with a forget name opens that column, and the edit damages the retain answer. The span
gate asks for the whole name: column s opens at position p only when every column s' of the
same fact and layer passes its own gate at p - o_s + o_s' (the same anchor, the last subject
token, at p - o_s). A fact with one column at a layer is gated exactly as before.

Anchor columns (config `span_anchor`): with "span" every column of a fact must pass; with
"subject" only the fact's subject-token columns must, and its other columns (the `window`
sites after the subject) open wherever the subject matches at their offset, whatever their
own states (docs/measurements/memory_variants.md, "Anchored window").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from harness.timerome.sites import fact_of


@dataclass(frozen=True)
class SpanGroups:
    """One layer's columns grouped by fact and by subject offset."""

    offsets: tuple[int, ...]  # the distinct column offsets (relative to the last subject token)
    columns: tuple[torch.Tensor, ...]  # per distinct offset: the indices of its columns
    member: tuple[torch.Tensor, ...]  # per distinct offset: [columns, G] 0/1, column -> fact
    anchor_offsets: tuple[int, ...]  # the distinct offsets of the anchor columns
    anchor_columns: tuple[torch.Tensor, ...]  # per anchor offset: the indices of its anchors
    anchor_member: tuple[torch.Tensor, ...]  # per anchor offset: [anchors, G] 0/1
    sizes: torch.Tensor  # [G] anchor columns per fact (all must pass)
    n_columns: torch.Tensor  # [G] columns per fact
    group: torch.Tensor  # [n] the fact (group index) of each column
    anchor: torch.Tensor  # [n] bool: the column is one of its fact's anchors


def span_groups(names: Sequence[str], offsets: Sequence[int],
                device: torch.device | str = "cpu",
                dtype: torch.dtype = torch.float32,
                anchors: Sequence[bool] | None = None) -> SpanGroups | None:
    """The groups of one layer's columns (`names`: memory column names, `offsets`: each
    column's subject offset, `anchors`: which columns must pass for their fact's columns to
    open; None: all); None when no fact has more than one column there (the span gate is
    then the plain gate)."""
    if len(names) != len(offsets):
        raise ValueError(f"span gate: {len(names)} columns but {len(offsets)} offsets")
    anchors = [True] * len(names) if anchors is None else [bool(a) for a in anchors]
    if len(anchors) != len(names):
        raise ValueError(f"span gate: {len(names)} columns but {len(anchors)} anchor flags")
    facts: dict[str, int] = {}
    group = [facts.setdefault(fact_of(name), len(facts)) for name in names]
    if len(facts) == len(names):
        return None
    seen: dict[tuple[int, int], str] = {}
    for name, g, o in zip(names, group, offsets):
        if (g, int(o)) in seen:
            raise ValueError(f"span gate: columns '{seen[g, int(o)]}' and '{name}' of one fact "
                             f"share subject offset {int(o)} at the same layer")
        seen[g, int(o)] = name
    n_groups = len(facts)
    group_t = torch.tensor(group, dtype=torch.long)
    anchor_t = torch.tensor(anchors, dtype=torch.bool)
    sizes = torch.bincount(group_t[anchor_t], minlength=n_groups)
    if bool((sizes == 0).any()):
        fact = next(k for k, g in facts.items() if int(sizes[g]) == 0)
        raise ValueError(f"span gate: fact '{fact}' has no anchor column at this layer (with "
                         "span_anchor 'subject', a fact needs a subject-token site there)")
    offsets_t = torch.tensor([int(o) for o in offsets], dtype=torch.long)
    distinct = tuple(sorted(set(offsets_t.tolist())))
    parts = {}
    for name, rows in (("all", torch.ones_like(anchor_t)), ("anchor", anchor_t)):
        offs, columns, member = [], [], []
        for o in distinct:
            cols = ((offsets_t == o) & rows).nonzero().squeeze(1)
            if cols.numel():
                offs.append(o)
                columns.append(cols.to(device))
                member.append(torch.nn.functional.one_hot(group_t[cols], n_groups)
                              .to(device, dtype))
        parts[name] = (tuple(offs), tuple(columns), tuple(member))
    n_columns = torch.bincount(group_t, minlength=n_groups).to(device, dtype)
    return SpanGroups(*parts["all"], *parts["anchor"], sizes.to(device, dtype), n_columns,
                      group_t.to(device), anchor_t.to(device))


def _shift(x: torch.Tensor, k: int) -> torch.Tensor:
    """y[:, p] = x[:, p + k] along dim 1 ([B, W, ...]), False/0 where p + k is outside."""
    if k == 0:
        return x
    y = torch.zeros_like(x)
    width = x.shape[1]
    if abs(k) >= width:
        return y
    if k > 0:
        y[:, :width - k] = x[:, k:]
    else:
        y[:, -k:] = x[:, :width + k]
    return y


def span_open(opened: torch.Tensor, groups: SpanGroups) -> torch.Tensor:
    """opened [B, W, n] bool (each column's own gate at each position) -> [B, W, n] bool:
    column s open at p when every anchor column s' of its fact is open at p - o_s + o_s'."""
    dtype = groups.sizes.dtype
    counts = None  # [B, W, G]: at anchor a, how many of the fact's anchors pass at a + o_s
    for o, cols, member in zip(groups.anchor_offsets, groups.anchor_columns,
                               groups.anchor_member):
        part = _shift(opened.index_select(2, cols), o).to(dtype) @ member
        counts = part if counts is None else counts + part
    whole = (counts == groups.sizes).to(dtype)  # [B, W, G]: the whole span matches at anchor a
    out = torch.zeros_like(opened)
    for o, cols, member in zip(groups.offsets, groups.columns, groups.member):
        out[:, :, cols] = _shift(whole @ member.T, -o) > 0
    return out


def span_open_bound(column_opens: torch.Tensor, groups: SpanGroups | None) -> float:
    """An upper bound on the span gate's (column, position) openings from each column's own
    openings [n] over the same states: a fact's columns open only together, at most as often
    as its least-opened anchor column, so a fact contributes at most (its columns) x (that
    least count). Without groups: the columns' own total."""
    column_opens = column_opens.to(torch.float64)
    if groups is None:
        return float(column_opens.sum())
    group = groups.group.to(column_opens.device)
    anchor_opens = column_opens.masked_fill(~groups.anchor.to(column_opens.device), float("inf"))
    n_groups = int(groups.sizes.numel())
    least = torch.full((n_groups,), float("inf"), dtype=torch.float64)
    least = least.scatter_reduce(0, group, anchor_opens, reduce="amin")
    return float((least * groups.n_columns.to(torch.float64).cpu()).sum())
