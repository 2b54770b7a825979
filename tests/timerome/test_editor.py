"""Editor, registered method, sequential insertion, CLI, tuning and figure on the tiny model."""

from __future__ import annotations

import json

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from harness.data.errors import DataError
from harness.evaluation.answer_logprob import score_facts
from harness.methods.base import EditRequest
from harness.methods.registry import get_method
from harness.timerome import cli
from harness.timerome.cli import main as cli_main
from harness.timerome.config import TimeROMEConfig
from harness.timerome.editor import TimeROMEEditor
from harness.timerome.figure import tie_figure, tie_plot
from harness.timerome.memory import EditMemory
from harness.timerome.tracing import trace_facts
from harness.timerome.tuning import TuningGrid, read_tuned_config, tune, write_tuning

FAST = dict(times=(1.0, 0.5), noise_samples=2, positions="subject", tie_facts=None)
# The ungated memory without retain statistics (W = A B^T): what the tests of the plain
# solve, hook and undo are about; the default (Table 1's variant) adds both.
LINEAR = dict(precondition="none", gate=False)


def test_edit_lowers_forget_logprob(tiny_backbone, forget_retain):
    forget, retain = forget_retain
    before = score_facts(tiny_backbone, forget).logp
    editor = TimeROMEEditor(tiny_backbone, TimeROMEConfig(alpha=4.0, target="suppress", **LINEAR, **FAST))
    _, report = editor.edit(forget)
    after = score_facts(tiny_backbone, forget).logp
    assert report.n_edited >= 1
    assert set(report.phase_seconds) == {"tracing", "key_delta_extraction", "solve"}
    assert float((before - after).mean()) > 10.0  # nats per sample
    editor.undo()
    assert torch.equal(score_facts(tiny_backbone, forget).logp, before)


