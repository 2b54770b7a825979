"""Per-fact random streams: draws that do not depend on batch composition or order."""

from __future__ import annotations

import zlib

import torch


def fact_seed(seed: int, fact_key: str, salt: int = 0) -> int:
    """A per-fact seed that does not depend on batch composition or order."""
    return (seed * 1_000_003 + zlib.crc32(fact_key.encode()) * 31 + salt) % (2 ** 63 - 1)


def fact_generator(seed: int, fact_key: str, salt: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(fact_seed(seed, fact_key, salt))
