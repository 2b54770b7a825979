"""The trace-variant experiment writes one summary per (split, variant); its trace rows follow
T x (1 + N x (1 + L x P_f)) per fact, so a variant with fewer noise samples traces fewer."""

from __future__ import annotations

import json
import math

from experiments import trace_variants
from harness.data import load_split
from harness.diffusion.batching import encode_facts
from harness.timerome.config import TimeROMEConfig
from harness.timerome.tracing import candidate_offsets


def test_fewer_noise_samples_trace_fewer_rows(tmp_path, tiny_corpus_dir,
                                              finetuned_checkpoint_dir, make_finetuned_backbone):
    out = tmp_path / "variants.json"
    argv = ["--out", str(out), "--model", str(finetuned_checkpoint_dir),
            "--tofu-dir", str(tiny_corpus_dir), "--splits", "validation",
            "--variants", "default,N1", "--seeds", "2", "--grid-alphas", "1,4",
            "--retain-eval-size", "4", "--retain-train-size", "8"]
    assert trace_variants.main(argv) == 0
    result = json.loads(out.read_text())
    split = result["splits"]["validation"]
    rows = {r["variant"]: r for r in split["variants"]}
    assert list(rows) == ["default", "N1"]

    backbone = make_finetuned_backbone()
    facts = load_split(tiny_corpus_dir, "validation")
    encoded = encode_facts(backbone, facts)
    offsets = candidate_offsets(encoded, TimeROMEConfig())  # the default positions
    traced = sum(0 <= e.last_subject_position + o < len(e.prompt_ids)
                 for e in encoded for o in offsets)
    assert traced > sum(len(e.subject_positions) for e in encoded)  # window: tokens after it
    n_facts, n_layers = len(facts), backbone.num_layers
    for row in rows.values():  # every candidate position inside the prompt is traced
        n, t = row["noise_samples"], len(row["times"])
        assert row["rows"] == t * (n_facts + n * (n_facts + n_layers * traced)), row
    assert rows["N1"]["noise_samples"] == 1 < rows["default"]["noise_samples"]
    assert rows["N1"]["rows"] < rows["default"]["rows"]

    assert rows["default"]["same_coordinates_seed0"] == 1.0
    assert rows["default"]["no_worse_within_noise"] is None
    assert isinstance(rows["N1"]["no_worse_within_noise"], bool)
    for row in rows.values():
        assert row["seeds"] == [0, 1]
        assert 0.0 <= row["consensus_agreement"]["mean"] <= 1.0
        for key in ("forget_drop", "retain_drop", "trace_seconds"):
            assert math.isfinite(row[key]["mean"]) and math.isfinite(row[key]["sd"]), key
        assert [p["alpha"] for p in row["per_seed"][0]["grid"]] == [1.0, 4.0]


def test_unknown_variant_is_refused(tmp_path, capsys):
    assert trace_variants.main(["--out", str(tmp_path / "x.json"),
                                "--variants", "default,N3"]) == 2
    assert "unknown variant(s) N3" in capsys.readouterr().err
