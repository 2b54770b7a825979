"""Uncentred second moment C = E[k k^T] of an MLP output projection's inputs (the keys).

Estimated on retain text: each retain fact's prompt + answer (+ its first EOS) with the
answer and EOS masked at a random level t ~ U(eps, 1] (the states an MDLM processes),
every non-padding position contributing one key, summed batch by batch by the shared
estimator (`harness.key_covariance.KeySecondMoment`). ROME/MEMIT use C to whiten their
updates so that keys of other facts move as little as possible.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Sequence

import torch

from baselines.configs import parse_edit_config
from harness.backbone_statistics import layer_tensors, per_layer
from harness.backbones.base import Backbone
from harness.data.fact import Fact
from harness.diffusion.batching import batches, encode_facts
from harness.diffusion.loss import sample_masking
from harness.evaluation.retain_sample import seeded_subset
from harness.hooks import capture_inputs
from harness.key_covariance import KeySecondMoment
from harness.methods.base import EditRequest

KEY_MOMENT = "key_moment"  # statistics names (harness.backbone_statistics)
KEY_COUNT = "key_count"


def key_second_moments(backbone: Backbone, layers: Sequence[int], facts: Sequence[Fact],
                       max_facts: int = 256, batch_size: int = 32, seed: int = 0
                       ) -> tuple[dict[int, torch.Tensor], int]:
    """({layer: C [d_k, d_k] float64 on CPU}, number of keys) from up to `max_facts` facts."""
    if not facts:
        raise ValueError("covariance: no retain facts to estimate the key statistics from")
    chosen = seeded_subset(facts, max_facts, seed, may_be_short=True)
    encoded = encode_facts(backbone, chosen)
    gen = torch.Generator().manual_seed(seed)
    moments = {layer: KeySecondMoment() for layer in layers}
    count = 0
    modules = {layer: backbone.mlp_out_proj(layer) for layer in layers}
    with torch.inference_mode():
        for _, batch in batches(backbone, encoded, batch_size):
            lengths = batch.prompt_lengths + batch.answer_lengths + 1  # up to the first EOS
            positions = torch.arange(batch.input_ids.shape[1])[None] < lengths[:, None]
            first_eos = positions & batch.target_mask & ~batch.answer_mask
            draw = sample_masking(batch.input_ids, batch.answer_mask | first_eos,
                                  backbone.mask_token_id, gen)
            with capture_inputs(modules) as seen:
                backbone.logits(draw.input_ids.to(backbone.device))
            keep = positions.to(backbone.device)
            for layer in layers:
                moments[layer].add(seen[layer][0][keep])
            count += int(keep.sum())
    return {layer: m.value() for layer, m in moments.items()}, count


def key_moment_statistics(backbone: Backbone, retain: Sequence[Fact], max_facts: int,
                          seed: int) -> dict[str, torch.Tensor]:
    """The statistics ROME and MEMIT compute once per backbone: C at every layer (each
    layer's moment is summed on its own, so C_l is the same whichever layers are asked for)
    and the number of keys."""
    moments, count = key_second_moments(backbone, range(backbone.num_layers), retain,
                                        max_facts, seed=seed)
    return {**layer_tensors(KEY_MOMENT, moments), KEY_COUNT: torch.tensor(count)}


def retain_key_moments(request: EditRequest, layers: Sequence[int], max_facts: int
                       ) -> tuple[dict[int, torch.Tensor], int]:
    """C per layer for an edit: from `request.statistics` when the workflow computed them
    once for the backbone (`key_moment_statistics`), else estimated here."""
    stored: Mapping[str, Any] = request.statistics or {}
    moments = per_layer(KEY_MOMENT, stored)
    if moments and all(layer in moments for layer in layers):
        return ({layer: moments[layer].clone() for layer in layers},
                int(stored[KEY_COUNT]))
    return key_second_moments(request.backbone, layers, request.retain, max_facts,
                              seed=request.seed)


class KeyMomentStatistics:
    """`Method.backbone_statistics` of ROME and MEMIT: the key second moments of every layer,
    from the config's `cov_facts` retain facts."""

    name: str
    config: dict[str, Any]

    def backbone_statistics(self, backbone: Backbone, retain: Sequence[Fact], seed: int
                            ) -> dict[str, torch.Tensor]:
        parsed = parse_edit_config(self.config, self.name, extra_keys=tuple(self.config))
        return key_moment_statistics(backbone, retain, parsed.cov_facts, seed)
