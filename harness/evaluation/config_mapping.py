"""Typed option dataclasses from a mapping of overrides (the probes' configs)."""

from __future__ import annotations

from dataclasses import fields
from typing import Any, Mapping, TypeVar

T = TypeVar("T")


def from_mapping(cls: type[T], overrides: Mapping[str, Any] | None, source: str,
                 own_name: str) -> T:
    """`cls` (a dataclass whose defaults are its options' defaults) updated with `overrides`.
    Unknown keys are a ValueError naming them; a ValueError of the class's own checks, which
    start with `own_name`, is re-raised naming `source` instead."""
    overrides = dict(overrides or {})
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"{source}: unknown key(s) {', '.join(unknown)}; "
                         f"known: {', '.join(sorted(known))}")
    try:
        return cls(**overrides)
    except ValueError as err:
        message = str(err)
        if message.startswith(own_name):
            message = source + message[len(own_name):]
        raise ValueError(message) from None
