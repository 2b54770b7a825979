"""harness.device_binding: each CUDA job of a multi-GPU run takes its own device slot."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from harness.device_binding import (SLOTS_ENV, VISIBLE_ENV, DeviceBindingError, acquire_slot,
                                    bind_job_device, gpu_slots)

CUDA_JOB = {"backbone_entry": {"adapter": "llada-hf", "device": "cuda"}}
CPU_JOB = {"backbone_entry": {"adapter": "llada-twin", "device": "cpu"}}

# A job process: binds from the environment, prints its device, holds it until killed.
HOLDER = textwrap.dedent("""
    import json, os, sys, time
    from harness.device_binding import bind_job_device
    binding = bind_job_device(json.loads(sys.argv[1]))
    print(os.environ.get("CUDA_VISIBLE_DEVICES"), flush=True)
    time.sleep(60)
""")


def start_holder(env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, '{"backbone_entry": {"device": '
                             '"cuda"}}'], env=env, stdout=subprocess.PIPE, text=True)
    return proc, proc.stdout.readline().strip()


@pytest.fixture
def slot_env(tmp_path):
    return {**os.environ, SLOTS_ENV: "3,5", "HARNESS_GPU_LOCK_DIR": str(tmp_path / "locks"),
            "PYTHONPATH": str(Path(__file__).resolve().parents[2])}


def test_no_slots_or_cpu_job_changes_nothing(monkeypatch, tmp_path):
    monkeypatch.setenv(VISIBLE_ENV, "7")
    assert bind_job_device(CUDA_JOB, environ={}) is None
    assert bind_job_device(CPU_JOB, environ={SLOTS_ENV: "0,1"}) is None
    assert os.environ[VISIBLE_ENV] == "7"


def test_concurrent_jobs_get_distinct_devices_and_a_killed_job_frees_its_slot(slot_env):
    first, device_a = start_holder(slot_env)
    second, device_b = start_holder(slot_env)
    try:
        assert {device_a, device_b} == {"3", "5"}
        # Both slots taken: a third job waits, then names the fix.
        with pytest.raises(DeviceBindingError, match="--resources gpu=2"):
            acquire_slot(["3", "5"], Path(slot_env["HARNESS_GPU_LOCK_DIR"]), wait_s=0.3)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        third, device_c = start_holder(slot_env)
        third.kill()
        third.wait(timeout=10)
        assert device_c == device_a  # the killed job's device, released by the kernel
    finally:
        for proc in (first, second):
            proc.kill()
            proc.wait(timeout=10)


@pytest.mark.parametrize("raw", ["0,,1", "0,0", " , "])
def test_malformed_slots_are_refused(raw):
    with pytest.raises(DeviceBindingError, match=SLOTS_ENV):
        gpu_slots({SLOTS_ENV: raw})
