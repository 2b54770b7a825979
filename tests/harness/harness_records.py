"""Planted job records for the harness tests and benchmarks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.results.record import Record

FINGERPRINT = {"device": "cpu", "device_name": "Test CPU", "device_class": "cpu",
               "driver": None, "torch": "2.x", "transformers": "5.x", "git_commit": "abc123",
               "config_hash": "0123456789abcdef"}


def make_record(backbone: str = "bb", method: str = "timerome", wall: float = 1.0,
                forget: tuple[float, float] = (-10.0, -60.0),
                retain: tuple[float, float] = (-8.0, -8.5), peak: int = 110 * 2**20,
                inference: int = 100 * 2**20, converged: bool = True, collapsed: bool = False,
                n_facts: int = 10, seed: int = 0, experiment: str = "table1",
                device_class: str = "cpu") -> dict:
    """A complete, schema-valid job record."""
    return {
        "schema_version": 1, "status": "ok", "experiment": experiment, "backbone": backbone,
        "method": method, "split": "forget01", "n_facts": n_facts, "seed": seed,
        "estimator": "full_mask", "n_retain_eval": 40,
        "forget_logp_before": forget[0], "forget_logp_after": forget[1],
        "retain_logp_before": retain[0], "retain_logp_after": retain[1],
        "forget_rougeL_before": 0.9, "forget_rougeL_after": 0.25, "retain_rougeL_after": 0.8,
        "forget_quality": 0.0123, "model_utility": 0.5,
        "wall_clock_s": wall, "job_wall_s": wall + 3.0,
        "phase_seconds": {"load": 0.5, "edit": wall}, "method_phase_seconds": {"solve": wall},
        "peak_mem_bytes": peak, "inference_mem_bytes": inference,
        "extra_mem_bytes": max(0, peak - inference), "model_mem_bytes": 50 * 2**20,
        "nvml_peak_bytes": None, "memory_source": "cpu_rss",
        "converged": converged, "collapsed": collapsed, "collapse_reason": None,
        "steps": None if method == "timerome" else 20,
        "device": "cpu", "device_class": device_class, "git_commit": "abc123",
        "subject_source": {"given": n_facts, "inferred": 0, "fallback_last_token": 0},
        "fingerprint": dict(FINGERPRINT, device_class=device_class),
        "method_config": {}, "details": {}, "error": None,
    }


def typed(records: list[dict]) -> list[Record]:
    """The planted records as the reports read them (harness.results.store.load_record)."""
    return [Record.from_dict(r) for r in records]


def write_records(directory: Path, records: list[dict]) -> Path:
    """Each record as a JSON file in `directory` (created), written as given (unvalidated, so
    that a probe can plant a malformed one); returns `directory`."""
    directory.mkdir(parents=True)
    for i, record in enumerate(records):
        (directory / f"{i:02d}_{record['method']}.json").write_text(json.dumps(record))
    return directory


def set_field(directory: Path, method: str, field: str, value: Any) -> Path:
    """Overwrite one field of the record of `method` in `directory` (a malformed-input probe;
    a value of DELETE removes the field); returns that record's path."""
    (path,) = sorted(directory.glob(f"*_{method}.json"))
    record = json.loads(path.read_text())
    if value is DELETE:
        del record[field]
    else:
        record[field] = value
    path.write_text(json.dumps(record))
    return path


DELETE = object()  # set_field: remove the field
