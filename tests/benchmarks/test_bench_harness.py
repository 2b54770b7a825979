"""pytest-benchmark suite of the harness hot paths (run with --benchmark-enable).

Per-job overhead of the reproduction harness: writing a validated record, aggregating
many records, building Table 1, and the cost of one measured phase.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "harness"))

from harness_records import make_record, typed  # noqa: E402  (tests/harness/harness_records.py)

from harness.measure import Measurer  # noqa: E402
from harness.reports.table1 import build_table1  # noqa: E402
from harness.results.aggregate import aggregate, runs_frame  # noqa: E402
from harness.results.store import write_record  # noqa: E402

METHODS = ("timerome", "gradient_ascent", "graddiff", "npo", "rome", "memit")


def many_records(n_backbones: int = 6) -> list[dict]:
    return [make_record(backbone=f"bb{b}", method=m, wall=1.0 + i, seed=0)
            for b in range(n_backbones) for i, m in enumerate(METHODS)]


def test_bench_write_record(benchmark, tmp_path):
    record = make_record()
    path = tmp_path / "r.json"
    benchmark(write_record, path, record)
    assert path.is_file()


def test_bench_aggregate_36_records(benchmark, tmp_path):
    paths = [write_record(tmp_path / f"{i}.json", r) for i, r in enumerate(many_records())]
    frame = benchmark(aggregate, paths)
    assert len(frame) == 36


def test_bench_build_table1(benchmark):
    frame = runs_frame(typed(many_records()))
    table = benchmark(lambda: build_table1(frame).table().markdown())
    assert table.count("\n| bb") == 36


@pytest.mark.parametrize("device", ["cpu"])
def test_bench_measured_phase_overhead(benchmark, device):
    with Measurer(torch.device(device)) as m:
        def one_phase():
            with m.phase("edit", "edit"):
                pass
        benchmark(one_phase)
    assert m.phases
