"""The one finiteness rule for numbers recorded in results: NaN and +-inf become None.

Results are strict JSON (`harness.atomic` refuses NaN), so every value that may be
non-finite goes through `finite_or_none` (a scalar) or `json_safe` (a nested structure)
before it is written. `require_finite` is the tensor check for code that must stop on a
non-finite value rather than record it.
"""

from __future__ import annotations

import math
from typing import Any


def finite_or_none(value: Any) -> float | None:
    """`float(value)` if it is finite, else None (None stays None)."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def json_safe(value: Any) -> Any:
    """Non-finite floats -> None, recursively through dicts, lists and tuples (lists out).

    Other values (ints, strings, bools, None) pass through unchanged.
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value
