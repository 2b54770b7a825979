"""The TIE job end to end on a tiny random twin (figure + strict JSON summary), and the
workflow plans one TIE job per configured backbone."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness.jobs import tie
from job_payloads import tie_payload, write_tiny_setup

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT = REPO_ROOT / "workflows" / "config" / "default.yaml"
SUMMARY_NUMBERS = ("corruption_effect", "chosen_tie", "median_abs_tie", "flagged_fraction")


def _reject_constant(name):
    raise ValueError(f"non-strict JSON constant {name}")


@pytest.fixture(scope="module")
def tie_outputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("tie")
    tofu = write_tiny_setup(root)
    job = tie_payload(str(root / "model"), str(tofu), str(root / "figures" / "tie_tiny"),
                      method_config={"precondition": "none", "gate": False,
                                     "positions": "subject"})
    assert tie.main(["--job", json.dumps(job)]) == 0
    return root / "figures" / "tie_tiny"


def test_tie_job_writes_figure_and_strict_json(tie_outputs):
    for ext in (".png", ".pdf", ".json"):
        path = tie_outputs.with_suffix(ext)
        assert path.is_file() and path.stat().st_size > 0, path
    record = json.loads(tie_outputs.with_suffix(".json").read_text(),
                        parse_constant=_reject_constant)
    assert record["backbone"] == "tiny" and record["n_facts"] == 2
    for key in SUMMARY_NUMBERS:
        assert isinstance(record[key], float) and math.isfinite(record[key]), key
    assert record["median_abs_tie"] >= 0 and 0.0 <= record["flagged_fraction"] <= 1.0
    ratio = record["located_ratio"]
    if record["median_abs_tie"] > 0:
        assert ratio == pytest.approx(record["chosen_tie"] / record["median_abs_tie"])
    else:
        assert ratio is None
    assert set(record["meets_bars"]) == set(record["bars"]) == {
        "corruption_effect", "located_ratio", "flagged_fraction"}
    assert all(isinstance(v, bool) for v in record["meets_bars"].values())
    assert record["levels"] and all(0 < t <= 1 for t in record["levels"])
    assert 0 in record["offsets"]
    assert [f["fact"] for f in record["facts"]] == ["forget05:0", "forget05:1"]
    assert len(record["chosen_layers"]) == 2
    # No temporary siblings left behind by the atomic writes.
    assert sorted(p.name for p in tie_outputs.parent.iterdir()) == [
        "tie_tiny.json", "tie_tiny.pdf", "tie_tiny.png"]


def test_caption_names_the_numbers():
    summary = {"corruption_effect": 1.5, "chosen_tie": 0.6, "median_abs_tie": 0.02,
               "located_ratio": 30.0, "flagged_fraction": 0.25, "n_facts": 4}
    text = tie.figure_caption(summary)
    assert "ratio 30.00" in text and "flagged 25% of 4 facts" in text
    assert "n/a" in tie.figure_caption({**summary, "located_ratio": None})


def _dry_run(workdir: Path, configfile: Path | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "-n", "--nolock", "--cores", "1",
           "-s", str(REPO_ROOT / "Snakefile"), "--directory", str(workdir), "tie_figure"]
    if configfile is not None:
        cmd += ["--configfile", str(configfile)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=dict(os.environ))


def _planned_tie_backbones(output: str) -> list[str]:
    return sorted(re.findall(r"output: reports/figures/tie_(\S+)\.png, "
                             r"reports/figures/tie_\1\.pdf, reports/figures/tie_\1\.json",
                             output))


def test_dry_run_plans_one_tie_job_per_default_backbone(tmp_path):
    result = _dry_run(tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    backbones = sorted(yaml.safe_load(DEFAULT.read_text())["backbones"])
    assert len(backbones) == 6
    assert _planned_tie_backbones(result.stdout) == backbones


def test_tie_backbones_subset_and_unknown_name(tmp_path):
    config = yaml.safe_load(DEFAULT.read_text())
    config["tie"]["backbones"] = ["dream-7b-twin"]
    good = tmp_path / "one.yaml"
    good.write_text(yaml.safe_dump(config))
    result = _dry_run(tmp_path, good)
    assert result.returncode == 0, result.stderr[-2000:]
    assert _planned_tie_backbones(result.stdout) == ["dream-7b-twin"]
    config["tie"]["backbones"] = ["no-such-twin"]
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(config))
    result = _dry_run(tmp_path, bad)
    assert result.returncode != 0
    assert "tie.backbones: 'no-such-twin' is not a configured backbone" in (
        result.stdout + result.stderr)
