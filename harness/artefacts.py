"""Files the harness reads back (checkpoints, edit memories): one named error when damaged,
and the content manifest that lets a loader tell an intact copy from an edited one.

`DamagedArtefact(path, what)` is raised for a file that exists but cannot be what it claims
(truncated or corrupt safetensors, unparsable JSON, a tokenizer file cut short, a file whose
bytes differ from the manifest written when it was saved). Its message is `<path>: <what>`;
the command lines print it as `error: <path>: <what>` and exit 2.

The manifest (`harness_content.json`, next to the files it covers) records the size and
sha256 of every file of a folder at the moment it was written:
    {"format": 1, "files": {name: {"bytes": n, "sha256": hex}}, ...extra keys}
`verify_manifest` compares a folder with it. A folder without a manifest (a hub snapshot, a
checkpoint written elsewhere) is not checked.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterable

CONTENT_FILE = "harness_content.json"
MANIFEST_FORMAT = 1
CONTENT_DIFFERS = "content differs from the manifest written when it was saved: edited or truncated"
_CHUNK = 1 << 20


# Content checks of saved folders: files above this are checked by size only unless every
# byte is asked for (VERIFY_ENV=all); VERIFY_ENV=off skips the check (harness.backbones.snapshot
# .verify_content, and the workflow's plan-time check of its own checkpoints).
VERIFY_HASH_MAX_BYTES = 256 * 2**20
VERIFY_ENV = "HARNESS_VERIFY_CONTENT"  # "all": hash every file; "off": no check; unset: default


class DamagedArtefact(ValueError):
    """A file that exists but is truncated, corrupt or edited since it was saved."""

    def __init__(self, path: str | os.PathLike, what: str):
        self.path = str(path)
        self.what = what
        super().__init__(f"{self.path}: {what}")

    def __reduce__(self):  # picklable (worker processes re-raise it)
        return type(self), (self.path, self.what)


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def read_json(path: str | os.PathLike, kind: str = "JSON") -> Any:
    """Parse a JSON file; a file that is not valid JSON (UTF-8) is a `DamagedArtefact`."""
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except json.JSONDecodeError as exc:
        raise DamagedArtefact(path, f"not valid {kind} ({exc}): truncated or corrupt") from None
    except UnicodeDecodeError as exc:
        raise DamagedArtefact(path, f"not valid UTF-8 {kind} ({exc}): corrupt") from None


def write_manifest(directory: str | os.PathLike, names: Iterable[str] | None = None,
                   **extra: Any) -> Path:
    """Write `CONTENT_FILE` into `directory` with the size and sha256 of `names` (default:
    every regular file in it except the manifest itself), plus `extra` keys."""
    folder = Path(directory)
    if names is None:
        names = sorted(p.name for p in folder.iterdir()
                       if p.is_file() and p.name != CONTENT_FILE)
    files = {}
    for name in names:
        path = folder / name
        files[name] = {"bytes": path.stat().st_size, "sha256": sha256_file(path)}
    payload = {"format": MANIFEST_FORMAT, "files": files, **extra}
    target = folder / CONTENT_FILE
    target.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return target


def read_manifest(directory: str | os.PathLike) -> dict[str, Any] | None:
    """The manifest of `directory`, or None when it has none."""
    path = Path(directory) / CONTENT_FILE
    if not path.is_file():
        return None
    manifest = read_json(path, "content manifest JSON")
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict) or not all(
            isinstance(e, dict) and isinstance(e.get("bytes"), int)
            and isinstance(e.get("sha256"), str) for e in files.values()):
        raise DamagedArtefact(path, "not a content manifest (no 'files' with 'bytes' and "
                                    "'sha256' per file): corrupt")
    return manifest


def verify_manifest(directory: str | os.PathLike, hash_max_bytes: int | None = None
                    ) -> dict[str, Any] | None:
    """Check `directory` against its manifest (if any); returns the manifest.

    Every listed file must exist with the recorded size; its sha256 is compared too unless
    the file is larger than `hash_max_bytes` (None: hash every file). The first file that
    differs raises `DamagedArtefact`. Files the manifest does not list are ignored.
    """
    folder = Path(directory)
    manifest = read_manifest(folder)
    if manifest is None:
        return None
    for name, entry in manifest["files"].items():
        path = folder / name
        if not path.is_file():
            raise DamagedArtefact(path, f"missing: {CONTENT_FILE} lists it as part of this "
                                        f"folder when it was saved")
        size = path.stat().st_size
        if size != entry["bytes"]:
            raise DamagedArtefact(path, f"{CONTENT_DIFFERS} ({size} bytes, {entry['bytes']} "
                                        f"when saved)")
        if hash_max_bytes is not None and size > hash_max_bytes:
            continue
        if sha256_file(path) != entry["sha256"]:
            raise DamagedArtefact(path, f"{CONTENT_DIFFERS} (sha256 differs, same size)")
    return manifest


__all__ = ["CONTENT_DIFFERS", "CONTENT_FILE", "DamagedArtefact", "read_json", "read_manifest",
           "sha256_file", "verify_manifest", "write_manifest"]
