"""GPU measurement logic on CPU: per-phase accounting with fixed allocations (a fake CUDA
allocator), device identity by UUID (a fake NVML), NVML failures recorded, extra memory
never clamped silently, and synchronisation at every timed boundary."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest
import torch

import harness.measure as measure
from harness.device_binding import DeviceIdentityError, resolve_identity
from harness.measure import Measurer, synchronised_now, timed

MIB = 2**20
GIB = 2**30


class FakeCuda:
    """A caching allocator's counters: allocations count exactly; freed blocks stay
    reserved until empty_cache; peaks reset on request. Logs every control call."""

    def __init__(self, name: str = "NVIDIA H200", total: int = 140 * GIB, uuid: str = "abc"):
        self.allocated_now = self.reserved_now = self.peak = self.reserved_peak = 0
        self.props = SimpleNamespace(name=name, total_memory=total, uuid=uuid)
        self.calls: list[str] = []

    def alloc(self, n: int) -> None:
        self.allocated_now += n
        self.reserved_now = max(self.reserved_now, self.allocated_now)
        self.peak = max(self.peak, self.allocated_now)
        self.reserved_peak = max(self.reserved_peak, self.reserved_now)

    def free(self, n: int) -> None:
        self.allocated_now -= n  # the block stays in the cache (reserved)

    def index(self) -> int:
        return 0

    def properties(self):
        return self.props

    def synchronize(self) -> None:
        self.calls.append("synchronize")

    def empty_cache(self) -> None:
        self.calls.append("empty_cache")
        self.reserved_now = self.allocated_now

    def reset_peaks(self) -> None:
        self.calls.append("reset_peaks")
        self.peak, self.reserved_peak = self.allocated_now, self.reserved_now

    def allocated(self) -> int:
        return self.allocated_now

    def reserved(self) -> int:
        return self.reserved_now

    def max_allocated(self) -> int:
        return self.peak

    def max_reserved(self) -> int:
        return self.reserved_peak


class NVMLError(Exception):
    pass


class FakeNvml:
    """pynvml's surface the harness uses; devices by UUID, memory = context + cuda reserved."""
    NVMLError = NVMLError
    nvmlMemory_v2 = 0x02000028

    def __init__(self, devices: dict[str, tuple[str, int]], cuda: FakeCuda | None = None,
                 context: int = 500 * MIB, fail_init: bool = False):
        self.devices, self.cuda, self.context, self.fail_init = devices, cuda, context, fail_init
        self.fail_memory = False

    def nvmlInit(self) -> None:
        if self.fail_init:
            raise NVMLError("NVML Shared Library Not Found")

    def nvmlDeviceGetHandleByIndex(self, index: int):
        raise AssertionError("an NVML index never identifies the device")

    def nvmlDeviceGetHandleByUUID(self, uuid: str):
        if uuid not in self.devices:
            raise NVMLError("Not Found")
        return uuid

    def nvmlDeviceGetName(self, handle):
        return self.devices[handle][0].encode()

    def nvmlSystemGetDriverVersion(self):
        return "560.35.03"

    def nvmlDeviceGetMemoryInfo(self, handle, version=None):
        if self.fail_memory:
            raise NVMLError("GPU is lost")
        used = self.context + (self.cuda.reserved_now if self.cuda else 0)
        return SimpleNamespace(total=self.devices[handle][1], used=used, reserved=0)


def cuda_measurer(cuda: FakeCuda | None = None, nvml: FakeNvml | None = None) -> Measurer:
    cuda = cuda or FakeCuda()
    nvml = nvml or FakeNvml({"GPU-abc": ("NVIDIA H200", 140 * GIB)}, cuda)
    return Measurer(torch.device("cuda"), cuda=cuda, nvml=nvml)


def by_name(m: Measurer) -> dict[str, dict]:
    return {p["name"]: p for p in m.phase_memory()["phases"]}


