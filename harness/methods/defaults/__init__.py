"""Each method's defaults, stated once: one YAML per method in this folder (package data).

A file holds `config:` (the defaults of the method's `method_config` keys, read by the
method's typed config dataclass), optionally `extends:` (a shared file whose `config` it
builds on, e.g. `gradient_loop` for the gradient baselines' training loop) and, for the
gradient baselines, `learning_rate:` (the learning rate when the config's `lr` is null, by
whether the backbone was trained here: see `learning_rate`). Reading imports no torch, so the
workflow can use it when it plans the DAG.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

import yaml

SECTIONS = frozenset({"extends", "config", "learning_rate"})


@cache
def _load(stem: str) -> dict[str, Any]:
    path = resources.files(__name__).joinpath(f"{stem}.yaml")
    if not path.is_file():
        known = sorted(p.name[:-5] for p in resources.files(__name__).iterdir()
                       if p.name.endswith(".yaml"))
        raise KeyError(f"no defaults file '{stem}.yaml' in harness/methods/defaults; "
                       f"known: {', '.join(known)}")
    data = yaml.safe_load(path.read_text()) or {}
    unknown = sorted(set(data) - SECTIONS)
    if unknown:
        raise ValueError(f"{stem}.yaml: unknown section(s) {', '.join(unknown)}; "
                         f"known: {', '.join(sorted(SECTIONS))}")
    return data


def method_defaults(name: str) -> dict[str, Any]:
    """The default `method_config` of method (or shared file) `name`: the `config` of the
    file it extends, updated with its own. A fresh dict (callers may modify it)."""
    data = _load(name)
    base = method_defaults(data["extends"]) if "extends" in data else {}
    return {**base, **dict(data.get("config") or {})}


def learning_rate(name: str, trained_here: bool) -> float:
    """Gradient method `name`'s learning rate when its config leaves `lr` null: the
    `trained_here` rate for backbones trained by this project (BackboneSpec profile field
    `trained_here`), else the `hub` rate (pretrained checkpoints)."""
    rates = _load(name).get("learning_rate")
    if not rates:
        raise KeyError(f"{name}.yaml states no learning_rate")
    return float(rates["trained_here" if trained_here else "hub"])
