"""Compare the job records of two runs of the same DAG in every non-timing field.

    python tests/slurm/compare_records.py <workdir A> <workdir B>

prints, per record under results/runs/, the fields that differ (exit 1) or `same` (exit 0).
Timing and memory fields (names ending in `_s` or `_bytes`, and the per-phase seconds
`*phase_seconds`) are left out: they measure the machine, not the result. Everything else,
the fine-tuned weights' fingerprint and every score included, must be equal.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

TIMING_SUFFIXES = ("_s", "_bytes", "phase_seconds")


def is_timing(key: str) -> bool:
    return key.endswith(TIMING_SUFFIXES)


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Leaf path -> value, without timing fields."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, sub in value.items():
            if is_timing(key):
                continue
            out.update(flatten(sub, f"{prefix}.{key}" if prefix else key))
        return out
    if isinstance(value, list):
        out = {}
        for i, sub in enumerate(value):
            out.update(flatten(sub, f"{prefix}[{i}]"))
        return out if value else {prefix: []}
    return {prefix: value}


def record_diff(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """`path: a != b` for every non-timing leaf that differs or exists on one side only."""
    fa, fb = flatten(a), flatten(b)
    missing = object()
    return [f"{path}: {fa.get(path, missing)!r} != {fb.get(path, missing)!r}"
            for path in sorted(set(fa) | set(fb))
            if fa.get(path, missing) != fb.get(path, missing)]


def records(workdir: Path) -> dict[str, dict[str, Any]]:
    root = workdir / "results" / "runs"
    return {str(p.relative_to(root)): json.loads(p.read_text())
            for p in sorted(root.rglob("*.json"))}


def compare_runs(a: Path, b: Path) -> dict[str, list[str]]:
    """Record name -> its differences; a record present in one run only is a difference."""
    ra, rb = records(a), records(b)
    out = {}
    for name in sorted(set(ra) | set(rb)):
        if name not in ra or name not in rb:
            out[name] = [f"only in {a if name in ra else b}"]
        else:
            out[name] = record_diff(ra[name], rb[name])
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    result = compare_runs(Path(argv[0]), Path(argv[1]))
    for name, diffs in result.items():
        print(f"{name}: {'same' if not diffs else f'{len(diffs)} field(s) differ'}")
        for line in diffs:
            print(f"    {line}")
    return 0 if result and not any(result.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
