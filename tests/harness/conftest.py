"""Fixtures of the reproduction-harness tests (store, tables, regression, workflow)."""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from harness_records import make_record  # noqa: E402


@pytest.fixture
def record() -> dict:
    return make_record()


@pytest.fixture
def planted_records() -> list[dict]:
    """One backbone, TimeROME + three gradient baselines + ROME.

    gradient_ascent collapses (largest drop, excluded), graddiff converges with the larger
    drop of the two converged ones (the strongest), npo converges with a smaller drop.
    """
    return [
        make_record(method="timerome", wall=2.0, forget=(-10.0, -60.0), peak=101 * 2**20),
        make_record(method="gradient_ascent", wall=1.0, forget=(-10.0, -200.0),
                    retain=(-8.0, -90.0), peak=300 * 2**20, collapsed=True),
        make_record(method="graddiff", wall=16.0, forget=(-10.0, -50.0), peak=250 * 2**20),
        make_record(method="npo", wall=8.0, forget=(-10.0, -30.0), peak=240 * 2**20),
        make_record(method="rome", wall=4.0, forget=(-10.0, -20.0), peak=120 * 2**20,
                    converged=False),
    ]


@pytest.fixture
def copy_records():
    return copy.deepcopy
