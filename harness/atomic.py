"""Atomic writes: a result is either absent or complete, never half-written.

Everything is written to a temporary sibling and renamed into place with `os.replace`
(atomic on POSIX within one file system); on any error the temporary is removed. A process
killed mid-write cannot remove its temporary: temporaries are named after their writer's
pid (`.<name>.tmp<pid>.*`), and the next write to the same target removes those whose
writer is gone (`clean_stale_temps`).
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any


class NotWritable(OSError):
    """An output directory the job cannot write to (checked before the work starts)."""


def check_writable(directory: str | os.PathLike) -> Path:
    """Create `directory` if needed and prove a file can be written there; NotWritable
    names the directory otherwise (so a read-only results folder fails a job at its start,
    not at its last write)."""
    folder = Path(directory)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-probe.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise NotWritable(f"{folder}: output directory is not writable "
                          f"({exc.strerror or exc})") from None
    return folder


def _temp_prefix(target: Path) -> str:
    return f".{target.name}.tmp{os.getpid()}."


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def clean_stale_temps(target: str | os.PathLike) -> list[Path]:
    """Remove the temporaries of `target` left by writers that no longer run (killed
    mid-write); returns what was removed. A live writer's temporary is left alone."""
    target = Path(target)
    if not target.parent.is_dir():
        return []
    pattern = re.compile(rf"^\.{re.escape(target.name)}\.tmp(\d+)\.")
    removed = []
    for entry in target.parent.iterdir():
        match = pattern.match(entry.name)
        if match is None or _alive(int(match.group(1))):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed


@contextmanager
def atomic_file(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to `path` (same suffix, so writers that infer the
    format from it work); it replaces `path` when the block succeeds."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temps(target)
    fd, tmp_name = tempfile.mkstemp(prefix=_temp_prefix(target), dir=target.parent,
                                    suffix=target.suffix if suffix is None else suffix)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, 0o644)  # mkstemp creates 0600
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write `text` (UTF-8) to `path` atomically, fsynced before the rename."""
    with atomic_file(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
    return Path(path)


class NonFiniteJSONError(ValueError):
    """A JSON payload holding NaN or an infinity (strict JSON has neither); names the file
    and the key path of each such value."""


def non_finite_paths(payload: Any, prefix: str = "") -> list[tuple[str, float]]:
    """(key path, value) of every NaN / infinity in `payload` (mappings and lists/tuples
    walked; a path is keys and list indices joined by '/'), in document order."""
    if isinstance(payload, float):
        return [] if math.isfinite(payload) else [(prefix or "(top level)", payload)]
    if isinstance(payload, Mapping):
        items = ((str(k), v) for k, v in payload.items())
    elif isinstance(payload, (list, tuple)):
        items = ((str(i), v) for i, v in enumerate(payload))
    else:
        return []
    found: list[tuple[str, float]] = []
    for key, value in items:
        found += non_finite_paths(value, f"{prefix}/{key}" if prefix else key)
    return found


def non_finite_message(paths: list[tuple[str, float]]) -> str:
    """"non-finite number nan at 'a/b' (JSON has no NaN or Infinity)[; also at ...]"."""
    first, value = paths[0]
    return (f"non-finite number {value!r} at '{first}' (JSON has no NaN or Infinity)"
            + also_at(paths))


def also_at(paths: list[tuple[str, float]], shown: int = 5) -> str:
    """"; also at 'x', 'y'" for the non-finite values after the first ('' if none)."""
    rest = [p for p, _ in paths[1:]]
    if not rest:
        return ""
    more = f" and {len(rest) - shown} more" if len(rest) > shown else ""
    return "; also at " + ", ".join(f"'{p}'" for p in rest[:shown]) + more


def dumps_strict(payload: Any, source: str | os.PathLike = "<json>", **kwargs: Any) -> str:
    """`json.dumps(payload, allow_nan=False, **kwargs)`; a NaN / infinity raises
    NonFiniteJSONError naming `source` and the key path holding it."""
    try:
        return json.dumps(payload, allow_nan=False, **kwargs)
    except ValueError as exc:
        paths = non_finite_paths(payload)
        if not paths:  # not a non-finite number (e.g. a circular reference): not ours
            raise
        raise NonFiniteJSONError(f"{source}: {non_finite_message(paths)}") from exc


def write_json_atomic(path: str | os.PathLike, payload: Any, allow_nan: bool = False) -> Path:
    """Write `payload` as indented, key-sorted, strict JSON to `path` atomically.

    A NaN or an infinity raises NonFiniteJSONError naming `path` and the key path holding
    it, and nothing is written. `allow_nan` is accepted for the callers that pass
    `allow_nan=False` explicitly; True is refused (no file of this project holds NaN)."""
    if allow_nan:
        raise ValueError("write_json_atomic writes strict JSON only (allow_nan=True refused)")
    text = dumps_strict(payload, path, indent=2, sort_keys=True) + "\n"
    return write_text_atomic(path, text)


@contextmanager
def atomic_directory(directory: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling directory that replaces `directory` when the block succeeds."""
    target = Path(directory)
    target.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temps(target)
    tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(target), dir=target.parent))
    try:
        yield tmp
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
