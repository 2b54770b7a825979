"""The cheaper tracing variants (issue 16): `restore_span: subject` restores every subject
token of a fact in one run (ROME's window over the subject); `tie_facts: K` restores only a
seeded sample of K facts and gives the others the sample's peak layer. Their numbers are
checked against full forwards and against the full trace, not against themselves."""

from __future__ import annotations

import pytest
import torch

from harness.diffusion.batching import collate, encode_facts, row_width
from harness.methods.base import MethodConfigError
from harness.timerome.config import TimeROMEConfig
from harness.timerome.levels import mask_at_level, reveal_orders
from harness.timerome.tracing import (masked_mean_logp, noise_scale, subject_noise,
                                      trace_facts, traced_sample)

FAST = dict(times=(1.0, 0.5), noise_samples=2, precondition="none", gate=False)


def test_subject_span_effect_equals_a_full_forward_that_patches_every_subject_token(
        tiny_backbone, forget_retain):
    forget, _ = forget_retain
    bb = tiny_backbone
    config = TimeROMEConfig(times=(0.5,), noise_samples=2, positions="subject",
                            restore_span="subject", trace_batch_rows=3)
    trace = trace_facts(bb, forget[:1], config)
    encoded = encode_facts(bb, forget[:1])[0]
    subject = list(encoded.subject_positions)
    assert len(subject) >= 2  # a real window, not one token
    batch = collate(bb, [encoded], pad_to=row_width(encoded))
    ids, still = mask_at_level(batch, reveal_orders(batch, config.seed), 0.5, bb.mask_token_id)
    noise = subject_noise(batch, 2, bb.input_embeddings().weight.shape[1],
                          noise_scale(bb, config.noise_multiplier), config.seed, torch.float32)

    def logp(sample: int, layer: int | None, clean: dict) -> float:
        hooks = [bb.input_embeddings().register_forward_hook(
            lambda m, i, o: o + noise[0:1, sample])]
        if layer is not None:
            def put(m, i, o):
                o = o.clone()
                o[0, subject] = clean[layer][subject]
                return o
            hooks.append(bb.mlp_out_proj(layer).register_forward_hook(put))
        try:
            logits = bb.logits(ids)
        finally:
            for h in hooks:
                h.remove()
        return float(masked_mean_logp(logits[still], batch.input_ids, still)[0])

    last = trace.offsets.index(0)
    with torch.inference_mode():
        clean: dict[int, torch.Tensor] = {}
        hooks = [bb.mlp_out_proj(l).register_forward_hook(
            lambda m, i, o, l=l: clean.__setitem__(l, o[0].clone()))
            for l in range(bb.num_layers)]
        bb.logits(ids)
        for h in hooks:
            h.remove()
        for layer in range(bb.num_layers):
            expected = sum(logp(s, layer, clean) - logp(s, None, clean) for s in range(2)) / 2
            got = float(trace.ie[0, 0, layer, last])
            assert abs(got - expected) < 1e-5 + 1e-3 * abs(expected), layer
    # the window's effect is kept at the last subject token only
    others = [k for k in range(len(trace.offsets)) if k != last]
    assert bool(trace.ie[0, :, :, others].isnan().all())
    assert int(trace.offset_index[0]) == last and bool(trace.scored[0, last])


def test_subject_span_needs_one_restored_run_per_layer_instead_of_one_per_token(
        tiny_backbone, forget_retain):
    forget, _ = forget_retain
    token = trace_facts(tiny_backbone, forget, TimeROMEConfig(positions="subject", **FAST))
    window = trace_facts(tiny_backbone, forget, TimeROMEConfig(positions="subject",
                                                               restore_span="subject", **FAST))
    n_t, n_s, n_l = len(FAST["times"]), FAST["noise_samples"], tiny_backbone.num_layers
    subject_tokens = int((token.valid & token.is_subject).sum())
    plain = len(forget) * n_t * (1 + n_s)
    assert token.forwards == plain + n_t * n_s * n_l * subject_tokens
    assert window.forwards == plain + n_t * n_s * n_l * len(forget)
    # keys and target deltas come from the clean and corrupted runs: unchanged
    assert torch.equal(token.keys, window.keys)
    assert torch.equal(token.corrupt_out, window.corrupt_out)


def test_tie_facts_restores_a_sample_and_gives_the_others_its_peak_layer(
        tiny_backbone, forget_retain):
    forget, retain = forget_retain
    forget = forget + retain[:4]
    config = TimeROMEConfig(positions="subject", **FAST)
    full = trace_facts(tiny_backbone, forget, config)
    part = trace_facts(tiny_backbone, forget, config.with_overrides(tie_facts=2))
    traced = part.traced
    assert int(traced.sum()) == 2
    assert torch.equal(traced, traced_sample([f.key for f in forget], 2, config.seed))
    # clean and corrupted runs are the same for every fact: same keys, deltas and P's
    for name in ("keys", "clean_out", "corrupt_out", "clean_logp", "corrupt_logp"):
        assert torch.equal(getattr(part, name), getattr(full, name)), name
    # the traced facts' TIE and coordinates are the full trace's
    assert torch.equal(part.tie[traced], full.tie[traced])
    assert torch.equal(part.layer[traced], full.layer[traced])
    assert bool(part.tie[~traced].isnan().all()) and bool(part.max_tie[~traced].isnan().all())
    # the untraced facts' layer: argmax over layers of the traced unflagged facts' mean
    # (over facts) of the max (over positions) TIE, from the full trace's numbers
    use = traced & ~full.flagged
    use = use if bool(use.any()) else traced
    profile = full.tie[use].nan_to_num(nan=float("-inf")).amax(2).mean(0)
    assert bool((part.layer[~traced] == int(profile.argmax())).all())
    assert bool((part.offset_index[~traced] == part.offsets.index(0)).all())
    # the restored rows of the untraced facts are not run
    n_t, n_s, n_l = len(FAST["times"]), FAST["noise_samples"], tiny_backbone.num_layers
    skipped = int((full.valid & full.is_subject)[~traced].sum())
    assert part.forwards == full.forwards - n_t * n_s * n_l * skipped
    # an untraced fact is flagged only when the subject does not matter to its answer
    effect = part.corruption_effect.mean(1)
    assert torch.equal(part.flagged[~traced], ~(effect[~traced] > config.flag_threshold))


def test_traced_sample_depends_on_seed_and_keys_not_on_order():
    keys = [f"fact-{i}" for i in range(30)]
    a = traced_sample(keys, 5, seed=0)
    assert int(a.sum()) == 5
    shuffled = keys[::-1]
    b = traced_sample(shuffled, 5, seed=0)
    assert {k for k, t in zip(keys, a.tolist()) if t} == \
        {k for k, t in zip(shuffled, b.tolist()) if t}
    assert not torch.equal(a, traced_sample(keys, 5, seed=1))
    assert bool(traced_sample(keys, None, 0).all()) and bool(traced_sample(keys, 30, 0).all())


@pytest.mark.parametrize("key,value,message", [
    ("tie_facts", 0, "tie_facts must be >= 1 or null, got 0"),
    ("tie_facts", 2.5, "tie_facts must be an integer or null, got 2.5"),
    ("restore_span", "layer", "unknown restore_span 'layer'; known: token, subject"),
])
def test_bad_trace_cost_options_are_named(key, value, message):
    with pytest.raises(MethodConfigError, match=message.replace("(", r"\(")) as err:
        TimeROMEConfig.from_dict({key: value})
    assert err.value.key == key
