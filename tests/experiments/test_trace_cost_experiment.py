"""The trace-cost experiment applies each regime's own point to the facts of that regime,
traced as an edit of that many facts; the subject span restores one row per layer."""

from __future__ import annotations

import json

import pytest

from experiments import trace_cost_variants
from harness.data import load_split


def test_each_regime_and_variant_gets_a_row(tmp_path, tiny_corpus_dir, finetuned_checkpoint_dir):
    point = {"alpha": 4.0, "lam": 1.0, "q": 1.0, "gate_margin": 0.0, "sites": "subject"}
    tuning = tmp_path / "tuning.json"
    tuning.write_text(json.dumps({"chosen_by_facts": {"2": point, "1": {**point, "alpha": 1.0}}}))
    out = tmp_path / "out.json"
    argv = ["--out", str(out), "--model", str(finetuned_checkpoint_dir),
            "--tofu-dir", str(tiny_corpus_dir), "--tuning", str(tuning), "--seeds", "1",
            "--variants", "every fact traced,subject span", "--retain-eval-size", "4",
            "--retain-train-size", "8"]
    assert trace_cost_variants.main(argv) == 0
    result = json.loads(out.read_text())
    table = {(r["variant"], r["regime"]): r for r in result["table"]}
    assert sorted(table) == [("every fact traced", 1), ("every fact traced", 2),
                             ("subject span", 1), ("subject span", 2)]
    assert len(load_split(tiny_corpus_dir, "validation")) >= 2
    traced = [r for r in result["runs"] if r["variant"] == "every fact traced"]
    assert [r["facts"] for r in traced] == [1, 2]
    one, two = [r["layers"] for r in traced]
    assert one == two[:1]  # the first fact's layer does not depend on the facts traced with it
    for n in (1, 2):
        default, window = table["every fact traced", n], table["subject span", n]
        assert default["same_layer_as_default"] is None  # the default variant was not run
        # one restored row per layer instead of one per subject token (>= 2 on these facts)
        assert window["trace_rows_per_fact"]["mean"] < default["trace_rows_per_fact"]["mean"]


def test_a_record_without_regimes_is_refused(tmp_path):
    record = tmp_path / "tuning.json"
    record.write_text(json.dumps({"chosen": {"alpha": 4.0}}))
    with pytest.raises(ValueError, match="no 'chosen_by_facts'"):
        trace_cost_variants.regime_points(str(record))
