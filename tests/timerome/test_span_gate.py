"""The span gate (config gate_span): a fact's subject-token columns open only together."""

from __future__ import annotations

import pytest
import torch

from harness.timerome.config import TimeROMEConfig
from harness.timerome.memory import EditMemory
from harness.timerome.span_gate import span_groups, span_open, span_open_bound
from harness.timerome.tuning import GridPoint, TuningGrid, apply_tuning

# fact a: columns at subject offsets -1 and 0; fact b: -2, -1, 0; fact c: one column
NAMES = ["a", "a@l0o-1", "b@l0o-2", "b@l0o-1", "b", "c"]
OFFSETS = [0, -1, -2, -1, 0, 0]


def test_one_column_per_fact_needs_no_groups():
    assert span_groups(["a", "b", "c"], [0, 0, 0]) is None


def test_two_columns_of_a_fact_at_one_offset_is_an_error_naming_them():
    with pytest.raises(ValueError, match="'a' and 'a@l0o-1' of one fact share subject offset 0"):
        span_groups(["a", "a@l0o-1"], [0, 0])


def test_a_column_opens_only_where_its_whole_span_matches():
    groups = span_groups(NAMES, OFFSETS)
    opened = torch.zeros((2, 8, len(NAMES)), dtype=torch.bool)
    # sequence 0: a's name at positions 2-3 (last subject token 3): both its gates pass
    opened[0, 2, 1] = opened[0, 3, 0] = True
    # ... b's first two tokens match at 4-5 but its last token's gate fails at 6
    opened[0, 4, 2] = opened[0, 5, 3] = True
    # sequence 1: a's tokens pass, but not adjacent (4 then 6): not a's name
    opened[1, 4, 1] = opened[1, 6, 0] = True
    # c (one column) opens alone as before; b matches in full at 5-7
    opened[1, 1, 5] = True
    opened[1, 5, 2] = opened[1, 6, 3] = opened[1, 7, 4] = True
    got = span_open(opened, groups)
    expected = torch.zeros_like(opened)
    expected[0, 2, 1] = expected[0, 3, 0] = True
    expected[1, 1, 5] = True
    expected[1, 5, 2] = expected[1, 6, 3] = expected[1, 7, 4] = True
    assert torch.equal(got, expected)


def test_a_span_cut_by_the_sequence_edge_stays_closed():
    groups = span_groups(NAMES, OFFSETS)
    opened = torch.zeros((1, 3, len(NAMES)), dtype=torch.bool)
    opened[0, 0, 3] = opened[0, 1, 4] = True  # b's last two tokens; its first would be at -1
    assert not span_open(opened, groups).any()


def test_the_bound_counts_each_fact_at_its_least_opened_column():
    groups = span_groups(NAMES, OFFSETS)
    counts = torch.tensor([3.0, 1.0, 0.0, 5.0, 2.0, 4.0])
    # a: 2 columns x min(3, 1); b: 3 x 0; c: 1 x 4
    assert span_open_bound(counts, groups) == 2 * 1 + 0 + 4
    assert span_open_bound(counts, None) == float(counts.sum())


def _memory(backbone, span: bool, gen: torch.Generator):
    proj = backbone.mlp_out_proj(0)
    d_k, d_v = proj.in_features, proj.out_features
    keys = torch.randn((3, d_k), generator=gen)
    config = TimeROMEConfig(precondition="none", alpha=2.0, gate=True, gate_span=span)
    memory = EditMemory(config, backbone.identity(),
                        gate_reference={0: torch.randn((64, d_k), generator=gen)})
    memory.insert(0, keys, torch.randn((3, d_v), generator=gen), ["a@l0o-1", "a", "c"],
                  offsets=[-1, 0, 0])
    return memory, keys


