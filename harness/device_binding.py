"""One GPU per job on a machine that runs several workflow jobs at once.

Snakemake's local executor counts a `gpu` resource (`--resources gpu=8` caps how many GPU
jobs run together) but does not say which device a job gets. A job binds itself: with
HARNESS_GPU_SLOTS set (the devices the jobs share, e.g. "0,1,2,3,4,5,6,7"; the
local-gpus profile's README), `bind_job_device` takes the first free slot under an exclusive
lock file (one per device, in HARNESS_GPU_LOCK_DIR or <tempdir>/timerome-gpu-locks) and sets
CUDA_VISIBLE_DEVICES to it before CUDA starts, so the job's `cuda` / `cuda:0` is its own
device. The lock is held by the open file for the life of the process and released by the
kernel when it ends, also on a crash or a kill, so a slot never stays taken by a dead job.

Without HARNESS_GPU_SLOTS nothing changes: on SLURM the scheduler sets CUDA_VISIBLE_DEVICES
for the job's `--gpus` allocation, and a single-GPU run needs no binding.

`resolve_identity` says which physical device (or MIG instance) a job's torch device is, by
UUID, so that NVML's figures are read off that device and no other (docs/measurements/
gpu_memory.md).
"""

from __future__ import annotations

import fcntl
import logging
import os
import tempfile
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import IO, Any

SLOTS_ENV = "HARNESS_GPU_SLOTS"
LOCK_DIR_ENV = "HARNESS_GPU_LOCK_DIR"
VISIBLE_ENV = "CUDA_VISIBLE_DEVICES"
WAIT_S = 120.0  # a slot frees within this when --resources gpu=N matches the slots
POLL_S = 0.2

_held: list[IO[str]] = []  # the open lock files of this process's slots


class DeviceBindingError(RuntimeError):
    """No free GPU slot, or a malformed HARNESS_GPU_SLOTS."""


@dataclass(frozen=True)
class Binding:
    device: str      # the slot's device id, now this process's CUDA_VISIBLE_DEVICES
    lock_path: Path


def gpu_slots(environ: Mapping[str, str] = os.environ) -> list[str]:
    """The device ids of HARNESS_GPU_SLOTS ([] when unset or empty)."""
    raw = environ.get(SLOTS_ENV, "").strip()
    if not raw:
        return []
    slots = [s.strip() for s in raw.split(",")]
    if any(not s for s in slots) or len(set(slots)) != len(slots):
        raise DeviceBindingError(f"{SLOTS_ENV}={raw!r}: expected distinct device ids "
                                 f"separated by commas, e.g. 0,1,2,3")
    return slots


def lock_dir(environ: Mapping[str, str] = os.environ) -> Path:
    return Path(environ.get(LOCK_DIR_ENV) or Path(tempfile.gettempdir()) / "timerome-gpu-locks")


def _try_lock(path: Path) -> IO[str] | None:
    handle = open(path, "a")  # noqa: SIM115 (held open for the life of the process)
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


def acquire_slot(slots: list[str], folder: Path, wait_s: float = WAIT_S) -> Binding:
    """Lock the first free slot (waiting up to `wait_s`) and make it this process's only
    visible device."""
    folder.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + wait_s
    while True:
        for device in slots:
            path = folder / f"gpu{device}.lock"
            handle = _try_lock(path)
            if handle is not None:
                _held.append(handle)
                os.environ[VISIBLE_ENV] = device
                return Binding(device=device, lock_path=path)
        if time.monotonic() >= deadline:
            raise DeviceBindingError(
                f"all {len(slots)} GPU slots of {SLOTS_ENV} ({','.join(slots)}) stayed busy "
                f"for {wait_s:.0f} s; run Snakemake with --resources gpu={len(slots)} so that "
                f"no more GPU jobs start than there are slots (lock files: {folder})")
        time.sleep(POLL_S)


def wants_gpu(payload: Mapping[str, Any]) -> bool:
    """Whether a job description runs its backbone on CUDA (`backbone_entry.device`)."""
    entry = payload.get("backbone_entry")
    device = entry.get("device", "cpu") if isinstance(entry, Mapping) else "cpu"
    return str(device).startswith("cuda")


def bind_job_device(payload: Mapping[str, Any], environ: Mapping[str, str] = os.environ
                    ) -> Binding | None:
    """Bind a CUDA job to a free slot of HARNESS_GPU_SLOTS; None (nothing changed) for a CPU
    job or when the variable is unset. Call before anything touches CUDA."""
    slots = gpu_slots(environ)
    if not slots or not wants_gpu(payload):
        return None
    return acquire_slot(slots, lock_dir(environ))


