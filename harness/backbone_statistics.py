"""Per-backbone statistics computed once and reused by every edit (issue 16, item 2).

Some methods need statistics of the backbone that do not depend on the forget set: the
retain key covariance, gate calibration states and TIE profile (the edit layer) of
TimeROME-DLM, the key second moments ROME and MEMIT whiten with (ROME keeps such "layer
stats" cached for the same reason). A
method declares them by implementing `Method.backbone_statistics` (and
`MethodInfo.backbone_statistics`); the workflow computes them once per (backbone, method,
retain set, seed) in the `backbone_statistics` job, stores them here as safetensors, and
every edit of that backbone loads them (`EditRequest.statistics`). The one-time cost is
recorded in the file and reported separately from the per-edit cost.

A statistics file names what it was computed from (`Provenance`): the backbone's weights
fingerprint, the retain facts, the seed and the method's config (less the keys the tune
job chooses, which no statistic depends on). `load` refuses a file whose provenance differs
from the edit's, naming the field, so a stale file never feeds an edit.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from harness.atomic import atomic_file
from harness.data.fact import Fact

META_KEY = "timerome_bench"


class StaleStatistics(ValueError):
    """A statistics file computed from another backbone, retain set, seed or config."""


def facts_digest(facts: Sequence[Fact]) -> str:
    """sha256 over the facts' keys, questions and answers, in order."""
    digest = hashlib.sha256()
    for fact in facts:
        digest.update(json.dumps([fact.key, fact.question, fact.answer]).encode())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class Provenance:
    """What a statistics file was computed from (all must match the edit that loads it)."""

    method: str
    weights_fingerprint: str
    retain_digest: str
    n_retain: int
    seed: int
    config_digest: str

    @classmethod
    def of(cls, method: str, weights_fingerprint: str, retain: Sequence[Fact], seed: int,
           config: Mapping[str, Any]) -> "Provenance":
        text = json.dumps(dict(config), sort_keys=True, default=str)
        return cls(method, weights_fingerprint, facts_digest(retain), len(retain), int(seed),
                   hashlib.sha256(text.encode()).hexdigest()[:16])


@dataclass(frozen=True)
class BackboneStatistics:
    """The tensors of one method's statistics, their provenance and their one-time cost."""

    tensors: dict[str, torch.Tensor]
    provenance: Provenance
    seconds: float

    def save(self, path: str | Path) -> None:
        """Write atomically (a partial file never appears under `path`)."""
        meta = {"provenance": asdict(self.provenance), "seconds": self.seconds}
        tensors = {k: v.detach().contiguous().cpu() for k, v in self.tensors.items()}
        with atomic_file(path, suffix=".safetensors") as tmp:
            save_file(tensors, str(tmp), metadata={META_KEY: json.dumps(meta)})

    @classmethod
    def load(cls, path: str | Path, expected: Provenance | None = None) -> "BackboneStatistics":
        """Read `path`; with `expected`, raise StaleStatistics naming the first field that
        differs."""
        path = Path(path)
        with safe_open(str(path), framework="pt") as handle:
            raw = (handle.metadata() or {}).get(META_KEY)
        if raw is None:
            raise StaleStatistics(f"{path}: not a statistics file (no '{META_KEY}' metadata)")
        meta = json.loads(raw)
        provenance = Provenance(**meta["provenance"])
        if expected is not None and provenance != expected:
            for name, want in asdict(expected).items():
                got = getattr(provenance, name)
                if got != want:
                    raise StaleStatistics(
                        f"{path}: computed for {name}={got!r}, this edit has {want!r}; "
                        "delete the file (or rerun the backbone_statistics job)")
        return cls(load_file(str(path)), provenance, float(meta["seconds"]))


def layer_tensors(prefix: str, per_layer: Mapping[int, torch.Tensor]) -> dict[str, torch.Tensor]:
    """{f"{prefix}.{layer}": tensor} for storing a per-layer mapping."""
    return {f"{prefix}.{layer}": value for layer, value in per_layer.items()}


def per_layer(prefix: str, tensors: Mapping[str, torch.Tensor]) -> dict[int, torch.Tensor]:
    """The inverse of `layer_tensors`: {layer: tensor} for the keys under `prefix`."""
    head = prefix + "."
    return {int(k[len(head):]): v for k, v in tensors.items() if k.startswith(head)}
