"""Registry of methods: config names -> Method classes (no if/else chains)."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

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

# Built-in method name -> "module:function" that checks its `method_config` entry (raises
# MethodConfigError). These modules import neither torch nor a model, so the workflow checks
# method names and configs when it plans the DAG without importing the method modules above.
# Method.validate_config calls the same function (tests/harness/test_plan_checks.py checks
# that this table and the registered methods name the same methods).
BUILTIN_CONFIG_VALIDATORS: dict[str, str] = {
    "timerome": "harness.timerome.config:validate_config",
    "gradient_ascent": "baselines.configs:validate_gradient_ascent",
    "graddiff": "baselines.configs:validate_graddiff",
    "npo": "baselines.configs:validate_npo",
    "rome": "baselines.configs:validate_rome",
    "memit": "baselines.configs:validate_memit",
}

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


def known_method_names() -> list[str]:
    """The built-in method names and any registered since, without importing the built-in
    method modules (no torch): what `method_names()` lists once they are imported."""
    return sorted(set(_METHODS) | set(BUILTIN_CONFIG_VALIDATORS))


def builtin_config_validator(name: str) -> Callable[[Mapping[str, Any]], None] | None:
    """The config validator of built-in method `name` (imported without torch), or None."""
    if name not in BUILTIN_CONFIG_VALIDATORS:
        return None
    module, function = BUILTIN_CONFIG_VALIDATORS[name].split(":")
    return getattr(importlib.import_module(module), function)


def validate_method_config(name: str, config: Mapping[str, Any]) -> None:
    """Check `config` for method `name` with the method's own parser: Method.validate_config
    of a registered class, else the built-in's validator (no method module imported, so no
    torch). Raises KeyError for an unknown method, MethodConfigError (a ValueError) for a
    config the method would refuse."""
    if name in _METHODS:
        _METHODS[name].validate_config(config)
        return
    check = builtin_config_validator(name)
    if check is None:
        raise KeyError(f"unknown method '{name}'; known: {', '.join(known_method_names())}")
    check(config)


def get_method(name: str, config: dict[str, Any] | None = None) -> Method:
    _import_builtins()
    try:
        cls = _METHODS[name]
    except KeyError:
        raise KeyError(f"unknown method '{name}'; known: {', '.join(sorted(_METHODS))}") from None
    return cls(config)
