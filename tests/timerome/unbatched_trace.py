"""The TIE's definition computed the slow way, for tests: one full, unbatched forward per
(noise sample, restoration) of one fact at one level (no restored run starts mid-model, no
batching, no head restricted to scored rows)."""

from __future__ import annotations

from typing import Sequence

import torch

from harness.backbones.base import Backbone
from harness.data.fact import Fact
from harness.diffusion.batching import collate, encode_facts, row_width
from harness.timerome.config import TimeROMEConfig
from harness.timerome.levels import mask_at_level, reveal_orders
from harness.timerome.tracing import masked_mean_logp, noise_scale, subject_noise


class UnbatchedTrace:
    """One fact at level `level`, with the tracing config's noise draws and reveal order."""

    def __init__(self, backbone: Backbone, fact: Fact, config: TimeROMEConfig, level: float):
        self.bb = backbone
        self.encoded = encode_facts(backbone, [fact])[0]
        self.batch = collate(backbone, [self.encoded], pad_to=row_width(self.encoded))
        self.ids, self.still = mask_at_level(self.batch, reveal_orders(self.batch, config.seed),
                                             level, backbone.mask_token_id)
        self.n_samples = config.noise_samples
        self.noise = subject_noise(self.batch, self.n_samples,
                                   backbone.input_embeddings().weight.shape[1],
                                   noise_scale(backbone, config.noise_multiplier), config.seed,
                                   torch.float32)
        self.last = int(self.batch.last_subject_pos[0])
        with torch.inference_mode():
            self.clean: dict[int, torch.Tensor] = {}
            hooks = [backbone.mlp_out_proj(l).register_forward_hook(
                lambda m, i, o, l=l: self.clean.__setitem__(l, o[0].clone()))
                for l in range(backbone.num_layers)]
            try:
                backbone.logits(self.ids)
            finally:
                for h in hooks:
                    h.remove()

    def logp(self, sample: int, layer: int | None = None,
             positions: Sequence[int] = ()) -> float:
        """P of the corrupted run `sample`, with the clean MLP output of `layer` patched back
        at the absolute `positions` (none: the plain corrupted run)."""
        bb = self.bb
        hooks = [bb.input_embeddings().register_forward_hook(
            lambda m, i, o: o + self.noise[0:1, sample])]
        if layer is not None:
            at = list(positions)

            def put(m, i, o):
                o = o.clone()
                o[0, at] = self.clean[layer][at]
                return o
            hooks.append(bb.mlp_out_proj(layer).register_forward_hook(put))
        try:
            with torch.inference_mode():
                logits = bb.logits(self.ids)
        finally:
            for h in hooks:
                h.remove()
        return float(masked_mean_logp(logits[self.still], self.batch.input_ids, self.still)[0])

    def effect(self, layer: int, positions: Sequence[int]) -> float:
        """IE(layer, positions) averaged over the noise samples."""
        return sum(self.logp(s, layer, positions) - self.logp(s)
                   for s in range(self.n_samples)) / self.n_samples