def test_method_registry_outcome_and_undo(tiny_backbone, forget_retain):
    forget, retain = forget_retain
    ids = torch.randint(2, 200, (2, 15), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        before = tiny_backbone.logits(ids)
    method = get_method("timerome", {"alpha": 2.0, **LINEAR, **FAST})
    outcome = method.apply(EditRequest(backbone=tiny_backbone, forget=forget, retain=retain))
    assert outcome.steps is None and outcome.wall_clock_s > 0
    assert {c["fact"] for c in outcome.details["coordinates"]} | \
        {f["fact"] for f in outcome.details["flagged"]} == {f.key for f in forget}
    json.dumps(outcome.details, allow_nan=False)  # JSON-serialisable
    with torch.inference_mode():
        assert not torch.equal(tiny_backbone.logits(ids), before)
    outcome.undo()
    with torch.inference_mode():
        assert torch.equal(tiny_backbone.logits(ids), before)


def test_sequential_insertion_grows_memory(tiny_backbone, forget_retain):
    forget, retain = forget_retain
    facts = forget + retain[:2]
    editor = TimeROMEEditor(tiny_backbone, TimeROMEConfig(edit_flagged=True, **LINEAR, **FAST))
    for n, fact in enumerate(facts, start=1):
        _, report = editor.insert(fact)
        assert report.n_edited == 1
        assert editor.memory.n_facts == n
    assert sorted(editor.memory.layer_of()) == sorted(f.key for f in facts)
    st = next(iter(editor.memory.factors.values()))
    gram = st.keys.T @ st.keys + st.lam * torch.eye(st.n, dtype=torch.float64)
    assert torch.allclose(st.factor() @ st.factor().T, gram, atol=1e-8)
    assert torch.allclose(st.a, st.deltas @ torch.linalg.inv(gram), atol=1e-8)
    editor.undo()


def test_cli_forget_writes_loadable_memory(tiny_backbone, tiny_checkpoint, forget_retain,
                                           tmp_path):
    """`forget` with no method flags runs the method Table 1 runs (TimeROMEConfig's
    defaults: retain covariance and gate from --retain); the flags override it."""
    forget, retain = forget_retain
    facts_path, retain_path = tmp_path / "facts.jsonl", tmp_path / "retain.jsonl"
    for path, facts in ((facts_path, forget), (retain_path, retain)):
        path.write_text("".join(json.dumps({"question": f.question, "answer": f.answer,
                                            "subject": f.subject}) + "\n" for f in facts))
    out = tmp_path / "mem.safetensors"
    code = cli_main(["forget", "--backbone-dir", str(tiny_checkpoint), "--name", "tiny-timerome",
                     "--facts", str(facts_path), "--out", str(out), "--alpha", "2", "--q", "0.5",
                     "--retain", str(retain_path)])
    assert code == 0
    report = json.loads((tmp_path / "mem.safetensors.report.json").read_text())
    assert report["config"] == TimeROMEConfig(alpha=2.0, q=0.5).to_dict()
    assert get_method("timerome", {"alpha": 2.0, "q": 0.5}).timerome_config().to_dict() \
        == report["config"]  # the method the workflow runs, with the same overrides
    tensors = EditMemory.read(out)[1]
    assert any(name.endswith(".metric") for name in tensors)  # the retain covariance
    memory = EditMemory.load(out, tiny_backbone)
    assert memory.n_facts == report["n_edited"]
    assert memory.gate_tau  # the gate thresholds from the retain facts
    memory.detach()


def test_cli_forget_needs_retain_facts_for_the_default_method(tiny_checkpoint, forget_retain,
                                                              tmp_path):
    forget, _ = forget_retain
    facts_path = tmp_path / "facts.jsonl"
    facts_path.write_text("".join(json.dumps({"question": f.question, "answer": f.answer,
                                              "subject": f.subject}) + "\n" for f in forget))
    out = tmp_path / "mem.safetensors"
    with pytest.raises(cli.UsageError, match="--retain FILE is needed"):
        cli_main(["forget", "--backbone-dir", str(tiny_checkpoint), "--facts", str(facts_path),
                  "--out", str(out)])
    assert cli_main(["forget", "--backbone-dir", str(tiny_checkpoint), "--facts",
                     str(facts_path), "--out", str(out), "--precondition", "none",
                     "--no-gate", "--tie-facts", "3"]) == 0
    report = json.loads((tmp_path / "mem.safetensors.report.json").read_text())
    assert (report["config"]["precondition"], report["config"]["gate"],
            report["config"]["tie_facts"]) == ("none", False, 3)
    # the backbone's TIE profile (tie_facts 0, the default) is traced on retain facts too
    with pytest.raises(cli.UsageError, match=r"tie_facts 0\); or pass"):
        cli_main(["forget", "--backbone-dir", str(tiny_checkpoint), "--facts", str(facts_path),
                  "--out", str(out), "--precondition", "none", "--no-gate"])


def test_cli_rejects_fact_without_subject(tiny_checkpoint, tmp_path):
    facts_path = tmp_path / "facts.jsonl"
    facts_path.write_text(json.dumps({"question": "Who is Zed?", "answer": "A cat."}) + "\n")
    with pytest.raises(DataError, match=r"line 1, field 'subject'"):
        cli_main(["forget", "--backbone-dir", str(tiny_checkpoint), "--facts", str(facts_path),
                  "--out", str(tmp_path / "m.safetensors")])


def test_tuning_grid_json(tiny_backbone, forget_retain, tmp_path):
    forget, retain = forget_retain
    grid = TuningGrid(alphas=(0.5, 16.0), lams=(1.0,), qs=(0.5, 1.0))
    result = tune(tiny_backbone, forget, retain, TimeROMEConfig(edit_flagged=True, **LINEAR, **FAST), grid)
    path = write_tuning(result, tmp_path / "tuning.json")
    data = json.loads(path.read_text())
    assert len(data["grid"]) == 4
    big = [p for p in result.grid if p.alpha == 16.0]
    assert all(p.safe == (p.retain_drop <= 1.0) for p in result.grid)
    assert max(p.forget_drop for p in big) > max(p.forget_drop for p in result.grid
                                                 if p.alpha == 0.5)
    if result.chosen is not None:
        assert result.chosen.retain_drop <= 1.0
        assert read_tuned_config(path).alpha == result.chosen.alpha


def test_tie_figure_files(tiny_backbone, forget_retain, tmp_path):
    forget, _ = forget_retain
    trace = trace_facts(tiny_backbone, forget,
                        TimeROMEConfig(times=(1.0, 0.5), noise_samples=1, positions="window",
                                       window=(2, 2), tie_facts=None))
    png, pdf = tie_figure(trace, tmp_path / "tie")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert pdf.read_bytes()[:4] == b"%PDF"


def test_tie_figure_plots_the_traced_effects(tiny_backbone, forget_retain):
    forget, _ = forget_retain
    trace = trace_facts(tiny_backbone, forget,
                        TimeROMEConfig(times=(1.0, 0.5), noise_samples=1, positions="window",
                                       window=(2, 2), tie_facts=None))
    fig = tie_plot(trace, title="TIE, tiny", caption="summary")
    try:
        by_level, by_position = fig.axes[0], fig.axes[1]
        # left: mean IE at the last subject token, layer x level
        left = by_level.get_images()[0].get_array()
        p0 = trace.offsets.index(0)
        expected = trace.ie[:, :, :, p0].nanmean(0).T.numpy()
        assert left.shape == (tiny_backbone.num_layers, len(trace.times))
        np.testing.assert_allclose(np.asarray(left), expected)
        assert [t.get_text() for t in by_level.get_xticklabels()] == ["1", "0.5"]
        assert by_level.get_ylabel() == "layer"
        # right: mean TIE per layer x position offset, nan-aware
        right = by_position.get_images()[0].get_array()
        np.testing.assert_allclose(np.ma.filled(right, np.nan), trace.tie.nanmean(0).numpy())
        assert [t.get_text() for t in by_position.get_xticklabels()] == \
            [str(o) for o in trace.offsets]
        assert by_position.get_xlabel() == "position relative to subject end"
        assert fig._suptitle.get_text() == "TIE, tiny"
    finally:
        plt.close(fig)


def test_retain_cov_and_gate_options_round_trip(tiny_backbone, forget_retain, tmp_path):
    forget, retain = forget_retain
    config = TimeROMEConfig(precondition="retain_cov", gate=True, gate_quantile=0.5,
                            edit_flagged=True, **FAST)
    editor = TimeROMEEditor(tiny_backbone, config, retain=retain)
    _, report = editor.edit(forget)
    memory = editor.memory
    layer, st = next(iter(memory.factors.items()))
    assert st.metric is not None  # C^-1 from retain keys
    gram = st.keys.T @ st.metric @ st.keys + st.lam * torch.eye(st.n, dtype=torch.float64)
    assert torch.allclose(st.a @ gram, st.deltas, atol=1e-6)
    assert len(memory.gate_tau[layer]) == st.n  # one threshold per fact
    assert all(-1.0 <= tau <= 1.0 for tau in memory.gate_tau[layer])
    ids = torch.randint(2, 200, (2, 15), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        edited = tiny_backbone.logits(ids)
    path = memory.save(tmp_path / "gated.safetensors")
    editor.undo()
    with pytest.raises(ValueError, match="need retain facts"):
        TimeROMEEditor(tiny_backbone, config).edit(forget)
    loaded = EditMemory.load(path, tiny_backbone)
    assert loaded.gate_tau == memory.gate_tau
    with torch.inference_mode():
        assert torch.equal(tiny_backbone.logits(ids), edited)
    loaded.detach()


def test_gate_thresholds_are_per_fact_and_do_not_tighten_as_facts_are_added():
    """tau_f is the quantile of cos(h, k_f) over retain states h: adding facts leaves the
    thresholds of the facts already in the memory unchanged, and about (1 - quantile) of
    the retain states pass each fact's gate."""
    from harness.timerome.retain_stats import gate_threshold

    gen = torch.Generator().manual_seed(0)
    reference = torch.randn((2000, 16), generator=gen) + 0.5
    keys = torch.randn((16, 12), generator=gen)
    few = gate_threshold(reference, keys[:, :3], 0.9)
    many = gate_threshold(reference, keys, 0.9)
    assert len(many) == 12 and many[:3] == pytest.approx(few, abs=1e-6)
    cos = torch.nn.functional.normalize(reference, dim=-1) @ torch.nn.functional.normalize(
        keys, dim=0)
    share_open = (cos > torch.tensor(many)).float().mean(0)
    assert torch.all((share_open - 0.1).abs() < 0.01)


def test_tuning_takes_retain_statistics_from_held_out_calibration_facts(
        tiny_backbone, forget_retain):
    """The retain drop is scored on `retain`; the gate and covariance come from
    `calibration`. In-sample (calibration = the scored facts), a max-similarity gate
    never opens on the scored facts, so their drop is exactly 0 for any alpha."""
    forget, retain = forget_retain
    scored, calibration = retain[: len(retain) // 2], retain[len(retain) // 2:]
    config = TimeROMEConfig(precondition="retain_cov", gate=True, gate_quantile=1.0,
                            edit_flagged=True, **FAST)
    grid = TuningGrid(alphas=(16.0,), lams=(1.0,), qs=(1.0,))
    held_out = tune(tiny_backbone, forget, scored, config, grid, calibration=calibration)
    assert held_out.calibration_facts == [f.key for f in calibration]
    assert not set(held_out.calibration_facts) & set(held_out.retain_facts)
    in_sample = tune(tiny_backbone, forget, scored, config, grid)
    assert in_sample.calibration_facts == in_sample.retain_facts
    assert in_sample.grid[0].retain_drop == pytest.approx(0.0, abs=1e-4)


def test_gate_thresholds_of_incremental_insertion_equal_a_batch_insertion():
    """Inserting facts one at a time gives the same per-fact thresholds as inserting them
    together (a fact's threshold depends on its own key only, so only new facts' are
    computed on insertion)."""
    gen = torch.Generator().manual_seed(1)
    d_k, d_v = 6, 3
    ref = torch.randn((300, d_k), generator=gen)
    k_all = torch.randn((5, d_k), generator=gen)
    v_all = torch.randn((5, d_v), generator=gen)
    config = TimeROMEConfig(gate=True, gate_quantile=0.95, precondition="none")
    together = EditMemory(config, {"id": 1}, gate_reference={0: ref})
    together.insert(0, k_all, v_all, [f"f{i}" for i in range(5)])
    one_by_one = EditMemory(config, {"id": 1}, gate_reference={0: ref})
    for i in range(5):
        one_by_one.insert(0, k_all[i:i + 1], v_all[i:i + 1], [f"f{i}"])
    assert one_by_one.gate_tau[0] == pytest.approx(together.gate_tau[0], abs=1e-6)
    assert len(one_by_one.gate_tau[0]) == 5


def test_retain_keys_keep_evenly_spaced_rows_of_all_prompt_and_answer_positions(
        tiny_backbone, forget_retain):
    """Subsampling chosen before the forwards equals subsampling the full set of states."""
    from harness.timerome.retain_stats import retain_keys
    _, retain = forget_retain
    full = retain_keys(tiny_backbone, retain, [0, 1], max_rows=10 ** 9)
    n_positions = sum(len(tiny_backbone.tokenize_prompt(tiny_backbone.format_prompt(f.question))[0])
                      + len(tiny_backbone.tokenize_answer(f.answer)) for f in retain)
    assert full[0].shape[0] == n_positions
    few = retain_keys(tiny_backbone, retain, [0, 1], max_rows=50)
    pick = torch.linspace(0, n_positions - 1, 50).long()
    for layer in (0, 1):
        assert few[layer].shape == (50, full[layer].shape[1])
        assert torch.equal(few[layer], full[layer][pick])


def test_tuning_reports_a_choice_at_the_grids_strong_edge():
    from harness.timerome.tuning import GridPoint, grid_edge
    grid = TuningGrid(alphas=(8.0, 64.0), lams=(1.0, 10.0), qs=(0.5, 1.0))
    points = [GridPoint(a, l, q, forget_drop=a * q / l, retain_drop=0.1, safe=True)
              for a in grid.alphas for l in grid.lams for q in grid.qs]
    chosen = max(points, key=lambda p: p.forget_drop)
    # All safe: alpha at its max and lambda at its min were never stopped by the constraint
    # (q = 1 is q's ceiling, never an edge to widen).
    assert grid_edge(chosen, points, grid) == {"alpha": "max", "lam": "min"}
    # One unsafe point at alpha 64: the constraint binds there, so alpha is not an open edge.
    points[-1] = GridPoint(64.0, 10.0, 1.0, forget_drop=6.4, retain_drop=1.5, safe=False)
    assert grid_edge(chosen, points, grid) == {"lam": "min"}
    half = TuningGrid(alphas=grid.alphas, lams=grid.lams, qs=(0.25, 0.5))
    at_half = [GridPoint(64.0, 1.0, 0.5, 9.0, 0.1, True),
               GridPoint(64.0, 1.0, 0.25, 8.0, 0.1, True)]
    assert grid_edge(at_half[0], at_half, half)["q"] == "max"
    assert grid_edge(None, points, grid) == {}


@pytest.mark.parametrize("field,value", [("alpha", float("nan")), ("alpha", float("inf")),
                                         ("lam", float("inf")), ("lam", float("nan")),
                                         ("q", float("nan")), ("gate_quantile", float("nan"))])
def test_non_finite_hyperparameters_are_named_errors(field, value):
    with pytest.raises(ValueError, match=rf"{field} must be a finite number"):
        TimeROMEConfig(**{field: value})


def test_tuning_tries_each_site_rule_of_the_grid_on_one_trace(tiny_backbone, forget_retain,
                                                               tmp_path):
    """`sites` in the grid: every rule is solved from the same trace, each point names its
    rule, and the record's chosen rule is what the tuned config applies."""
    forget, retain = forget_retain
    scored, calibration = retain[: len(retain) // 2], retain[len(retain) // 2:]
    config = TimeROMEConfig(precondition="retain_cov", gate=True, edit_flagged=True, **FAST)
    grid = TuningGrid(alphas=(16.0,), lams=(1.0,), qs=(1.0,),
                      sites=("subject", "subject_layers"))
    result = tune(tiny_backbone, forget, scored, config, grid, max_retain_drop=100.0,
                  calibration=calibration)  # the tiny twin is not utility-safe at alpha 16
    by_rule = {p.sites: p for p in result.grid}
    assert set(by_rule) == {"subject", "subject_layers"} and len(result.grid) == 2
    # more columns (every layer): a different edit
    assert by_rule["subject"].forget_drop != by_rule["subject_layers"].forget_drop
    assert result.chosen.sites in by_rule
    tuned = read_tuned_config(write_tuning(result, tmp_path / "t.json"))
    assert tuned.sites == result.chosen.sites


def test_tuning_grid_names_an_unknown_site_rule():
    with pytest.raises(ValueError, match="unknown sites rule.*subjct.*known: chosen"):
        TuningGrid.from_config({"sites": ["subject", "subjct"]})
