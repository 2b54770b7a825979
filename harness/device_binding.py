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
"""

from __future__ import annotations

import fcntl
import os
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
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
