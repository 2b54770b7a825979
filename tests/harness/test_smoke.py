"""The smoke script on CPU float32: records, finiteness, and a named failure."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from harness import smoke

PHASES = ["build", "load", "score_before", "trace", "edit", "score_after", "generate"]
TINY = ["--device", "cpu", "--dtype", "float32", "--authors", "20", "--n-forget", "2",
        "--n-retain", "4", "--vocab-size", "512", "--size", "micro", "--threads", "2"]


def _numbers(value, where=""):
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return
    if isinstance(value, (int, float)):
        yield where, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _numbers(v, f"{where}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _numbers(v, f"{where}[{i}]")


def test_llada_twin_smoke_on_cpu(tmp_path, capsys):
    out = tmp_path / "smoke"
    assert smoke.main([*TINY, "--out", str(out), "--backbones", "llada-twin"]) == 0
    record = json.loads((out / "llada-twin.json").read_text())
    assert record["status"] == "ok" and record["failed_phase"] is None
    assert record["adapter"] == "llada-twin" and record["dtype"] == "float32"
    assert record["options"]["size"] == "micro"
    assert [p["name"] for p in record["phases"]] == PHASES
    for p in record["phases"]:
        assert p["seconds"] >= 0 and p["peak_bytes"] > 0
    assert record["memory"]["memory_source"] == "cpu_rss"
    m = record["metrics"]
    for key in ("forget_logp_before", "forget_logp_after", "retain_logp_before",
                "retain_logp_after", "forget_drop", "retain_drop", "tie_max",
                "forget_rougeL_after"):
        assert isinstance(m[key], float), key
    assert m["n_edited"] == 2 and m["generated_tokens"] > 0
    for where, value in _numbers(record):
        assert math.isfinite(value), where
    summary = (out / "summary.md").read_text()
    assert "| llada-twin | ok |" in summary and "1 of 1 passed." in summary
    assert summary in capsys.readouterr().out


def test_nonfinite_score_fails_naming_backbone_and_phase(tmp_path, monkeypatch, capsys):
    import harness.evaluation.mean_scores as metrics

    real = metrics.mean_logp
    calls = []

    def poisoned(*args, **kwargs):
        calls.append(1)
        return float("nan") if len(calls) > 2 else real(*args, **kwargs)  # after the edit

    monkeypatch.setattr(metrics, "mean_logp", poisoned)
    out = tmp_path / "smoke"
    assert smoke.main([*TINY, "--out", str(out), "--backbones", "llada-twin"]) == 1
    err = capsys.readouterr().err
    assert "FAILED llada-twin (adapter llada-twin) in phase 'score_after'" in err
    assert "forget log-prob after the edit is not finite" in err
    record = json.loads((out / "llada-twin.json").read_text())
    assert record["status"] == "failed" and record["failed_phase"] == "score_after"


def test_unknown_adapter_exits_nonzero_naming_it(tmp_path, capsys):
    out = tmp_path / "smoke"
    assert smoke.main([*TINY, "--out", str(out), "--backbones", "no-such-twin"]) == 1
    err = capsys.readouterr().err
    assert "FAILED no-such-twin (adapter no-such-twin) in phase 'build'" in err
    assert "unknown backbone adapter 'no-such-twin'" in err
    record = json.loads((out / "no-such-twin.json").read_text())
    assert record["status"] == "failed" and record["failed_phase"] == "build"
    assert "FAILED in build" in (out / "summary.md").read_text()


def test_cli_exit_status_is_the_smoke_result(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "harness.smoke", "--device", "cpu", "--out",
                           str(tmp_path), "--n-forget", "0"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2 and "must be >= 1" in proc.stderr


@pytest.mark.parametrize("argv, message", [
    (["--device", "cuda:0"], "no CUDA device"),
    (["--device", "cpu", "--n-forget", "0"], "must be >= 1"),
])
def test_bad_arguments_exit_2(tmp_path, capsys, argv, message, monkeypatch):
    monkeypatch.setattr(smoke.torch.cuda, "is_available", lambda: False)
    assert smoke.main(["--out", str(tmp_path), *argv]) == 2
    assert message in capsys.readouterr().err
