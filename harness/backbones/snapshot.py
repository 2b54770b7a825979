"""Local checkpoint snapshots: find them, fingerprint them, load them natively, write them.

A snapshot is a folder in a model's own on-disk format: `config.json` (the upstream
configuration's field names), safetensors weights (`model.safetensors`, or shards listed
by `model.safetensors.index.json`) and tokenizer files. The real checkpoints are read
from the Hugging Face cache (`.../models--org--name/snapshots/<commit>/`) without any
network access; structural twins and fine-tuned copies are written in the same format
and read back through the same code.

Loading builds the model on the meta device (no memory), then assigns each tensor of
each shard to its parameter, converted to the run's dtype and moved to the run's device
one tensor at a time: the host holds at most one tensor beyond what is already placed.
No pickle is ever read: `.bin`/`.pt` weights are refused.

A damaged file (a safetensors file cut short or with a corrupt header, an unparsable
config.json or index) raises `DamagedArtefact` naming it. A folder written by `save_model`'s
callers (`NativeBackbone.save_pretrained`) carries a content manifest (`harness_content.json`:
size and sha256 of every file, see `harness.artefacts`); `verify_content` checks a folder
against it after loading, so a file edited or truncated since it was saved is named too.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from harness.artefacts import (CONTENT_FILE, DamagedArtefact, read_json, read_manifest,
                               verify_manifest, write_manifest)
from harness.atomic import atomic_directory
from harness.backbones.models.family import ModelFamily

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
PICKLE_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json", "model.pt")
# Written by this project next to a fine-tuned copy: the snapshot the weights started from.
LINEAGE_FILE = "harness_lineage.json"
# Files above this size are checked against the content manifest by size only, unless
# asked (`verify_content(hash_all=True)` or HARNESS_VERIFY_CONTENT=all): hashing a real
# checkpoint's multi-GB shards on every load costs seconds per GB; the twins, configs and
# tokenizer files are far below it and are always hashed.
from harness.artefacts import VERIFY_ENV, VERIFY_HASH_MAX_BYTES  # noqa: E402  (re-exported)


class SnapshotError(ValueError):
    """A snapshot folder that cannot be loaded (missing, incomplete or mismatched files)."""


@dataclass(frozen=True)
class SnapshotInfo:
    """Where a model's files came from; recorded with every result."""

    directory: str
    revision: str | None  # the cache snapshot's commit hash; None for a plain folder
    config_sha256: str
    index_sha256: str  # of the safetensors index (or of the single file's header)
    base: dict[str, Any] | None = None  # the pretrained snapshot a fine-tuned copy came from

    def as_record(self) -> dict[str, Any]:
        return asdict(self)


# ---- finding a snapshot ----------------------------------------------------------------
def cache_revision(directory: str | os.PathLike) -> str | None:
    """The commit hash of a Hugging Face cache snapshot folder (`.../snapshots/<sha>`)."""
    path = Path(directory).resolve()
    if path.parent.name == "snapshots" and path.parent.parent.name.startswith("models--"):
        return path.name
    return None


