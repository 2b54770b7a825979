"""Fixtures for harness.data tests."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from harness.data import write_synthetic  # noqa: E402


@pytest.fixture(scope="session")
def default_synth(tmp_path_factory) -> Path:
    """Synthetic corpus with the default arguments (100 authors x 10 facts)."""
    return write_synthetic(tmp_path_factory.mktemp("synth_default"))


@pytest.fixture(scope="session")
def small_synth(tmp_path_factory) -> Path:
    """Small synthetic corpus (20 authors x 5 facts = 100 records)."""
    return write_synthetic(tmp_path_factory.mktemp("synth_small"), authors=20, facts_per_author=5, seed=3)
