"""The cheaper tracing variants (issue 16): `restore_span: subject` restores every subject
token of a fact in one run (ROME's window over the subject); `tie_facts: K` restores only a
seeded sample of K facts and gives the others the sample's peak layer. Their numbers are
checked against full forwards and against the full trace, not against themselves."""

from __future__ import annotations

import pytest
import torch

from harness.methods.base import MethodConfigError
from harness.timerome.config import TimeROMEConfig
from harness.timerome.tracing import trace_facts, traced_sample

from tests.timerome.unbatched_trace import UnbatchedTrace

FAST = dict(times=(1.0, 0.5), noise_samples=2, precondition="none", gate=False,
            tie_facts=None)


def test_subject_span_effect_equals_a_full_forward_that_patches_every_subject_token(
        tiny_backbone, forget_retain):
    forget, _ = forget_retain
    bb = tiny_backbone
    config = TimeROMEConfig(times=(0.5,), noise_samples=2, positions="subject",
                            restore_span="subject", trace_batch_rows=3, tie_facts=None)
    trace = trace_facts(bb, forget[:1], config)
    reference = UnbatchedTrace(bb, forget[0], config, level=0.5)
    subject = list(reference.encoded.subject_positions)
    assert len(subject) >= 2  # a real window, not one token
    last = trace.offsets.index(0)
    for layer in range(bb.num_layers):
        expected = reference.effect(layer, subject)
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
    ("tie_facts", -1, "tie_facts must be >= 0 or null, got -1"),
    ("profile_facts", 0, "profile_facts must be >= 1, got 0"),
    ("profile_facts", None, "profile_facts must be an integer, got None"),
    ("tie_facts", 2.5, "tie_facts must be an integer or null, got 2.5"),
    ("restore_span", "layer", "unknown restore_span 'layer'; known: token, subject"),
])
def test_bad_trace_cost_options_are_named(key, value, message):
    with pytest.raises(MethodConfigError, match=message.replace("(", r"\(")) as err:
        TimeROMEConfig.from_dict({key: value})
    assert err.value.key == key


def test_untraced_facts_take_the_layer_where_the_unflagged_sample_peaks(tiny_backbone,
                                                                        forget_retain):
    """The shared layer follows the traced facts' TIE profile (here made to peak at the last
    layer by the unflagged facts), not a fixed layer, and ignores flagged traced facts."""
    from harness.timerome.tracing import _share_layer

    forget, retain = forget_retain
    config = TimeROMEConfig(**{**FAST, "positions": "subject", "tie_facts": 3})
    trace = trace_facts(tiny_backbone, forget + retain[:4], config)
    traced = trace.traced.nonzero().flatten().tolist()
    top = tiny_backbone.num_layers - 1
    tie = torch.full_like(trace.tie, float("nan"))
    for i in traced:
        tie[i, :, -1] = 0.1
        tie[i, top, -1] = 0.5  # unflagged traced facts peak at the top layer
    flagged_fact = traced[0]
    tie[flagged_fact, 0, -1] = 50.0  # a flagged fact's peak must not count
    trace.tie = tie
    trace.flagged[:] = False
    trace.flagged[flagged_fact] = True
    _share_layer(trace)
    assert bool((trace.layer[~trace.traced] == top).all())
    trace.flagged[:] = True  # every traced fact flagged: all of them count
    _share_layer(trace)
    assert bool((trace.layer[~trace.traced] == 0).all())