# ---------------------------------------------------------------- device identity
# Which physical device (or MIG instance) a torch CUDA device is, as NVML names it. CUDA's
# device order is not NVML's under the default CUDA_DEVICE_ORDER (FASTEST_FIRST), and
# CUDA_VISIBLE_DEVICES may hold UUIDs or MIG instances, so an index never identifies the
# device: its UUID does. torch gives the UUID (`get_device_properties(i).uuid`, printed
# without the NVML prefix), NVML finds the handle by "GPU-<uuid>" or "MIG-<uuid>", and the
# handle's name and total memory must agree with torch's, or the figures would be read off
# another device.

UUID_PREFIXES = ("GPU-", "MIG-")
TOTAL_MEMORY_TOLERANCE = 0.02  # NVML and CUDA may round the total differently; 2% at most

log = logging.getLogger(__name__)


class DeviceIdentityError(RuntimeError):
    """NVML's device for a torch device's UUID disagrees with torch (name or total memory):
    any NVML figure would describe another device."""


@dataclass(frozen=True)
class DeviceIdentity:
    """A CUDA device as torch and NVML see it; `nvml_error` says why NVML gave nothing."""
    torch_index: int
    uuid: str               # NVML form: GPU-<uuid> or MIG-<uuid> ("" when NVML never matched)
    torch_uuid: str
    name: str
    total_bytes: int
    mig: bool
    nvml_name: str | None = None
    nvml_total_bytes: int | None = None
    driver: str | None = None
    nvml_error: str | None = None
    visible_devices: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def nvml_uuid_candidates(torch_uuid: str) -> list[str]:
    """The NVML UUID strings a torch UUID may stand for, the likelier first."""
    text = str(torch_uuid).strip()
    if not text:
        raise DeviceIdentityError("torch reports an empty device UUID")
    if text.startswith(UUID_PREFIXES):
        return [text]
    return [prefix + text for prefix in UUID_PREFIXES]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def names_agree(torch_name: str, nvml_name: str, mig: bool) -> bool:
    """Equal names; for a MIG instance one name may extend the other with the profile
    (e.g. 'NVIDIA A100-SXM4-40GB MIG 1g.5gb')."""
    if torch_name == nvml_name:
        return True
    return mig and (torch_name.startswith(nvml_name) or nvml_name.startswith(torch_name))


def totals_agree(torch_total: int, nvml_total: int) -> bool:
    return abs(torch_total - nvml_total) <= TOTAL_MEMORY_TOLERANCE * max(torch_total, 1)


def _nvml_handle(nvml: Any, torch_uuid: str) -> tuple[Any, str]:
    """(handle, NVML UUID) of the first candidate NVML knows; NVMLError when none."""
    last: BaseException | None = None
    for candidate in nvml_uuid_candidates(torch_uuid):
        try:
            return nvml.nvmlDeviceGetHandleByUUID(candidate), candidate
        except nvml.NVMLError as exc:
            last = exc
    assert last is not None
    raise last


def resolve_identity(index: int, properties: Any, nvml: Any | None,
                     environ: Mapping[str, str] = os.environ) -> tuple[DeviceIdentity, Any]:
    """The identity of torch CUDA device `index` (its `get_device_properties` result) and
    its NVML handle, or None as the handle with `nvml_error` set (and logged) when NVML is
    missing or fails. Raises DeviceIdentityError when NVML's device for the UUID has another
    name or total memory. `nvml` is the pynvml module (None: import it)."""
    torch_uuid = _text(getattr(properties, "uuid", ""))
    base = DeviceIdentity(torch_index=index, uuid="", torch_uuid=torch_uuid,
                          name=str(properties.name), total_bytes=int(properties.total_memory),
                          mig=False, visible_devices=environ.get(VISIBLE_ENV))
    try:
        if nvml is None:
            import pynvml as nvml
        nvml.nvmlInit()
        handle, uuid = _nvml_handle(nvml, torch_uuid)
        mig = uuid.startswith("MIG-")
        nvml_name = _text(nvml.nvmlDeviceGetName(handle))
        nvml_total = int(nvml.nvmlDeviceGetMemoryInfo(handle).total)
        driver = _text(nvml.nvmlSystemGetDriverVersion())
    except DeviceIdentityError:
        raise
    except Exception as exc:  # noqa: BLE001 - NVML absent or refusing: recorded, not hidden
        error = f"{type(exc).__name__}: {exc}"
        log.warning("NVML gives no figures for cuda:%d (uuid %s): %s", index, torch_uuid, error)
        return replace(base, nvml_error=error), None
    identity = replace(base, uuid=uuid, mig=mig, nvml_name=nvml_name,
                       nvml_total_bytes=nvml_total, driver=driver)
    if not names_agree(identity.name, nvml_name, mig) or \
            not totals_agree(identity.total_bytes, nvml_total):
        raise DeviceIdentityError(
            f"NVML device {uuid} is '{nvml_name}' with {nvml_total} bytes, but torch's "
            f"cuda:{index} is '{identity.name}' with {identity.total_bytes} bytes "
            f"({VISIBLE_ENV}={identity.visible_devices!r}); NVML would measure another "
            f"device")
    return identity, handle
