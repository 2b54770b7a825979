"""The twin size sweep writes one finite row per (size, position mode), appended atomically."""

from __future__ import annotations

import csv
import math

from harness.data import write_synthetic
from experiments import size_sweep


def test_sweep_row_has_finite_measurements(tmp_path):
    corpus = write_synthetic(tmp_path / "corpus", authors=20, facts_per_author=5, seed=1)
    out = tmp_path / "sweep.csv"
    argv = ["--out", str(out), "--sizes", "2x32x64", "--epochs", "1", "--vocab-size", "384",
            "--tofu-dir", str(corpus), "--positions", "subject,window", "--no-rouge"]
    assert size_sweep.main(argv) == 0
    rows = list(csv.DictReader(out.open()))
    assert [r["positions"] for r in rows] == ["subject", "window"]
    for row in rows:
        assert (row["n_layers"], row["d_model"], row["mlp_hidden"]) == ("2", "32", "64")
        for key in ("finetune_seconds", "forget_logp", "retain_logp", "corruption_effect",
                    "chosen_tie", "median_abs_tie", "flagged_fraction"):
            assert math.isfinite(float(row[key])), (key, row[key])
    assert size_sweep.main(argv + ["--skip-done"]) == 0  # nothing new: still two rows
    assert len(list(csv.DictReader(out.open()))) == 2