# ---------------------------------------------------------------- per-phase accounting
def test_fixed_allocations_give_exact_per_phase_figures():
    cuda = FakeCuda()
    with cuda_measurer(cuda) as m:
        with m.phase("load", "load"):
            cuda.alloc(100 * MIB)  # the model, kept
        with m.phase("score_before", "inference", rows=16):
            cuda.alloc(30 * MIB)
            cuda.free(30 * MIB)  # activations, freed but cached
        with m.phase("edit", "edit", rows=128):
            cuda.alloc(50 * MIB)
            cuda.free(50 * MIB)
            cuda.alloc(7 * MIB)  # left resident by the edit
        with m.phase("score_after", "eval", rows=16):
            cuda.alloc(5 * MIB)  # lazily built by the first scoring after the edit
            cuda.alloc(100 * MIB)  # e.g. a second model for the quality phase, not the edit's
            cuda.free(100 * MIB)
    rows = by_name(m)
    assert rows["score_before"]["allocated_peak_delta_bytes"] == 30 * MIB
    assert rows["score_before"]["allocated_end_delta_bytes"] == 0
    assert rows["edit"]["allocated_peak_delta_bytes"] == 50 * MIB
    assert rows["edit"]["allocated_end_delta_bytes"] == 7 * MIB
    # empty_cache at the boundary: the edit does not start on score_before's 30 MiB cache
    assert rows["edit"]["reserved_start_bytes"] == 100 * MIB
    assert rows["edit"]["reserved_peak_delta_bytes"] == 50 * MIB
    # NVML v2 delta follows the reserved memory; context stays outside torch
    assert rows["edit"]["nvml_used_peak_delta_bytes"] == 50 * MIB
    assert rows["edit"]["nvml_outside_torch_start_bytes"] == 500 * MIB
    pm = m.phase_memory()
    assert pm["baseline"]["nvml_used_bytes"] == 500 * MIB and pm["nvml_memory_version"] == 2
    assert pm["resident_after_edit_bytes"] == 12 * MIB
    extra = pm["extra"]
    assert extra["signed_bytes"] == (150 - 130) * MIB
    assert extra["rows_matched"] is False and extra["inference_rows"] == [16]
    summary = m.summary()
    assert (summary.inference_mem_bytes, summary.peak_mem_bytes) == (130 * MIB, 150 * MIB)
    assert summary.model_mem_bytes == 100 * MIB
    assert summary.nvml_peak_bytes == 650 * MIB  # edit phases only, not the whole job
    assert summary.record_fields()["phase_memory"]["phases"][0]["name"] == "load"
    assert summary.record_fields()["device_identity"]["uuid"] == "GPU-abc"


def test_every_boundary_empties_the_cache_before_resetting_peaks():
    cuda = FakeCuda()
    with cuda_measurer(cuda) as m:
        cuda.calls.clear()
        with m.phase("edit", "edit"):
            cuda.calls.append("body")
    assert cuda.calls == ["synchronize", "empty_cache", "reset_peaks", "body", "synchronize"]


def test_negative_extra_memory_is_reported_not_hidden(caplog):
    cuda = FakeCuda()
    with cuda_measurer(cuda) as m:
        with m.phase("score_before", "inference", rows=16):
            cuda.alloc(80 * MIB)
            cuda.free(80 * MIB)
        with m.phase("edit", "edit", rows=16):
            cuda.alloc(20 * MIB)
            cuda.free(20 * MIB)
    with caplog.at_level(logging.WARNING, logger="harness.measure"):
        summary = m.summary()
    extra = summary.phase_memory["extra"]
    assert extra["signed_bytes"] == -60 * MIB and extra["clamped"] is True
    assert extra["rows_matched"] is True and extra["inference_peak_by_rows"] == {"16": 80 * MIB}
    assert summary.extra_mem_bytes == 0
    assert "62914560 bytes below the inference peak" in caplog.text


def test_rows_must_be_a_positive_integer():
    with Measurer(torch.device("cpu")) as m:
        with pytest.raises(ValueError, match="phase 'edit': rows must be a positive integer"):
            with m.phase("edit", "edit", rows=0):
                pass


# ---------------------------------------------------------------- identity
def test_identity_is_found_by_uuid_not_index():
    nvml = FakeNvml({"GPU-other": ("NVIDIA H200", 140 * GIB),
                     "GPU-abc": ("NVIDIA H200", 140 * GIB)})
    identity, handle = resolve_identity(0, FakeCuda().props, nvml, environ={})
    assert handle == "GPU-abc" and identity.uuid == "GPU-abc" and not identity.mig
    assert identity.driver == "560.35.03" and identity.nvml_error is None


def test_mig_instance_is_matched_by_its_mig_uuid():
    name = "NVIDIA A100-SXM4-40GB MIG 1g.5gb"
    nvml = FakeNvml({"MIG-def": (name, 5 * GIB)})
    props = SimpleNamespace(name=name, total_memory=5 * GIB, uuid="def")
    identity, _ = resolve_identity(0, props, nvml, environ={"CUDA_VISIBLE_DEVICES": "MIG-def"})
    assert identity.uuid == "MIG-def" and identity.mig
    assert identity.visible_devices == "MIG-def"


