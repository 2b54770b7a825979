"""Planted job records for the harness tests and benchmarks."""

from __future__ import annotations

from pathlib import Path

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


def set_cell(path: Path, method: str, column: str, value: str) -> None:
    """Overwrite one cell of a runs CSV (the row of `method`) in place: a malformed-input probe."""
    lines = path.read_text().splitlines()
    header = lines[0].split(",")
    for i, line in enumerate(lines[1:], 1):
        cells = line.split(",")
        if cells[header.index("method")] == method:
            cells[header.index(column)] = value
            lines[i] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")
