"""Registry of backbone adapters: config names -> adapter classes (no if/else chains)."""

from __future__ import annotations

import importlib
from typing import Callable, TypeVar

from harness.backbones.base import Backbone, BackboneSpec

_ADAPTERS: dict[str, Callable[[BackboneSpec], Backbone]] = {}

T = TypeVar("T")


def register_adapter(key: str) -> Callable[[T], T]:
    """Class decorator: `@register_adapter("llada-twin")`; the class is built as cls(spec)."""

    def wrap(cls: T) -> T:
        if key in _ADAPTERS:
            raise ValueError(f"backbone adapter '{key}' registered twice")
        _ADAPTERS[key] = cls  # type: ignore[assignment]
        return cls

    return wrap


# Built-in adapter keys -> the module that registers them. Modules are imported only when
# their adapter is asked for, so a job on the embedded backbone does not pay for importing
# every transformers-based adapter.
BUILTIN_ADAPTER_MODULES: dict[str, str] = {
    "llada-hf": "harness.backbones.adapters.llada",
    "llada-twin": "harness.backbones.adapters.llada",
    "mmada-hf": "harness.backbones.adapters.mmada",
    "mmada-twin": "harness.backbones.adapters.mmada",
    "dream-hf": "harness.backbones.adapters.dream",
    "dream-twin": "harness.backbones.adapters.dream",
    "diffullama-hf": "harness.backbones.adapters.diffullama",
    "diffullama-twin": "harness.backbones.adapters.diffullama",
    "llada-moe-hf": "harness.backbones.adapters.llada_moe",
    "llada-moe-twin": "harness.backbones.adapters.llada_moe",
}


def adapter_names() -> list[str]:
    return sorted(set(_ADAPTERS) | set(BUILTIN_ADAPTER_MODULES))


def adapter_class(key: str) -> Callable[[BackboneSpec], Backbone]:
    """The adapter class registered under `key` (importing its module if needed)."""
    if key not in _ADAPTERS and key in BUILTIN_ADAPTER_MODULES:
        importlib.import_module(BUILTIN_ADAPTER_MODULES[key])
    try:
        return _ADAPTERS[key]
    except KeyError:
        raise KeyError(f"unknown backbone adapter '{key}'; known: {', '.join(adapter_names())}") from None


def load_backbone(spec: BackboneSpec) -> Backbone:
    """Build the adapter named by `spec.adapter` (which loads model and tokenizer)."""
    try:
        factory = adapter_class(spec.adapter)
    except KeyError:
        raise KeyError(f"unknown backbone adapter '{spec.adapter}' for backbone '{spec.name}'; "
                       f"known: {', '.join(adapter_names())}") from None
    return factory(spec)
