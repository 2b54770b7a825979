"""Fixtures for the backbone adapter tests: tiny twins built once per session, no network."""

from __future__ import annotations

import os
import socket

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from harness.backbones import BackboneSpec  # noqa: E402
from harness.backbones.registry import adapter_class  # noqa: E402
from tests.backbones.twin_cases import CASES  # noqa: E402

TEXTS = [
    "Where was Zarvo Keth born? Zarvo Keth was born in Brimholt.",
    "What does Ana Lirr write? Ana Lirr writes mystery novels set in Quenford.",
    "Which award did Oswin Tarr win? Oswin Tarr won the Grey Quill Prize.",
    "Who were Mira Solen's parents? Mira Solen's father was a baker and her mother a nurse.",
] * 3


@pytest.fixture(scope="session")
def corpus_texts() -> list[str]:
    return list(TEXTS)


def build_twin(case, size: str = "micro", seed: int = 0, **extra):
    spec = BackboneSpec(name=case.name, adapter=case.adapter,
                        options={"size": size, "vocab_size": 320, **case.options, **extra})
    return adapter_class(case.adapter).initial(spec, TEXTS, seed)


@pytest.fixture(scope="session")
def twins() -> dict:
    """name -> a fresh micro twin (treat as read-only)."""
    return {case.name: build_twin(case) for case in CASES}


@pytest.fixture
def no_network(monkeypatch):
    """Any socket connection attempt fails the test loudly."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args[1:]}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture(autouse=True)
def single_thread():
    """Micro models gain nothing from intra-op threads; one thread avoids oversubscription."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