def test_tuning_traces_each_count_as_an_edit_of_that_many_facts(tiny_backbone, forget_retain):
    """With a traced sample (tie_facts), a tuning count is traced on its own facts: the
    first n facts of a larger count's trace are not what an n-fact edit traces (which facts
    are restored, and the layer the others get, depend on the set)."""
    from harness.timerome.editor import TimeROMEEditor
    from harness.timerome.tuning import count_traces

    forget, retain = forget_retain
    facts = forget + retain[:6]
    config = TimeROMEConfig(**{**FAST, "positions": "subject", "tie_facts": 3})
    editor = TimeROMEEditor(tiny_backbone, config)
    traces = count_traces(editor, facts, [2, 3, 8])
    for n in (2, 3, 8):
        alone = trace_facts(tiny_backbone, facts[:n], config)
        assert traces[n, 0].fact_keys == alone.fact_keys
        assert torch.equal(traces[n, 0].traced, alone.traced)
        assert torch.equal(traces[n, 0].layer, alone.layer)
        assert torch.equal(traces[n, 0].tie.nan_to_num(-9.0), alone.tie.nan_to_num(-9.0))
    assert bool(traces[2, 0].traced.all()) and bool(traces[3, 0].traced.all())
    assert int(traces[8, 0].traced.sum()) == 3


def _truncated_trace(backbone, facts, stop_layer: int = 0):
    """An edit's trace under tie_facts 0: clean and corrupted runs stopping at `stop_layer`."""
    from harness.diffusion.batching import encode_facts
    from harness.timerome.tracing import trace_encoded
    config = TimeROMEConfig(times=(1.0, 0.5), noise_samples=3, positions="subject",
                            tie_facts=0, trace_batch_rows=2)
    return trace_encoded(backbone, encode_facts(backbone, facts), config, profile_layer=0,
                         stop_layer=stop_layer)


def _forwards(backbone):
    """Counts the backbone's forwards (calls of its embedding table)."""
    from harness.hooks import forward_hook
    calls = []
    return calls, forward_hook(backbone.input_embeddings(), lambda m, i, o: calls.append(1))


def test_a_truncated_trace_on_query_blocks_has_the_full_blocks_keys_and_deltas(
        tiny_backbone, forget_retain, monkeypatch):
    forget, retain = forget_retain
    facts = forget + retain[:3]
    bb = tiny_backbone
    assert bb.query_blocks and bb.num_layers >= 2
    queried = _truncated_trace(bb, facts)
    monkeypatch.setattr(type(bb), "query_blocks", property(lambda self: False))
    full = _truncated_trace(bb, facts)
    for name in ("keys", "clean_out", "corrupt_out", "key_floor"):
        got, want = getattr(queried, name)[:, 0], getattr(full, name)[:, 0]
        assert torch.allclose(got, want, atol=1e-6, rtol=1e-5, equal_nan=True), name
        assert not bool(want[queried.valid].isnan().any()), name
    assert bool(queried.keys[:, 1:].isnan().all())  # nothing above the stop layer


def test_truncated_runs_take_as_many_rows_as_fit_the_state_budget(
        tiny_backbone, forget_retain, monkeypatch):
    import harness.timerome.tracing as tracing
    forget, retain = forget_retain
    facts = forget + retain[:3]
    results = {}
    for budget in (1, 1 << 30):  # trace_batch_rows (2) rows per forward; every row at once
        monkeypatch.setattr(tracing, "TRACE_STATE_ELEMENTS", budget)
        calls, counting = _forwards(tiny_backbone)
        with counting:
            results[budget] = _truncated_trace(tiny_backbone, facts)
        results[budget].calls = len(calls)
    small, large = results[1], results[1 << 30]
    from harness.diffusion.batching import batches, encode_facts
    chunks = [rows for rows, _ in batches(tiny_backbone, encode_facts(tiny_backbone, facts),
                                          TimeROMEConfig().fact_batch)]
    # per chunk of equal-width facts and level: one clean forward, then the corrupted rows
    # (3 noise samples per fact) 2 at a time, or all in one forward
    assert small.calls == sum(2 * (1 + -(-3 * len(rows) // 2)) for rows in chunks)
    assert large.calls == sum(2 * (1 + 1) for _ in chunks)
    for name in ("keys", "clean_out", "corrupt_out"):
        assert torch.allclose(getattr(small, name), getattr(large, name), atol=1e-6,
                              equal_nan=True), name