@pytest.mark.parametrize("gate_rows", [True, False])
def test_the_hook_adds_a_facts_update_only_where_its_name_matches(tiny_backbone, gate_rows):
    """From first principles in float64: with the span gate, a's two columns add their update
    at positions 1-2 of sequence 0 (its name) and nowhere in sequence 1 (a's last token
    alone); the per-token gate adds a's last column there too."""
    gen = torch.Generator().manual_seed(5)
    span_memory, keys = _memory(tiny_backbone, True, gen)
    d_k = keys.shape[1]
    h = torch.randn((2, 4, d_k), generator=gen)
    h[0, 1] = keys[0] + 0.05 * torch.randn(d_k, generator=gen)
    h[0, 2] = keys[1] + 0.05 * torch.randn(d_k, generator=gen)
    h[1, 2] = keys[1] + 0.05 * torch.randn(d_k, generator=gen)
    outputs = {}
    for span in (True, False):
        memory = span_memory
        if not span:
            memory.set_operating_point(gate_span=False)
        memory._compiled[0]["gate_rows"] = gate_rows
        output = torch.zeros((2, 4, tiny_backbone.mlp_out_proj(0).out_features))
        outputs[span] = memory.apply(0, h, output)
    st = span_memory.factors[0]
    coef = h.double() @ st.b  # [2, 4, 3]
    gate = torch.zeros_like(coef, dtype=torch.bool)
    gate[0, 1, 0] = gate[0, 2, 1] = True
    expected = 2.0 * ((coef * gate) @ st.a.T)
    assert torch.allclose(outputs[True].double(), expected, rtol=1e-4, atol=1e-4)
    assert torch.equal(outputs[True][1], torch.zeros_like(outputs[True][1]))
    assert outputs[False][1, 2].abs().max() > 1e-3  # the per-token gate opens a's last token


def test_offsets_survive_save_and_load(tiny_backbone, tmp_path):
    memory, _ = _memory(tiny_backbone, True, torch.Generator().manual_seed(6))
    path = memory.save(tmp_path / "span.safetensors")
    loaded = EditMemory.load(path, tiny_backbone, attach=False)
    assert loaded.column_offsets == {0: [-1, 0, 0]}
    assert loaded.config.gate_span


def test_the_held_out_estimate_with_the_span_gate_is_at_most_the_per_token_one(tiny_backbone):
    memory, keys = _memory(tiny_backbone, True, torch.Generator().manual_seed(7))
    # calibration states near a's last token only: its column opens, its first never does
    gen = torch.Generator().manual_seed(8)
    near = keys[1] + 0.3 * torch.randn((32, keys.shape[1]), generator=gen)
    memory.gate_reference[0] = torch.cat([memory.gate_reference[0], near])
    memory.set_operating_point(gate_span=False)
    per_token = memory.held_out_gate_opens()
    memory.set_operating_point(gate_span=True)
    span = memory.held_out_gate_opens()
    assert per_token > 0
    assert span < per_token


def test_the_tuning_grid_takes_gate_span_and_a_point_carries_it():
    grid = TuningGrid.from_config({"gate_span": [False, True]})
    assert grid.gate_spans == (False, True)
    with pytest.raises(ValueError, match="gate_span values must be true or false, got 'yes'"):
        TuningGrid.from_config({"gate_span": ["yes"]})
    point = GridPoint(4.0, 1.0, 1.0, 9.0, 0.0, True, gate_margin=0.25, gate_span=True)
    assert point.overrides()["gate_span"] is True
    assert "gate_span" not in GridPoint(4.0, 1.0, 1.0, 9.0, 0.0, True).overrides()


def test_a_tuning_record_without_gate_span_leaves_the_config_s(tmp_path):
    record = tmp_path / "tuned.json"
    record.write_text('{"chosen": {"alpha": 16.0, "lam": 1.0, "q": 1.0, "gate_margin": 0.5, '
                      '"sites": "subject", "gate_span": null}}')
    keys = ("alpha", "lam", "q", "gate_margin", "sites", "gate_span")
    config, note = apply_tuning({"gate_span": True, "alpha": 4.0}, str(record), keys)
    assert note is None and config["gate_span"] is True and config["alpha"] == 16.0
    record.write_text(record.read_text().replace("null", "false"))
    assert apply_tuning({"gate_span": True}, str(record), keys)[0]["gate_span"] is False


