"""Wall-clock and peak-memory measurement of a job's phases, and the run fingerprint.

- Time: `time.perf_counter` around each phase; on CUDA the device is synchronised at both
  ends so that queued kernels are charged to the phase that launched them.
- Memory on CUDA: `torch.cuda.max_memory_allocated/reserved` (peak stats reset at the start
  of every phase) and, from a sampling thread, the device's used memory from NVML
  (`pynvml`, on the job's device index). `peak_bytes` of a phase is torch's allocated peak.
- Memory on CPU: peak resident set size of this process, sampled by a thread (psutil);
  the allocator rarely returns memory, so the CPU number is an upper estimate.
- `summary()` turns the phases into the record's memory columns: the loaded model's memory,
  the inference peak (phases of kind "inference"), the edit peak (kind "edit"), and the
  extra memory of the edit over inference.
- `timed(phases, name)`: a bare wall-clock timer adding seconds to a dict, for code that
  reports its own phase split (the training loop, ROME, MEMIT) without a `Measurer`.
- `bookkeeping(phases, name)`: `timed` for work a method does for the harness only (undo
  copies, collapse guards, report scoring; docs/measurements/edit_timing_rules.md): the
  method lists such phases in `MethodOutcome.excluded_phases` so that they leave the edit
  time, and the compute counter (harness.compute) does not count their forwards.
- `warm_up(device)`: one-time lazy initialisation every method would otherwise pay in its
  first timed phase, done before any edit timer starts.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import threading
import time
from contextvars import ContextVar
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import psutil
import torch

SAMPLE_INTERVAL_S = 0.005
PHASE_KINDS = ("load", "inference", "edit", "eval", "other")


# ---------------------------------------------------------------- samplers
class PeakSampler:
    """Background thread keeping the running maximum of `read()` since the last reset."""

    def __init__(self, read: Callable[[], int], interval_s: float = SAMPLE_INTERVAL_S):
        self._read = read
        self._interval = interval_s
        self._lock = threading.Lock()
        self._peak = read()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="peak-sampler", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            value = self._read()
            with self._lock:
                if value > self._peak:
                    self._peak = value

    def current(self) -> int:
        return self._read()

    def reset(self) -> None:
        with self._lock:
            self._peak = self._read()

    def peak(self) -> int:
        value = self._read()
        with self._lock:
            self._peak = max(self._peak, value)
            return self._peak

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=1.0)


def process_rss_reader() -> Callable[[], int]:
    proc = psutil.Process(os.getpid())
    return lambda: int(proc.memory_info().rss)


def nvml_device_index(device: torch.device) -> int:
    """NVML index of a torch CUDA device, honouring integer CUDA_VISIBLE_DEVICES lists."""
    index = device.index if device.index is not None else torch.cuda.current_device()
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").strip()
    if visible:
        parts = [p.strip() for p in visible.split(",")]
        if index < len(parts) and parts[index].isdigit():
            return int(parts[index])
    return index


def nvml_used_reader(device: torch.device) -> tuple[Callable[[], int], str | None] | None:
    """(reader of device used bytes, driver version), or None when NVML is unavailable."""
    try:
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(nvml_device_index(device))
        driver = pynvml.nvmlSystemGetDriverVersion()
        driver = driver.decode() if isinstance(driver, bytes) else str(driver)
        return (lambda: int(pynvml.nvmlDeviceGetMemoryInfo(handle).used)), driver
    except Exception:  # noqa: BLE001 - NVML missing or not permitted: measure without it
        return None


# ---------------------------------------------------------------- phases
@contextmanager
def timed(phases: dict[str, float], name: str) -> Iterator[None]:
    """Add the body's wall seconds to `phases[name]` (also when the body raises)."""
    start = time.perf_counter()
    try:
        yield
    finally:
        phases[name] = phases.get(name, 0.0) + time.perf_counter() - start


_BOOKKEEPING: ContextVar[bool] = ContextVar("harness_bookkeeping", default=False)


@contextmanager
def bookkeeping(phases: dict[str, float], name: str) -> Iterator[None]:
    """`timed(phases, name)` for the harness's bookkeeping inside a method's edit; while the
    body runs `in_bookkeeping()` is True (the compute counter skips those forwards)."""
    token = _BOOKKEEPING.set(True)
    try:
        with timed(phases, name):
            yield
    finally:
        _BOOKKEEPING.reset(token)


def in_bookkeeping() -> bool:
    return _BOOKKEEPING.get()


def warm_up(device: torch.device | str) -> None:
    """Pay the process's one-time lazy initialisation before an edit is timed: building the
    first torch optimizer imports `torch._dynamo` (1.3-1.6 s cold on the 2-core CPU;
    docs/measurements/edit_timing_rules.md), and the first backward starts autograd's
    engine. One AdamW step on a 4 x 4 dummy parameter on `device`; the model is untouched."""
    param = torch.nn.Parameter(torch.ones(4, 4, device=device))
    optimizer = torch.optim.AdamW([param], lr=1e-3)
    (param * param).sum().backward()
    optimizer.step()


@dataclass
class PhaseMeasurement:
    name: str
    kind: str
    seconds: float
    peak_bytes: int  # CUDA: torch max allocated; CPU: peak process RSS
    start_bytes: int
    reserved_peak_bytes: int | None = None  # CUDA only
    nvml_peak_bytes: int | None = None  # CUDA with NVML only


@dataclass
class MemorySummary:
    memory_source: str  # "cuda_allocated" | "cpu_rss"
    model_mem_bytes: int | None  # memory of the loaded model (after the load phase)
    inference_mem_bytes: int | None  # peak over inference phases
    peak_mem_bytes: int | None  # peak over edit phases
    extra_mem_bytes: int | None  # max(0, edit peak - inference peak)
    nvml_peak_bytes: int | None = None
    reserved_peak_bytes: int | None = None


