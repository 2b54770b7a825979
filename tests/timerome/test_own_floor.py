"""gate_own_floor: each column's gate threshold at most its fact's own least similarity."""

from __future__ import annotations

import math

import pytest
import torch

from harness.timerome.config import TimeROMEConfig
from harness.timerome.memory import OWN_FLOOR_MARGIN, EditMemory
from harness.timerome.retain_stats import gate_threshold
from harness.timerome.tracing import trace_facts
from harness.timerome.tuning import TuningGrid

FAST = dict(noise_samples=1, precondition="none", gate=False, tie_facts=None,
            positions="subject")


def test_key_floor_is_the_least_cosine_between_a_levels_state_and_the_key(tiny_backbone,
                                                                           forget_retain):
    """Checked against one-level traces: the key of a one-level trace is that level's state."""
    forget, _ = forget_retain
    facts = forget[:2]
    both = trace_facts(tiny_backbone, facts, TimeROMEConfig(times=(1.0, 0.5), **FAST))
    x1 = trace_facts(tiny_backbone, facts, TimeROMEConfig(times=(1.0,), **FAST)).keys
    x2 = trace_facts(tiny_backbone, facts, TimeROMEConfig(times=(0.5,), **FAST)).keys
    key = (x1 + x2) / 2
    assert torch.allclose(both.keys, key, atol=1e-5)
    cos = torch.nn.functional.cosine_similarity
    expected = torch.minimum(cos(x1, key, dim=-1), cos(x2, key, dim=-1))
    sites = both.valid & both.is_subject  # [F, P]
    got = both.key_floor.permute(0, 2, 1)[sites]  # [sites, L]
    want = expected.permute(0, 2, 1)[sites]
    assert torch.allclose(got, want, atol=1e-5)
    assert float(got.min()) < 0.9999  # the levels differ: the floor is below 1


def _memory(backbone, floor: bool, floors):
    gen = torch.Generator().manual_seed(11)
    proj = backbone.mlp_out_proj(0)
    d_k, d_v = proj.in_features, proj.out_features
    keys = torch.randn((3, d_k), generator=gen)
    config = TimeROMEConfig(precondition="none", gate=True, gate_span=True,
                            gate_own_floor=floor)
    reference = torch.randn((80, d_k), generator=gen)
    memory = EditMemory(config, backbone.identity(), gate_reference={0: reference})
    memory.insert(0, keys, torch.randn((3, d_v), generator=gen), ["a", "b", "c"],
                  floors=floors)
    return memory, keys, reference


def test_the_floor_caps_each_threshold_and_a_nan_floor_caps_none(tiny_backbone):
    floors = [-0.5, 0.99, math.nan]
    memory, keys, reference = _memory(tiny_backbone, True, floors)
    calibrated = gate_threshold(reference, keys.T, 1.0)
    assert memory.gate_tau[0][0] == pytest.approx(-0.5 - OWN_FLOOR_MARGIN)
    assert memory.gate_tau[0][1] == pytest.approx(calibrated[1])  # above the calibrated one
    assert memory.gate_tau[0][2] == pytest.approx(calibrated[2])
    expected_on = memory.held_out_gate_opens()
    memory.set_operating_point(gate_own_floor=False)  # recomputed without the floor
    assert memory.gate_tau[0] == pytest.approx(calibrated)
    assert memory.held_out_gate_opens() < expected_on  # fact a's floored gate opens often


def test_floors_survive_save_and_load(tiny_backbone, tmp_path):
    memory, _, _ = _memory(tiny_backbone, True, [0.2, math.nan, 0.4])
    loaded = EditMemory.load(memory.save(tmp_path / "floor.safetensors"), tiny_backbone,
                             attach=False)
    assert loaded.key_floors[0][0] == 0.2 and math.isnan(loaded.key_floors[0][1])
    assert loaded.gate_tau == memory.gate_tau


def test_the_tuning_grid_takes_gate_own_floor():
    assert TuningGrid.from_config({"gate_own_floor": [False, True]}).gate_own_floors == \
        (False, True)
    with pytest.raises(ValueError, match="gate_own_floor values must be true or false"):
        TuningGrid.from_config({"gate_own_floor": [1]})


def test_the_tune_job_tries_the_floor_only_with_the_span_gate():
    from harness.timerome.tuning import gate_variants
    grid = TuningGrid(gate_spans=(False, True), gate_own_floors=(False, True))
    assert gate_variants(grid, TimeROMEConfig()) == [(False, False), (True, False),
                                                     (True, True)]
    assert gate_variants(TuningGrid(), TimeROMEConfig(gate_span=True, gate_own_floor=True)) \
        == [(True, True)]