def test_the_held_out_estimate_runs_the_span_gate_over_whole_calibration_sequences(
        tiny_backbone):
    """Checked against a position-by-position count: thresholds from the even (odd)
    sequences, openings of whole spans counted on the odd (even) ones."""
    from harness.timerome.memory import gate_tolerance
    from harness.timerome.retain_stats import gate_threshold
    gen = torch.Generator().manual_seed(9)
    memory, keys = _memory(tiny_backbone, True, gen)
    memory.config = memory.config.with_overrides(gate_quantile=0.6)  # gates open often
    lengths = torch.tensor([5, 7, 4, 6, 8, 5, 6, 7])
    ref = torch.randn((int(lengths.sum()), keys.shape[1]), generator=gen)
    ref[1::3] = keys[0] + 0.8 * torch.randn_like(ref[1::3])  # a's first token now and then
    memory.gate_reference[0] = ref
    memory.gate_lengths = lengths
    got = memory.held_out_gate_opens()

    st = memory.factors[0]
    seqs = list(ref.split(lengths.tolist()))
    offsets, facts = [-1, 0, 0], ["a", "a", "c"]
    opened = 0
    for parity in (0, 1):
        setting = torch.cat(seqs[1 - parity::2])
        tau = torch.tensor(gate_threshold(setting, st.keys, 0.6)) + gate_tolerance(keys.shape[1])
        for seq in seqs[parity::2]:
            gate = (torch.nn.functional.normalize(seq, dim=-1)
                    @ torch.nn.functional.normalize(st.keys.float(), dim=0)) > tau
            for p in range(seq.shape[0]):
                for s in range(3):
                    anchor = p - offsets[s]
                    members = [t for t in range(3) if facts[t] == facts[s]]
                    opened += all(0 <= anchor + offsets[t] < seq.shape[0]
                                  and bool(gate[anchor + offsets[t], t]) for t in members)
    n = int(lengths.sum())
    assert opened > 0
    assert got == pytest.approx(opened / n * (n / 2 + 1) / (n + 1), rel=1e-9)
    memory.gate_lengths = None  # no word order: the bound, by rows
    assert memory.held_out_gate_opens() > got


def test_calibration_lengths_that_do_not_match_the_keys_are_refused(tiny_backbone):
    d_k = tiny_backbone.mlp_out_proj(0).in_features
    with pytest.raises(ValueError, match="sequence lengths sum to 10 rows but layer 0's "
                                         "retain keys have 12"):
        EditMemory(TimeROMEConfig(gate=True, gate_span=True), tiny_backbone.identity(),
                   gate_reference={0: torch.zeros((12, d_k))},
                   gate_lengths=torch.tensor([4, 6]))


def test_a_memory_file_whose_offsets_miss_a_column_is_damaged(tiny_backbone, tmp_path):
    import json

    from safetensors import safe_open
    from safetensors.torch import save_file

    from harness.artefacts import DamagedArtefact
    memory, _ = _memory(tiny_backbone, True, torch.Generator().manual_seed(12))
    path = memory.save(tmp_path / "span.safetensors")
    with safe_open(str(path), framework="pt") as handle:
        meta = json.loads(handle.metadata()["timerome"])
        tensors = {k: handle.get_tensor(k) for k in handle.keys()}
    meta["offsets"]["0"] = [-1, 0]  # three columns
    save_file(tensors, str(path), metadata={"timerome": json.dumps(meta)})  # no digest
    with pytest.raises(DamagedArtefact, match="'offsets' of layer 0 does not have one entry "
                                              "per column \\(3\\)"):
        EditMemory.read(path)


# span_anchor "subject": fact w has subject columns at offsets -1, 0 and window columns at
# +1, +2 (the prompt tokens after its subject); fact c has one column
W_NAMES = ["w@l0o-1", "w", "w@l0o1", "w@l0o2", "c"]
W_OFFSETS = [-1, 0, 1, 2, 0]
W_SUBJECT = [True, True, False, False, True]