def test_nvml_device_with_another_name_or_size_is_an_error():
    nvml = FakeNvml({"GPU-abc": ("NVIDIA A100-SXM4-80GB", 140 * GIB)})
    with pytest.raises(DeviceIdentityError,
                       match="NVML device GPU-abc is 'NVIDIA A100-SXM4-80GB'.*torch's cuda:0 "
                             "is 'NVIDIA H200'"):
        resolve_identity(0, FakeCuda().props, nvml, environ={})
    nvml = FakeNvml({"GPU-abc": ("NVIDIA H200", 80 * GIB)})
    with pytest.raises(DeviceIdentityError, match="another device"):
        cuda_measurer(nvml=nvml)


def test_nvml_failure_is_recorded_and_logged(caplog):
    nvml = FakeNvml({"GPU-abc": ("NVIDIA H200", 140 * GIB)}, fail_init=True)
    with caplog.at_level(logging.WARNING):
        with cuda_measurer(nvml=nvml) as m:
            with m.phase("edit", "edit"):
                pass
    summary = m.summary()
    assert summary.device_identity["nvml_error"] == "NVMLError: NVML Shared Library Not Found"
    assert summary.phase_memory["nvml_error"] == "NVMLError: NVML Shared Library Not Found"
    assert summary.device_identity["name"] == "NVIDIA H200"  # torch's side is still there
    assert summary.nvml_peak_bytes is None and "NVML gives no figures for cuda:0" in caplog.text


def test_nvml_read_failing_mid_run_is_recorded():
    cuda = FakeCuda()
    nvml = FakeNvml({"GPU-abc": ("NVIDIA H200", 140 * GIB)}, cuda)
    with cuda_measurer(cuda, nvml) as m:
        with m.phase("load", "load"):
            cuda.alloc(MIB)
        nvml.fail_memory = True
        with m.phase("edit", "edit"):
            cuda.alloc(MIB)
    rows = by_name(m)
    assert rows["load"]["nvml_used_peak_delta_bytes"] == MIB
    assert rows["edit"]["nvml_used_peak_delta_bytes"] is None
    assert rows["edit"]["allocated_peak_delta_bytes"] == MIB  # torch's figures go on
    assert m.phase_memory()["nvml_error"] == "NVMLError: GPU is lost"


# ---------------------------------------------------------------- timing
class ClockLog:
    def __init__(self, events: list[str]):
        self.events, self.now = events, 0.0

    def perf_counter(self) -> float:
        self.events.append("clock")
        self.now += 1.0
        return self.now


def test_timed_synchronises_before_every_clock_read_on_cuda(monkeypatch):
    events: list[str] = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: events.append("sync"))
    monkeypatch.setattr(measure, "time", ClockLog(events))
    phases: dict[str, float] = {}
    with timed(phases, "train", "cuda:0"):
        events.append("body")
    assert events == ["sync", "clock", "body", "sync", "clock"]
    assert phases == {"train": 1.0}
    events.clear()
    synchronised_now("cpu")
    synchronised_now(None)
    assert events == ["clock", "clock"]  # no synchronise on CPU


def test_timerome_editor_phases_synchronise_at_each_boundary(monkeypatch):
    from harness.timerome.editor import TimeROMEEditor

    events: list[str] = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: events.append("sync"))
    monkeypatch.setattr(measure, "time", ClockLog(events))
    step = lambda name, value=None: (lambda *a, **k: (events.append(name), value)[1])  # noqa: E731
    fake = SimpleNamespace(
        backbone=SimpleNamespace(device=torch.device("cuda:0")),
        trace=step("trace", ("encoded", "trace")), selected=step("select", [0]),
        extract=step("extract"), new_memory=step("new_memory", SimpleNamespace(
            attach=step("attach"))), solve=step("solve"), memory=None,
        _report=lambda trace, index, phases: phases)
    _, phases = TimeROMEEditor._add(fake, ["fact"], fresh=True)
    assert events == ["sync", "clock", "trace", "sync", "clock",
                      "sync", "clock", "select", "extract", "new_memory", "sync", "clock",
                      "sync", "clock", "solve", "attach", "sync", "clock"]
    assert set(phases) == {"tracing", "key_delta_extraction", "solve"}
