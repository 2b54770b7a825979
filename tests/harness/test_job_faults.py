"""Faults around a job: killed wrappers, killed writers, unwritable outputs (issue 15)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from harness.atomic import NotWritable, atomic_directory, check_writable, clean_stale_temps
from harness.jobs.spec import parse_job

REPO = Path(__file__).resolve().parents[2]


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by init) counts as gone.
    status = Path(f"/proc/{pid}/status")
    return not (status.exists() and "\nState:\tZ" in status.read_text())


def test_a_killed_writers_temporary_is_removed_by_the_next_write(tmp_path):
    target = tmp_path / "finetuned"
    stale = tmp_path / f".finetuned.tmp{_dead_pid()}.abc123"
    (stale / "model.safetensors").parent.mkdir(parents=True)
    (stale / "model.safetensors").write_bytes(b"half a checkpoint")
    mine = tmp_path / f".finetuned.tmp{os.getpid()}.live"  # a live writer's: kept
    mine.mkdir()
    other = tmp_path / f".other.tmp{_dead_pid()}.x"  # another target's: not ours to judge
    other.mkdir()
    with atomic_directory(target) as tmp:
        (tmp / "config.json").write_text("{}")
    assert not stale.exists()
    assert mine.exists() and other.exists()
    assert (target / "config.json").read_text() == "{}"
    assert clean_stale_temps(target) == []


def test_an_unwritable_output_directory_fails_the_job_before_any_work(tmp_path):
    blocker = tmp_path / "results"
    blocker.write_text("a file where the results folder should be")
    with pytest.raises(NotWritable, match=r"results/runs: output directory is not writable"):
        check_writable(blocker / "runs")
    job = f'{{"out": "{blocker}/runs/table1/x/seed0.json"}}'
    with pytest.raises(SystemExit, match=r"^error: .*results/runs/table1/x: output directory "
                                         r"is not writable"):
        parse_job(job)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux")
def test_a_job_dies_when_snakemakes_shell_wrapper_is_killed(tmp_path):
    """Snakemake kills the job's shell; the python job under it must not live on (it would
    write a complete output after the job was declared failed)."""
    pidfile = tmp_path / "pid"
    script = textwrap.dedent(f"""
        import os, time
        from harness.jobs.spec import parse_job
        parse_job('{{"out": "{tmp_path}/out/record.json"}}')
        open({str(pidfile)!r}, "w").write(str(os.getpid()))
        time.sleep(60)
        open({str(tmp_path / 'out' / 'record.json')!r}, "w").write("{{}}")
    """)
    # "; true" keeps bash from exec-ing python (as Snakemake's "set -euo pipefail; ..." does).
    wrapper = subprocess.Popen(["bash", "-c", f'{sys.executable} -c "$0"; true', script],
                               cwd=REPO)
    deadline = time.monotonic() + 60
    while not pidfile.exists() or not pidfile.read_text():
        assert time.monotonic() < deadline, "the job never started"
        time.sleep(0.05)
    job_pid = int(pidfile.read_text())
    os.kill(wrapper.pid, signal.SIGKILL)
    wrapper.wait()
    deadline = time.monotonic() + 10
    while _alive(job_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(job_pid), "the job outlived its killed shell"
    assert not (tmp_path / "out" / "record.json").exists()


def test_an_edited_checkpoint_is_set_aside_at_plan_time_and_its_finetune_reruns(tmp_path):
    """A workflow checkpoint whose file no longer matches its content manifest is moved to
    `finetuned.damaged` when the DAG is planned, and the plan fine-tunes that backbone again
    (the untouched ones are not)."""
    from harness.artefacts import write_manifest
    from tests.harness.test_workflow_config import dry_run

    models = tmp_path / "models"
    for backbone in ("llada-8b-base-twin", "dream-7b-twin"):
        folder = models / backbone / "finetuned"
        folder.mkdir(parents=True)
        (folder / "config.json").write_text('{"d_model": 32}')
        (folder / "model.safetensors").write_bytes(b"\0" * 64)
        write_manifest(folder)
    damaged = models / "dream-7b-twin" / "finetuned"
    (damaged / "config.json").write_text('{"d_model": 33}')  # edited after it was saved
    result = dry_run(tmp_path, "reproduce_table1")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "checkpoint models/dream-7b-twin/finetuned is damaged" in result.stderr
    assert "content differs from the manifest" in result.stderr
    assert not damaged.exists()
    assert (models / "dream-7b-twin" / "finetuned.damaged" / "config.json").is_file()
    assert (models / "llada-8b-base-twin" / "finetuned").is_dir()
    # The plan fine-tunes the damaged backbone again because its output is now missing.
    assert "Missing output files: models/dream-7b-twin/finetuned" in result.stdout