@dataclass
class Measurer:
    """Measure named phases of one job on `device` ("cpu", "cuda", "cuda:1")."""

    device: torch.device
    phases: list[PhaseMeasurement] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.device = torch.device(self.device)
        self.on_cuda = self.device.type == "cuda"
        self.driver: str | None = None
        self._nvml: PeakSampler | None = None
        if self.on_cuda:
            nvml = nvml_used_reader(self.device)
            if nvml is not None:
                self._nvml = PeakSampler(nvml[0])
                self.driver = nvml[1]
            self._rss = None
        else:
            self._rss = PeakSampler(process_rss_reader())
        self._base_bytes = self._current()

    def _sync(self) -> None:
        if self.on_cuda:
            torch.cuda.synchronize(self.device)

    def _current(self) -> int:
        if self.on_cuda:
            return int(torch.cuda.memory_allocated(self.device))
        assert self._rss is not None
        return self._rss.current()

    @contextmanager
    def phase(self, name: str, kind: str = "other") -> Iterator[None]:
        """Time and measure the body; the phase is recorded even if the body raises."""
        if kind not in PHASE_KINDS:
            raise ValueError(f"unknown phase kind '{kind}'; known: {', '.join(PHASE_KINDS)}")
        self._sync()
        if self.on_cuda:
            torch.cuda.reset_peak_memory_stats(self.device)
        elif self._rss is not None:
            self._rss.reset()
        if self._nvml is not None:
            self._nvml.reset()
        start_bytes = self._current()
        start = time.perf_counter()
        try:
            yield
        finally:
            self._sync()
            seconds = time.perf_counter() - start
            if self.on_cuda:
                peak = int(torch.cuda.max_memory_allocated(self.device))
                reserved = int(torch.cuda.max_memory_reserved(self.device))
            else:
                assert self._rss is not None
                peak, reserved = self._rss.peak(), None
            nvml = self._nvml.peak() if self._nvml is not None else None
            self.phases.append(PhaseMeasurement(name, kind, seconds, peak, start_bytes,
                                                reserved, nvml))

    def seconds(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for p in self.phases:
            out[p.name] = out.get(p.name, 0.0) + p.seconds
        return out

    def summary(self) -> MemorySummary:
        def peak_of(kind: str) -> int | None:
            values = [p.peak_bytes for p in self.phases if p.kind == kind]
            return max(values) if values else None

        loads = [p for p in self.phases if p.kind == "load"]
        model = None
        if loads:
            end_of_load = loads[-1]
            # Memory held after loading = what the next phase started from, else the load peak.
            after = [p for p in self.phases if self.phases.index(p) > self.phases.index(end_of_load)]
            held = after[0].start_bytes if after else end_of_load.peak_bytes
            model = max(0, held - (self._base_bytes if not self.on_cuda else 0))
        inference, edit = peak_of("inference"), peak_of("edit")
        extra = max(0, edit - inference) if edit is not None and inference is not None else None
        nvml = [p.nvml_peak_bytes for p in self.phases if p.nvml_peak_bytes is not None]
        reserved = [p.reserved_peak_bytes for p in self.phases if p.reserved_peak_bytes is not None]
        return MemorySummary("cuda_allocated" if self.on_cuda else "cpu_rss", model, inference,
                             edit, extra, max(nvml) if nvml else None,
                             max(reserved) if reserved else None)

    def close(self) -> None:
        for sampler in (self._rss, self._nvml):
            if sampler is not None:
                sampler.close()

    def __enter__(self) -> "Measurer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def is_oom(exc: BaseException) -> bool:
    """True for a CUDA (or CPU allocator) out-of-memory error."""
    if isinstance(exc, torch.cuda.OutOfMemoryError | MemoryError):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


# ---------------------------------------------------------------- fingerprint
def config_hash(payload: Any) -> str:
    """Stable short hash of a JSON-serialisable config."""
    text = json.dumps(payload, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def git_commit(repo: str | Path | None = None) -> str:
    """HEAD commit (+ '-dirty' when the tree has changes), or TIMEROME_GIT_COMMIT, or 'unknown'."""
    if os.environ.get("TIMEROME_GIT_COMMIT"):
        return os.environ["TIMEROME_GIT_COMMIT"]
    cwd = str(repo or Path(__file__).resolve().parents[1])
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True,
                              text=True, timeout=10)
        if head.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return head.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_class(device_name: str, device_type: str) -> str:
    """What regression baselines are keyed by: 'cpu' or the GPU's marketing name."""
    return "cpu" if device_type == "cpu" else device_name


def fingerprint(device: str | torch.device, cfg_hash: str, driver: str | None = None) -> dict[str, Any]:
    """Everything that identifies where and with what a record was produced."""
    dev = torch.device(device)
    if dev.type == "cuda":
        name = torch.cuda.get_device_name(dev)
    else:
        name = cpu_name()
    try:
        import transformers

        tf_version = transformers.__version__
    except ImportError:  # pragma: no cover - a declared dependency
        tf_version = None
    return {
        "device": str(dev),
        "device_name": name,
        "device_class": device_class(name, dev.type),
        "driver": driver,
        "cuda": torch.version.cuda if dev.type == "cuda" else None,
        "torch": torch.__version__,
        "transformers": tf_version,
        "python": platform.python_version(),
        "cpu_threads": torch.get_num_threads(),
        "git_commit": git_commit(),
        "config_hash": cfg_hash,
    }


def summary_dict(summary: MemorySummary) -> dict[str, Any]:
    return asdict(summary)
