"""The one finiteness rule for recorded numbers (`harness.evaluation.finite`)."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from harness.evaluation.finite import finite_or_none, json_safe


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -math.inf, None])
def test_non_finite_and_none_become_none(value):
    assert finite_or_none(value) is None


def test_finite_values_become_floats():
    assert finite_or_none(3) == 3.0 and isinstance(finite_or_none(3), float)
    assert finite_or_none(-0.5) == -0.5


def test_json_safe_cleans_nested_values_and_keeps_the_rest():
    cleaned = json_safe({"a": float("nan"), "b": [1.0, float("inf"), (2, "x")],
                         "c": {"d": -math.inf, "e": True, "f": None}})
    assert cleaned == {"a": None, "b": [1.0, None, [2, "x"]],
                       "c": {"d": None, "e": True, "f": None}}
    json.dumps(cleaned, allow_nan=False)


def test_finite_imports_without_torch():
    code = "import sys, harness.evaluation.finite; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "False"