def find_cached_snapshot(hf_id: str, revision: str | None) -> Path:
    """The local cache snapshot of `hf_id` (never downloads). A pinned `revision` must be
    the snapshot in use; without one, the cache's `refs/main` decides."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        path = Path(snapshot_download(hf_id, revision=revision, local_files_only=True))
    except (LocalEntryNotFoundError, FileNotFoundError, OSError) as exc:
        raise SnapshotError(
            f"{hf_id}{'@' + revision if revision else ''} is not in the local Hugging Face cache "
            f"({os.environ.get('HF_HUB_CACHE') or os.environ.get('HF_HOME') or '~/.cache/huggingface'}); "
            f"download it first (e.g. `hf download {hf_id}`) or set the backbone's 'path' to a "
            f"snapshot folder ({exc.__class__.__name__})") from None
    found = cache_revision(path)
    if revision and found and revision != found and len(revision) == 40:
        raise SnapshotError(f"{hf_id}: pinned revision {revision} but the cache snapshot in use "
                            f"is {found}")
    return path


def fingerprint(directory: str | os.PathLike) -> SnapshotInfo:
    path = Path(directory)
    config = path / CONFIG_FILE
    if not config.is_file():
        raise SnapshotError(f"{config}: config.json missing (is {path} a model snapshot?)")
    index = path / INDEX_FILE
    shards = weight_shards(path)  # names the problem if the weights are missing or pickled
    if index.is_file():
        index_digest = _sha256(index.read_bytes())
    else:
        index_digest = _sha256(_safetensors_header(shards[0]))
    lineage = path / LINEAGE_FILE
    base = read_json(lineage).get("base") if lineage.is_file() else None
    return SnapshotInfo(str(path), cache_revision(path), _sha256(config.read_bytes()),
                        index_digest, base)


def lineage_of(info: SnapshotInfo | None) -> dict[str, Any] | None:
    """What a copy saved from a model loaded from `info` records as its base snapshot."""
    if info is None:
        return None
    if info.base is not None:
        return info.base
    return {k: v for k, v in info.as_record().items() if k != "base"}


def check_pin(info: SnapshotInfo, pinned: str | None, name: str) -> None:
    """An explicit pin in the config must be the snapshot in use."""
    if pinned and info.revision and pinned != info.revision:
        raise SnapshotError(f"backbone '{name}': config pins revision {pinned} but the snapshot "
                            f"in use ({info.directory}) is {info.revision}")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _safetensors_header(path: Path) -> bytes:
    """The JSON header of a safetensors file, after checking that the file holds exactly the
    tensor bytes the header declares (a truncated or corrupt file raises DamagedArtefact)."""
    if not path.is_file():
        raise SnapshotError(f"{path}: weights missing ({WEIGHTS_FILE} or {INDEX_FILE} expected)")
    size = path.stat().st_size
    with path.open("rb") as handle:
        prefix = handle.read(8)
        if len(prefix) < 8:
            raise DamagedArtefact(path, f"truncated: {size} bytes, less than the 8-byte header "
                                        f"length of a safetensors file")
        length = int.from_bytes(prefix, "little")
        if length > size - 8:
            raise DamagedArtefact(path, f"truncated or not safetensors: the header length "
                                        f"says {length} bytes, the file holds {size - 8} after it")
        header = handle.read(length)
    try:
        entries = json.loads(header)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DamagedArtefact(path, f"corrupt safetensors header (not valid JSON: {exc})") from None
    if not isinstance(entries, dict):
        raise DamagedArtefact(path, "corrupt safetensors header (not a JSON object)")
    end = 0
    for key, entry in entries.items():
        if key == "__metadata__":
            continue
        try:
            end = max(end, int(entry["data_offsets"][1]))
        except (KeyError, TypeError, IndexError, ValueError):
            raise DamagedArtefact(path, f"corrupt safetensors header (tensor '{key}' has no "
                                        f"data_offsets)") from None
    held = size - 8 - length
    if held != end:
        raise DamagedArtefact(path, f"{'truncated' if held < end else 'corrupt'}: the header "
                                    f"declares {end} bytes of tensor data, the file holds {held}")
    return header


# ---- reading ---------------------------------------------------------------------------
def read_config(directory: str | os.PathLike) -> dict[str, Any]:
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise SnapshotError(f"{path}: config.json missing (is {directory} a model snapshot?)")
    raw = read_json(path)
    if not isinstance(raw, dict):
        raise DamagedArtefact(path, "expected a JSON object")
    return raw


def weight_shards(directory: str | os.PathLike) -> list[Path]:
    """The safetensors files of a snapshot, in index order (refuses pickle weights)."""
    path = Path(directory)
    index = path / INDEX_FILE
    if index.is_file():
        raw = read_json(index, "safetensors index JSON")
        weight_map = raw.get("weight_map") if isinstance(raw, dict) else None
        if not isinstance(weight_map, dict) or not all(isinstance(v, str)
                                                       for v in weight_map.values()):
            raise DamagedArtefact(index, "no 'weight_map' of tensor name -> shard file")
        shards = [path / name for name in dict.fromkeys(weight_map.values())]
    elif (path / WEIGHTS_FILE).is_file():
        shards = [path / WEIGHTS_FILE]
    else:
        pickles = [name for name in PICKLE_WEIGHTS if (path / name).exists()]
        hint = (f"; found {', '.join(pickles)}: pickle weights are never loaded (convert them "
                f"to safetensors)" if pickles else "")
        raise SnapshotError(f"{path}: no safetensors weights ({WEIGHTS_FILE} or {INDEX_FILE}){hint}")
    missing = [str(s) for s in shards if not s.is_file()]
    if missing:
        raise SnapshotError(f"{path}: shard(s) listed in {INDEX_FILE} are missing: "
                            f"{', '.join(missing[:3])}")
    return shards


def build_on_meta(family: ModelFamily, cfg: Any) -> nn.Module:
    with torch.device("meta"):
        return family.build(cfg)


def load_model(directory: str | os.PathLike, family: ModelFamily, dtype: torch.dtype,
               device: str | torch.device = "cpu") -> tuple[nn.Module, Any]:
    """(model, typed config) of the snapshot in `directory`, built by `family`."""
    path = Path(directory)
    cfg = family.parse_config(read_config(path), str(path / CONFIG_FILE))
    shards = weight_shards(path)  # before building: a bad folder fails fast
    model = build_on_meta(family, cfg)
    params = dict(model.named_parameters(remove_duplicate=False))
    assigned: set[str] = set()
    for shard in shards:
        _safetensors_header(shard)  # a truncated or corrupt shard is named before reading it
        try:
            handle_context = safe_open(str(shard), framework="pt", device="cpu")
        except SafetensorError as exc:
            raise DamagedArtefact(shard, f"not a readable safetensors file ({exc})") from None
        with handle_context as handle:
            for key in handle.keys():
                if key not in params:
                    raise SnapshotError(f"{shard}: tensor '{key}' has no parameter in the native "
                                        f"{family.name} model (a layout this project does not "
                                        f"implement?)")
                if key in assigned:
                    raise SnapshotError(f"{shard}: tensor '{key}' appears in two shards")
                try:
                    tensor = handle.get_tensor(key)
                except SafetensorError as exc:
                    raise DamagedArtefact(shard, f"tensor '{key}' cannot be read ({exc})") from None
                expected = tuple(params[key].shape)
                if tuple(tensor.shape) != expected:
                    raise SnapshotError(f"{shard}: tensor '{key}' has shape {tuple(tensor.shape)}, "
                                        f"the config implies {expected}")
                if tensor.is_floating_point() and not torch.isfinite(tensor).all():
                    raise SnapshotError(f"{shard}: tensor '{key}' holds NaN or infinite values")
                _assign(model, key, tensor.to(device=device, dtype=dtype))
                assigned.add(key)
    missing = sorted(set(params) - assigned)
    if missing:
        raise SnapshotError(f"{path}: {len(missing)} parameter(s) of the {family.name} model have "
                            f"no tensor in the snapshot: {', '.join(missing[:5])}")
    family.reset_buffers(model)
    return model.to(device=device), cfg


def _assign(model: nn.Module, key: str, tensor: torch.Tensor) -> None:
    owner_path, _, name = key.rpartition(".")
    owner = model.get_submodule(owner_path) if owner_path else model
    owner._parameters[name] = nn.Parameter(tensor, requires_grad=True)


def verify_content(directory: str | os.PathLike, hash_all: bool | None = None
                   ) -> dict[str, Any] | None:
    """Check a snapshot folder against the content manifest written when it was saved;
    returns the manifest (None: the folder has none, e.g. a hub snapshot, and is not checked).

    Every listed file must exist with its recorded size, and hash to its recorded sha256;
    the first that differs raises `DamagedArtefact` ("content differs from the manifest
    written when it was saved: edited or truncated"). Cost: files above
    `VERIFY_HASH_MAX_BYTES` (256 MiB: the shards of a real 7-8B checkpoint, not the twins)
    are checked by size only, which catches truncation but not an edit of the same size,
    unless `hash_all` is True or the environment sets HARNESS_VERIFY_CONTENT=all (then every
    byte is hashed: about a second per GB). HARNESS_VERIFY_CONTENT=off skips the check.
    """
    mode = os.environ.get(VERIFY_ENV, "").strip().lower()
    if mode not in ("", "all", "off"):
        raise SnapshotError(f"{VERIFY_ENV}={mode!r}: expected 'all', 'off' or unset")
    if hash_all is None:
        if mode == "off":
            return None
        hash_all = mode == "all"
    return verify_manifest(directory, None if hash_all else VERIFY_HASH_MAX_BYTES)


def saved_backbone(directory: str | os.PathLike) -> dict[str, Any] | None:
    """The backbone record (`name`, `adapter`, `options`, ...) that `write_content_manifest`
    stored with a saved folder; None for a folder without one."""
    manifest = read_manifest(directory)
    record = manifest.get("backbone") if manifest else None
    return dict(record) if isinstance(record, dict) else None


def write_content_manifest(directory: str | os.PathLike,
                           backbone: dict[str, Any] | None = None) -> Path:
    """Write the content manifest (size + sha256 of every file now in `directory`) and the
    record of the backbone that saved it. Call it after every file is written."""
    extra = {"backbone": backbone} if backbone is not None else {}
    return write_manifest(directory, **extra)


# ---- writing ---------------------------------------------------------------------------
def save_model(model: nn.Module, family: ModelFamily, cfg: Any, directory: Path,
               max_shard_bytes: int | None = None) -> None:
    """Write `config.json` + safetensors (sharded with an index past `max_shard_bytes`) into
    `directory` (an existing, empty folder: callers wrap this in `atomic_directory`, and call
    `write_content_manifest` once every file of the folder, tokenizer included, is written)."""
    (directory / CONFIG_FILE).write_text(json.dumps(family.config_json(cfg), indent=2,
                                                    sort_keys=True))
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    if max_shard_bytes is None:
        save_file(state, str(directory / WEIGHTS_FILE), metadata={"format": "pt"})
        return
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for key, tensor in state.items():
        nbytes = tensor.numel() * tensor.element_size()
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][key] = tensor
        size += nbytes
    names = [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
    weight_map: dict[str, str] = {}
    for name, shard in zip(names, shards):
        save_file(shard, str(directory / name), metadata={"format": "pt"})
        weight_map.update({key: name for key in shard})
    total = sum(t.numel() * t.element_size() for t in state.values())
    (directory / INDEX_FILE).write_text(json.dumps(
        {"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2, sort_keys=True))


__all__ = ["CONTENT_FILE", "DamagedArtefact", "SnapshotError", "SnapshotInfo",
           "atomic_directory", "cache_revision", "check_pin", "find_cached_snapshot",
           "fingerprint", "load_model", "read_config", "save_model", "saved_backbone",
           "verify_content", "weight_shards", "write_content_manifest"]