def test_anchored_window_columns_open_wherever_the_subject_matches():
    """With subject anchors, w's window columns open at +1 and +2 from a matching subject,
    whatever their own gates; with every column an anchor they need their own gates too."""
    opened = torch.zeros((2, 8, len(W_NAMES)), dtype=torch.bool)
    # sequence 0: w's subject at 2-3, the next tokens differ (window gates closed)
    opened[0, 2, 0] = opened[0, 3, 1] = True
    # sequence 1: the window tokens alone pass (at 5, 6), no subject before them
    opened[1, 5, 2] = opened[1, 6, 3] = True
    anchored = span_open(opened, span_groups(W_NAMES, W_OFFSETS, anchors=W_SUBJECT))
    expected = torch.zeros_like(opened)
    expected[0, 2, 0] = expected[0, 3, 1] = expected[0, 4, 2] = expected[0, 5, 3] = True
    assert torch.equal(anchored, expected)
    assert not span_open(opened, span_groups(W_NAMES, W_OFFSETS)).any()


def test_anchored_window_columns_cut_by_the_sequence_end_open_where_they_fit():
    opened = torch.zeros((1, 5, len(W_NAMES)), dtype=torch.bool)
    opened[0, 2, 0] = opened[0, 3, 1] = True  # subject at 2-3: +1 is 4, +2 past the end
    got = span_open(opened, span_groups(W_NAMES, W_OFFSETS, anchors=W_SUBJECT))
    assert got[0, 4, 2] and int(got.sum()) == 3


def test_a_fact_without_an_anchor_column_is_refused_naming_it():
    with pytest.raises(ValueError, match="fact 'w' has no anchor column at this layer"):
        span_groups(W_NAMES, W_OFFSETS, anchors=[False, False, False, False, True])
    with pytest.raises(ValueError, match="5 columns but 4 anchor flags"):
        span_groups(W_NAMES, W_OFFSETS, anchors=W_SUBJECT[:4])


def test_the_anchored_bound_takes_the_least_opened_subject_column():
    counts = torch.tensor([3.0, 2.0, 0.0, 0.0, 4.0])  # window columns never pass alone
    # w: 4 columns x min over its subject columns (2); c: 1 x 4
    assert span_open_bound(counts, span_groups(W_NAMES, W_OFFSETS, anchors=W_SUBJECT)) == 4 * 2 + 4
    assert span_open_bound(counts, span_groups(W_NAMES, W_OFFSETS)) == 0 + 4


def test_the_memory_anchors_on_subject_columns_by_config_and_keeps_the_flags(tiny_backbone,
                                                                            tmp_path):
    """The hook: with span_anchor subject, w's window column adds its update after w's
    subject although its own key is far from the state there; with span it adds nothing.
    The flags survive save and load."""
    gen = torch.Generator().manual_seed(13)
    proj = tiny_backbone.mlp_out_proj(0)
    d_k, d_v = proj.in_features, proj.out_features
    keys = torch.randn((3, d_k), generator=gen)
    outputs = {}
    for anchor in ("subject", "span"):
        config = TimeROMEConfig(precondition="none", alpha=2.0, gate=True, gate_span=True,
                                span_anchor=anchor)
        memory = EditMemory(config, tiny_backbone.identity(),
                            gate_reference={0: torch.randn((64, d_k), generator=gen)})
        memory.insert(0, keys, torch.randn((3, d_v), generator=gen), ["w@l0o-1", "w", "w@l0o1"],
                      offsets=[-1, 0, 1], subject=[True, True, False])
        h = torch.randn((1, 4, d_k), generator=torch.Generator().manual_seed(14))
        h[0, 0], h[0, 1] = keys[0], keys[1]  # w's subject at 0-1; position 2 is not keys[2]
        outputs[anchor] = memory.apply(0, h, torch.zeros((1, 4, d_v)))
        if anchor == "subject":
            loaded = EditMemory.load(memory.save(tmp_path / "w.safetensors"), tiny_backbone,
                                     attach=False)
            assert loaded.column_subject == {0: [True, True, False]}
    assert outputs["subject"][0, 2].abs().max() > 1e-3
    assert torch.equal(outputs["span"], torch.zeros_like(outputs["span"]))
    assert torch.equal(outputs["subject"][0, 3], torch.zeros(d_v))
