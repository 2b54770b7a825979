"""Retain states for the gate: whole sequences, in order, with their lengths."""

from __future__ import annotations

import torch

from harness.timerome.retain_stats import kept_sequences, retain_keys, retain_states


def test_kept_sequences_are_every_one_when_they_fit_else_the_most_evenly_spaced_that_fit():
    lengths = torch.tensor([4, 9, 3, 7, 5, 6, 8, 2, 5, 4])
    assert torch.equal(kept_sequences(lengths, 53), torch.arange(10))
    kept = kept_sequences(lengths, 30)
    assert int(lengths[kept].sum()) <= 30
    assert kept[0] == 0 and kept[-1] == 9  # spread over the whole set
    more = torch.linspace(0, 9, kept.numel() + 1).round().long().unique()
    assert int(lengths[more].sum()) > 30  # one more evenly spaced sequence would not fit
    assert kept_sequences(lengths, 1).numel() == 1


def test_retain_states_keep_whole_sequences_of_the_full_set_of_states(tiny_backbone,
                                                                       forget_retain):
    _, retain = forget_retain
    full = retain_states(tiny_backbone, retain, [0, 1], max_rows=10 ** 9)
    rows = retain_keys(tiny_backbone, retain, [0, 1], max_rows=10 ** 9)
    assert int(full.lengths.sum()) == full.keys[0].shape[0] > 60
    assert torch.equal(full.keys[0], rows[0])  # the same rows in the same order
    few = retain_states(tiny_backbone, retain, [0, 1], max_rows=60)
    kept = kept_sequences(full.lengths, 60)
    assert torch.equal(few.lengths, full.lengths[kept])
    parts = full.keys[1].split(full.lengths.tolist())
    assert torch.equal(few.keys[1], torch.cat([parts[i] for i in kept.tolist()]))
