"""Wall-clock and memory measurement of a job's phases, and the run fingerprint.

Definitions of every figure and the phase-boundary protocol: docs/measurements/gpu_memory.md.

- Time: `time.perf_counter` around each phase; on CUDA the device is synchronised at both
  ends so that queued kernels are charged to the phase that launched them.
- Device identity on CUDA: the torch device's UUID finds its NVML handle
  (harness.device_binding.resolve_identity), checked against torch's name and total memory;
  never an index, which CUDA and NVML order differently. An NVML failure is logged and kept
  in `nvml_error` (and the record's `phase_memory` / `device_identity`).
- Phase boundary on CUDA: synchronise, `empty_cache`, `reset_peak_memory_stats`, then read
  the phase's starting figures. A baseline is read once the CUDA context exists.
- Memory per phase on CUDA: torch's allocated and reserved peaks (exact counters), NVML's
  device used memory (v2, without the driver's reservation; sampled by a thread, so short
  peaks can be missed) and host RSS (sampled). `peak_bytes` of a phase is torch's allocated
  peak. On CPU: peak resident set size of this process, sampled by a thread (psutil); the
  allocator rarely returns memory, so the CPU number is an upper estimate.
- `summary()` turns the phases into the record's memory columns: the loaded model's memory,
  the inference peak (phases of kind "inference"), the edit peak (kind "edit"), the extra
  memory of the edit over inference (signed in `phase_memory`, with the batch rows of both),
  and the record's `phase_memory` / `device_identity` (`MemorySummary.record_fields()`).
- `synchronised_now(device)`, `timed(phases, name, device=None)`: a wall-clock timer adding
  seconds to a dict, for code that reports its own phase split (the training loop, ROME,
  MEMIT, TimeROME's editor) without a `Measurer`; with a CUDA device it synchronises before
  every clock read.
- `bookkeeping(phases, name, device=None)`: `timed` for work a method does for the harness
  only (undo copies, collapse guards, report scoring; docs/measurements/edit_timing_rules.md):
  the method lists such phases in `MethodOutcome.excluded_phases` so that they leave the edit
  time, and the compute counter (harness.compute) does not count their forwards.
- `warm_up(device)`: one-time lazy initialisation every method would otherwise pay in its
  first timed phase, done before any edit timer starts.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import subprocess
import threading
import time
from contextvars import ContextVar
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator

import psutil
import torch

from harness.device_binding import DeviceIdentity, resolve_identity

log = logging.getLogger(__name__)

SAMPLE_INTERVAL_S = 0.005
PHASE_KINDS = ("load", "inference", "edit", "eval", "other")


# ---------------------------------------------------------------- samplers
class PeakSampler:
    """Background thread keeping the running maximum of `read()` since the last reset.

    Only for figures nothing counts exactly (NVML device memory, process RSS): a sampler
    misses peaks shorter than its interval, so torch's own peak counters are the primary
    CUDA figures. A read that raises stops the thread; `peak()` then raises that error."""

    def __init__(self, read: Callable[[], int], interval_s: float = SAMPLE_INTERVAL_S):
        self._read = read
        self._interval = interval_s
        self._lock = threading.Lock()
        self._peak = read()
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="peak-sampler", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                value = self._read()
            except Exception as exc:  # noqa: BLE001 - handed to the caller by peak()
                self.error = f"{type(exc).__name__}: {exc}"
                return
            with self._lock:
                if value > self._peak:
                    self._peak = value

    def current(self) -> int:
        return self._read()

    def reset(self) -> None:
        with self._lock:
            self._peak = self._read()

    def peak(self) -> int:
        if self.error is not None:
            raise RuntimeError(f"sampler read failed: {self.error}")
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


class CudaCounters:
    """torch.cuda's memory counters and controls for one device: the seam through which the
    `Measurer` reads CUDA (tests pass an object with the same methods)."""

    def __init__(self, device: torch.device):
        self.device = device

    def index(self) -> int:
        return self.device.index if self.device.index is not None else torch.cuda.current_device()

    def properties(self) -> Any:
        return torch.cuda.get_device_properties(self.index())

    def synchronize(self) -> None:
        torch.cuda.synchronize(self.device)

    def empty_cache(self) -> None:
        torch.cuda.empty_cache()

    def reset_peaks(self) -> None:
        torch.cuda.reset_peak_memory_stats(self.device)

    def allocated(self) -> int:
        return int(torch.cuda.memory_allocated(self.device))

    def reserved(self) -> int:
        return int(torch.cuda.memory_reserved(self.device))

    def max_allocated(self) -> int:
        return int(torch.cuda.max_memory_allocated(self.device))

    def max_reserved(self) -> int:
        return int(torch.cuda.max_memory_reserved(self.device))


@dataclass
class NvmlBinding:
    """NVML's view of the job's device, found by UUID (harness.device_binding)."""
    identity: DeviceIdentity
    read_used: Callable[[], int] | None  # device used bytes; None when NVML failed
    memory_version: int | None  # 2: v2 `used` (excludes driver-reserved memory); 1: v1
    error: str | None


def nvml_memory_reader(nvml: Any, handle: Any) -> tuple[Callable[[], int], int]:
    """(reader of the device's used bytes, NVML memory-info version): v2, whose `used`
    leaves out the driver's reserved memory, where the driver has it, else v1."""
    version = getattr(nvml, "nvmlMemory_v2", None)
    if version is not None:
        try:
            nvml.nvmlDeviceGetMemoryInfo(handle, version=version)
            return (lambda: int(nvml.nvmlDeviceGetMemoryInfo(handle, version=version).used)), 2
        except nvml.NVMLError as exc:
            log.warning("NVML memory info v2 unsupported (%s); using v1, which counts the "
                        "driver's reserved memory as used", exc)
    nvml.nvmlDeviceGetMemoryInfo(handle)
    return (lambda: int(nvml.nvmlDeviceGetMemoryInfo(handle).used)), 1


def bind_nvml(cuda: Any, nvml: Any | None = None) -> NvmlBinding:
    """Identify the CUDA device by UUID and bind an NVML used-memory reader to it. NVML
    failures are logged and kept in `error` (and the record), never turned into a silent
    None; a device NVML and torch disagree on raises DeviceIdentityError."""
    index = cuda.index()
    identity, handle = resolve_identity(index, cuda.properties(), nvml)
    if handle is None:
        return NvmlBinding(identity, None, None, identity.nvml_error)
    module = nvml
    if module is None:
        import pynvml as module
    try:
        reader, version = nvml_memory_reader(module, handle)
    except Exception as exc:  # noqa: BLE001 - recorded, as in resolve_identity
        error = f"{type(exc).__name__}: {exc}"
        log.warning("NVML memory info failed for %s: %s", identity.uuid, error)
        return NvmlBinding(replace(identity, nvml_error=error), None, None, error)
    return NvmlBinding(identity, reader, version, None)


# ---------------------------------------------------------------- phases
DeviceLike = torch.device | str | None


def synchronised_now(device: DeviceLike = None) -> float:
    """`time.perf_counter()` read after the CUDA `device` has finished its queued work.

    CUDA kernels run asynchronously: without the synchronise, a phase's clock stops while
    its kernels still run, and the next phase (or a later one) is charged for them. On a CPU
    device (or None) this is the plain monotonic clock; nothing is synchronised."""
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize(torch.device(device))
    return time.perf_counter()


@contextmanager
def timed(phases: dict[str, float], name: str, device: DeviceLike = None) -> Iterator[None]:
    """Add the body's wall seconds to `phases[name]` (also when the body raises). With a
    CUDA `device`, the clock is read after synchronising at both ends (`synchronised_now`),
    so queued kernels are charged to the phase that launched them."""
    start = synchronised_now(device)
    try:
        yield
    finally:
        phases[name] = phases.get(name, 0.0) + synchronised_now(device) - start


_BOOKKEEPING: ContextVar[bool] = ContextVar("harness_bookkeeping", default=False)


@contextmanager
def bookkeeping(phases: dict[str, float], name: str, device: DeviceLike = None
                ) -> Iterator[None]:
    """`timed(phases, name, device)` for the harness's bookkeeping inside a method's edit;
    while the body runs `in_bookkeeping()` is True (the compute counter skips those
    forwards)."""
    token = _BOOKKEEPING.set(True)
    try:
        with timed(phases, name, device):
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
    """One phase's time and memory. Absolute byte counts; the deltas are in
    `Measurer.phase_memory()`. On CUDA every phase starts after `empty_cache` and a peak
    reset, so no phase inherits the previous one's cache or peak."""
    name: str
    kind: str
    seconds: float
    peak_bytes: int  # CUDA: torch max allocated; CPU: peak process RSS
    start_bytes: int  # CUDA: torch allocated; CPU: process RSS
    reserved_peak_bytes: int | None = None  # CUDA only
    nvml_peak_bytes: int | None = None  # CUDA with NVML only: device used (v2), sampled
    end_bytes: int | None = None  # as start_bytes, at the phase's end
    reserved_start_bytes: int | None = None  # CUDA only, after empty_cache
    reserved_end_bytes: int | None = None
    nvml_start_bytes: int | None = None
    nvml_end_bytes: int | None = None
    rss_start_bytes: int | None = None  # host process RSS, on CUDA too
    rss_peak_bytes: int | None = None
    rows: int | None = None  # the batch rows the phase ran at, when the caller says


@dataclass
class MemorySummary:
    memory_source: str  # "cuda_allocated" | "cpu_rss"
    model_mem_bytes: int | None  # memory of the loaded model (after the load phase)
    inference_mem_bytes: int | None  # peak over inference phases
    peak_mem_bytes: int | None  # peak over edit phases
    extra_mem_bytes: int | None  # edit peak - inference peak, shown as 0 when negative
    nvml_peak_bytes: int | None = None  # NVML device used peak over edit phases
    reserved_peak_bytes: int | None = None  # torch reserved peak over edit phases
    phase_memory: dict[str, Any] | None = None  # Measurer.phase_memory()
    device_identity: dict[str, Any] | None = None  # DeviceIdentity.to_dict(); CUDA only

    def record_fields(self) -> dict[str, dict[str, Any] | None]:
        """The Record's `phase_memory` and `device_identity` fields (JSON-serialisable)."""
        return {"phase_memory": self.phase_memory, "device_identity": self.device_identity}


def _delta(a: int | None, b: int | None) -> int | None:
    return None if a is None or b is None else a - b


@dataclass
class Measurer:
    """Measure named phases of one job on `device` ("cpu", "cuda", "cuda:1").

    `cuda` (CudaCounters) and `nvml` (the pynvml module) are seams for tests; left None,
    the real torch.cuda and pynvml are used."""

    device: torch.device
    phases: list[PhaseMeasurement] = field(default_factory=list)
    cuda: Any = None
    nvml: Any = None

    def __post_init__(self) -> None:
        self.device = torch.device(self.device)
        self.on_cuda = self.device.type == "cuda"
        self.driver: str | None = None
        self.identity: DeviceIdentity | None = None
        self.nvml_error: str | None = None
        self.nvml_memory_version: int | None = None
        self._nvml: PeakSampler | None = None
        self._rss = PeakSampler(process_rss_reader())  # host memory, on CUDA too
        if self.on_cuda:
            self.cuda = self.cuda or CudaCounters(self.device)
            self.cuda.synchronize()  # the CUDA context exists before the baseline is read
            self._bind_nvml()
        self._base_bytes = self._current()
        self.baseline = self._snapshot()

    def _bind_nvml(self) -> None:
        binding = bind_nvml(self.cuda, self.nvml)
        self.identity, self.nvml_error = binding.identity, binding.error
        self.driver, self.nvml_memory_version = binding.identity.driver, binding.memory_version
        if binding.read_used is not None:
            self._nvml = PeakSampler(binding.read_used)

    def _sync(self) -> None:
        if self.on_cuda:
            self.cuda.synchronize()

    def _current(self) -> int:
        return self.cuda.allocated() if self.on_cuda else self._rss.current()

    def _nvml_call(self, read: Callable[[PeakSampler], int]) -> int | None:
        """An NVML figure, or None with the failure logged and kept in `nvml_error`."""
        if self._nvml is None:
            return None
        try:
            return read(self._nvml)
        except Exception as exc:  # noqa: BLE001 - recorded; the job's own figures go on
            self.nvml_error = f"{type(exc).__name__}: {exc}"
            log.warning("NVML read failed, NVML figures stop here: %s", self.nvml_error)
            self._nvml.close()
            self._nvml = None
            return None

    def _snapshot(self) -> dict[str, int | None]:
        """Memory now: torch allocated / reserved, NVML used, host RSS."""
        return {"allocated_bytes": self.cuda.allocated() if self.on_cuda else None,
                "reserved_bytes": self.cuda.reserved() if self.on_cuda else None,
                "nvml_used_bytes": self._nvml_call(PeakSampler.current),
                "rss_bytes": self._rss.current()}

    def _begin(self) -> dict[str, int | None]:
        """Phase boundary: finish queued work, release the cache the last phase left,
        reset every peak; return the phase's starting figures."""
        self._sync()
        if self.on_cuda:
            self.cuda.empty_cache()
            self.cuda.reset_peaks()
        self._rss.reset()
        self._nvml_call(PeakSampler.reset)
        return self._snapshot()

    @contextmanager
    def phase(self, name: str, kind: str = "other", rows: int | None = None) -> Iterator[None]:
        """Time and measure the body; the phase is recorded even if the body raises.
        `rows`: the batch rows the body runs at, which "extra memory" is matched on."""
        if kind not in PHASE_KINDS:
            raise ValueError(f"unknown phase kind '{kind}'; known: {', '.join(PHASE_KINDS)}")
        if rows is not None and (not isinstance(rows, int) or rows < 1):
            raise ValueError(f"phase '{name}': rows must be a positive integer, got {rows!r}")
        begin = self._begin()
        start_bytes = self._current()
        start = time.perf_counter()
        try:
            yield
        finally:
            self._sync()
            seconds = time.perf_counter() - start
            self.phases.append(self._finish(name, kind, seconds, start_bytes, begin, rows))

    def _finish(self, name: str, kind: str, seconds: float, start_bytes: int,
                begin: dict[str, int | None], rows: int | None) -> PhaseMeasurement:
        rss_peak = self._rss.peak()
        nvml_peak = self._nvml_call(PeakSampler.peak)
        end = self._snapshot()
        if self.on_cuda:
            peak, reserved = self.cuda.max_allocated(), self.cuda.max_reserved()
        else:
            peak, reserved = rss_peak, None
        return PhaseMeasurement(
            name, kind, seconds, peak, start_bytes, reserved, nvml_peak,
            end_bytes=self._current(), reserved_start_bytes=begin["reserved_bytes"],
            reserved_end_bytes=end["reserved_bytes"], nvml_start_bytes=begin["nvml_used_bytes"],
            nvml_end_bytes=end["nvml_used_bytes"], rss_start_bytes=begin["rss_bytes"],
            rss_peak_bytes=rss_peak, rows=rows)

    def seconds(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for p in self.phases:
            out[p.name] = out.get(p.name, 0.0) + p.seconds
        return out

    # ------------------------------------------------------------ summary
    def _peak_of(self, kind: str, attr: str = "peak_bytes") -> int | None:
        values = [getattr(p, attr) for p in self.phases
                  if p.kind == kind and getattr(p, attr) is not None]
        return max(values) if values else None

    def _model_bytes(self) -> int | None:
        loads = [i for i, p in enumerate(self.phases) if p.kind == "load"]
        if not loads:
            return None
        last = loads[-1]
        # Memory held after loading = what the next phase started from, else the load peak.
        following = self.phases[last + 1:]
        held = following[0].start_bytes if following else self.phases[last].peak_bytes
        return max(0, held - (self._base_bytes if not self.on_cuda else 0))

    def extra_memory(self) -> dict[str, Any]:
        """The edit's memory over inference, signed (never clamped here), with the batch rows
        both ran at: the difference measures the method only when the rows match."""
        inference, edit = self._peak_of("inference"), self._peak_of("edit")
        signed = _delta(edit, inference)
        rows = lambda kind: sorted({p.rows for p in self.phases  # noqa: E731
                                    if p.kind == kind and p.rows is not None})
        inference_rows, edit_rows = rows("inference"), rows("edit")
        matched = None
        if inference_rows and edit_rows:
            matched = inference_rows == edit_rows
        by_rows = {str(r): max(p.peak_bytes for p in self.phases
                               if p.kind == "inference" and p.rows == r) for r in inference_rows}
        reported = None if signed is None else max(0, signed)
        return {"signed_bytes": signed, "reported_bytes": reported,
                "clamped": signed is not None and signed < 0,
                "inference_rows": inference_rows, "edit_rows": edit_rows,
                "rows_matched": matched, "inference_peak_by_rows": by_rows}

    def resident_after_edit(self) -> int | None:
        """Memory the edit leaves held: allocated at the end of the phase after the last edit
        phase (lazily built buffers, e.g. a folded weight copy, appear in the first scoring)
        minus allocated at the edit's start. Signed."""
        edits = [i for i, p in enumerate(self.phases) if p.kind == "edit"]
        if not edits:
            return None
        last = edits[-1]
        after = self.phases[last + 1] if last + 1 < len(self.phases) else self.phases[last]
        return _delta(after.end_bytes, self.phases[edits[0]].start_bytes)

    def phase_memory(self) -> dict[str, Any]:
        """Every memory figure per phase, as deltas from the phase's start (the record's
        `phase_memory`; docs/measurements/gpu_memory.md defines each)."""
        rows = []
        for p in self.phases:
            rows.append({
                "name": p.name, "kind": p.kind, "rows": p.rows,
                "allocated_start_bytes": p.start_bytes if self.on_cuda else None,
                "allocated_peak_bytes": p.peak_bytes if self.on_cuda else None,
                "allocated_peak_delta_bytes": _delta(p.peak_bytes, p.start_bytes)
                if self.on_cuda else None,
                "allocated_end_delta_bytes": _delta(p.end_bytes, p.start_bytes)
                if self.on_cuda else None,
                "reserved_start_bytes": p.reserved_start_bytes,
                "reserved_peak_bytes": p.reserved_peak_bytes,
                "reserved_peak_delta_bytes": _delta(p.reserved_peak_bytes, p.reserved_start_bytes),
                "nvml_used_start_bytes": p.nvml_start_bytes,
                "nvml_used_peak_delta_bytes": _delta(p.nvml_peak_bytes, p.nvml_start_bytes),
                "nvml_used_end_delta_bytes": _delta(p.nvml_end_bytes, p.nvml_start_bytes),
                "nvml_outside_torch_start_bytes": _delta(p.nvml_start_bytes,
                                                         p.reserved_start_bytes),
                "nvml_outside_torch_end_bytes": _delta(p.nvml_end_bytes, p.reserved_end_bytes),
                "rss_start_bytes": p.rss_start_bytes,
                "rss_peak_delta_bytes": _delta(p.rss_peak_bytes, p.rss_start_bytes),
                "seconds": p.seconds})
        return {"source": "cuda_allocated" if self.on_cuda else "cpu_rss",
                "baseline": dict(self.baseline),
                "nvml_memory_version": self.nvml_memory_version,
                "nvml_error": self.nvml_error if self.on_cuda else None,
                "phases": rows, "extra": self.extra_memory(),
                "resident_after_edit_bytes": self.resident_after_edit()}

    def summary(self) -> MemorySummary:
        extra = self.extra_memory()
        if extra["clamped"]:
            log.warning("edit peak is %d bytes below the inference peak (rows: inference %s, "
                        "edit %s); extra_mem_bytes shows 0, phase_memory.extra the signed "
                        "value", -extra["signed_bytes"], extra["inference_rows"] or "unknown",
                        extra["edit_rows"] or "unknown")
        return MemorySummary(
            "cuda_allocated" if self.on_cuda else "cpu_rss", self._model_bytes(),
            self._peak_of("inference"), self._peak_of("edit"), extra["reported_bytes"],
            self._peak_of("edit", "nvml_peak_bytes"), self._peak_of("edit", "reserved_peak_bytes"),
            phase_memory=self.phase_memory(),
            device_identity=self.identity.to_dict() if self.identity is not None else None)

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
