"""Measurement: phase times, CPU peak memory over inference, fingerprint, OOM detection."""

from __future__ import annotations

import time

import pytest
import torch

from harness.measure import Measurer, config_hash, fingerprint, is_oom

MIB = 2**20


def test_edit_allocation_shows_as_extra_memory_over_inference():
    with Measurer(torch.device("cpu")) as m:
        with m.phase("load", "load"):
            # 40 MiB: above glibc's largest mmap threshold (32 MiB), so the pages are fresh
            # and show in RSS even when earlier tests left freed heap memory resident.
            model = torch.ones(40 * MIB // 4)
        with m.phase("score_before", "inference"):
            _ = model.sum()
        with m.phase("edit", "edit"):
            scratch = torch.ones(64 * MIB // 4)  # 64 MiB of "backward activations"
            scratch.add_(1.0)
            time.sleep(0.3)  # let the sampler see it (several intervals, even on a busy machine)
            del scratch
    summary = m.summary()
    assert summary.memory_source == "cpu_rss"
    assert summary.extra_mem_bytes >= 48 * MIB
    assert summary.peak_mem_bytes >= summary.inference_mem_bytes + 48 * MIB
    assert summary.model_mem_bytes >= 32 * MIB
    assert set(m.seconds()) == {"load", "score_before", "edit"}
    assert m.seconds()["edit"] >= 0.05


def test_phase_recorded_even_when_body_raises():
    with Measurer(torch.device("cpu")) as m:
        with pytest.raises(ValueError):
            with m.phase("edit", "edit"):
                raise ValueError("boom")
    assert [p.name for p in m.phases] == ["edit"]


def test_unknown_phase_kind_is_rejected():
    with Measurer(torch.device("cpu")) as m:
        with pytest.raises(ValueError, match="unknown phase kind 'training'"):
            with m.phase("x", "training"):
                pass


def test_fingerprint_names_versions_and_config():
    fp = fingerprint("cpu", config_hash({"a": 1}))
    assert fp["device_class"] == "cpu"
    assert fp["torch"] == torch.__version__
    assert fp["transformers"] and fp["git_commit"] and fp["device_name"]
    assert fp["config_hash"] == config_hash({"a": 1}) != config_hash({"a": 2})


def test_oom_detection():
    assert is_oom(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"))
    assert is_oom(RuntimeError("CUDA error: out of memory"))
    assert not is_oom(RuntimeError("shape mismatch"))
