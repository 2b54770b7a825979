"""The smoke's measurement checks on CPU: the forced OOM in a training step is classified
`oom`; the CUDA-only checks are skipped with their reason; a failed check fails the smoke."""

from __future__ import annotations

import json

import torch

import harness.measure as measure
from harness import smoke


def test_measurement_only_on_cpu_records_each_check(tmp_path, capsys):
    out = tmp_path / "smoke"
    assert smoke.main(["--device", "cpu", "--out", str(out), "--measurement-only"]) == 0
    checks = {c["name"]: c for c in json.loads((out / "measurement.json").read_text())["checks"]}
    assert set(checks) == {"device_identity", "fixed_allocations", "forced_oom",
                           "timing_vs_cuda_events"}
    oom = checks["forced_oom"]
    assert oom["status"] == "passed" and oom["detail"]["status"] == "oom"
    assert oom["detail"]["error"].startswith("OutOfMemoryError: CUDA out of memory")
    for name in ("device_identity", "fixed_allocations", "timing_vs_cuda_events"):
        assert checks[name] == {"name": name, "status": "skipped", "detail": {},
                                "reason": "CUDA only; device is cpu"}
    assert "| forced_oom | passed |" in (out / "summary.md").read_text()
    assert "measurement check device_identity: skipped: CUDA only" in capsys.readouterr().out


def test_oom_taken_for_another_error_fails_the_smoke(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(measure, "is_oom", lambda exc: isinstance(exc, MemoryError))
    out = tmp_path / "smoke"
    assert smoke.main(["--device", "cpu", "--out", str(out), "--measurement-only"]) == 1
    check = json.loads((out / "measurement.json").read_text())["checks"][2]
    assert check["name"] == "forced_oom" and check["status"] == "failed"
    assert "the forced OOM was not classified as oom: OutOfMemoryError" in check["reason"]


def test_forced_oom_is_raised_inside_the_training_step():
    try:
        smoke._training_step(torch.device("cpu"), None)
    except torch.OutOfMemoryError as exc:
        assert measure.is_oom(exc)
    else:
        raise AssertionError("the training step did not raise torch.OutOfMemoryError")
