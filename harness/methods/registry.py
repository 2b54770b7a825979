"""Registry of methods: config names -> Method classes (no if/else chains)."""

from __future__ import annotations

import importlib
from typing import Any, Callable, TypeVar

from harness.methods.base import Method

_METHODS: dict[str, type[Method]] = {}

# Modules whose import registers the built-in methods.
BUILTIN_METHOD_MODULES = (
    "harness.timerome.method",
    "baselines.gradient_ascent",
    "baselines.graddiff",
    "baselines.npo",
    "baselines.rome",
    "baselines.memit",
)

T = TypeVar("T", bound=type)


def register_method(name: str) -> Callable[[T], T]:
    def wrap(cls: T) -> T:
        if name in _METHODS and _METHODS[name] is not cls:
            raise ValueError(f"method '{name}' registered twice")
        cls.name = name
        _METHODS[name] = cls
        return cls

    return wrap


def _import_builtins() -> None:
    for module in BUILTIN_METHOD_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as err:  # a method package not yet present
            if err.name != module:
                raise


def method_names() -> list[str]:
    _import_builtins()
    return sorted(_METHODS)


def get_method(name: str, config: dict[str, Any] | None = None) -> Method:
    _import_builtins()
    try:
        cls = _METHODS[name]
    except KeyError:
        raise KeyError(f"unknown method '{name}'; known: {', '.join(sorted(_METHODS))}") from None
    return cls(config)
