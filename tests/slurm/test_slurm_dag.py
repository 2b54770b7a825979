"""The reduced DAG (tests/slurm/reduced.yaml) through a real single-node SLURM with
accounting, with the `slurm` workflow profile, against a local run of the same DAG.

Not part of the default suite (pyproject: norecursedirs): run it on its own, as root,

    python -m pytest -q tests/slurm          # or: bash tools/slurm/ci_target.sh

It starts munged, MariaDB, slurmdbd, slurmctld and slurmd with tools/slurm/single_node.sh
(apt-get installs them when absent) and stops what it started. It is skipped, with the reason,
only where the machine cannot run SLURM: not root, or the packages are absent and apt-get is
not there. A few minutes on two cores.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from compare_records import compare_runs

REPO_ROOT = Path(__file__).resolve().parents[2]
SETUP = REPO_ROOT / "tools" / "slurm" / "single_node.sh"
CONFIG = Path(__file__).with_name("reduced.yaml")
PROFILE = REPO_ROOT / "workflows" / "profiles" / "slurm"
STATE = Path(os.environ.get("SLURM_STATE", "/var/tmp/timerome-slurm"))
SLURM_CONF = STATE / "slurm.conf"
ACCOUNT, PARTITION = "bench", "debug"
TARGET = "reproduce_table1"
RUN_TIMEOUT_S = 1500

pytestmark = pytest.mark.slurm


def cannot_run_reason() -> str | None:
    if sys.platform != "linux":
        return "SLURM test cluster needs Linux"
    if os.geteuid() != 0:
        return "the single-node SLURM set-up needs root (apt-get, daemons)"
    if shutil.which("slurmctld") is None and shutil.which("apt-get") is None:
        return "SLURM is not installed and there is no apt-get to install it"
    return None


def slurm_env() -> dict[str, str]:
    return {**os.environ, "SLURM_CONF": str(SLURM_CONF), "PYTHONPATH": str(REPO_ROOT),
            "TIMEROME_SLURM_ACCOUNT": ACCOUNT, "TIMEROME_SLURM_PARTITION": PARTITION}


def cluster_up() -> bool:
    if shutil.which("scontrol") is None or not SLURM_CONF.is_file():
        return False
    return subprocess.run(["scontrol", "ping"], env=slurm_env(), capture_output=True,
                          text=True).stdout.count("UP") > 0


@pytest.fixture(scope="module")
def slurm_cluster():
    reason = cannot_run_reason()
    if reason:
        print(f"SKIP: {reason}")
        pytest.skip(reason)
    try:
        import snakemake_executor_plugin_slurm  # noqa: F401
    except ImportError:
        pytest.fail("snakemake-executor-plugin-slurm is not installed: "
                    "pip install -e '.[slurm]'")
    was_up = cluster_up()
    started = subprocess.run(["bash", str(SETUP), "start"], env=slurm_env(),
                             capture_output=True, text=True, timeout=900)
    assert started.returncode == 0, f"SLURM set-up failed:\n{started.stderr[-3000:]}"
    yield
    if not was_up:
        subprocess.run(["bash", str(SETUP), "stop"], env=slurm_env(), timeout=300)


def snakemake(workdir: Path, *extra: str, env: dict[str, str]) -> tuple[float, str]:
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO_ROOT / "Snakefile"),
           "--directory", str(workdir), TARGET, *extra, "--configfile", str(CONFIG)]
    start = time.monotonic()
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    wall = time.monotonic() - start
    assert run.returncode == 0, f"{' '.join(cmd)} failed:\n{run.stderr[-4000:]}"
    return wall, run.stderr


def sacct_lines(job_ids: list[str]) -> list[str]:
    out = subprocess.run(
        ["sacct", "-X", "-n", "-P", "-j", ",".join(job_ids),
         "-o", "JobID,Comment%80,Account,Partition,State,ExitCode,Elapsed,AllocTRES%60"],
        env=slurm_env(), capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if line.strip()]


def submitted_ids(log: str) -> list[str]:
    return [line.split("SLURM jobid ", 1)[1].split()[0] for line in log.splitlines()
            if "has been submitted with SLURM jobid" in line]


def test_reduced_dag_on_slurm_equals_local_run(slurm_cluster, tmp_path):
    local_dir, slurm_dir = tmp_path / "local", tmp_path / "shared" / "run"
    env = slurm_env()
    local_wall, _ = snakemake(local_dir, "--cores", "2", env=env)
    # The workdir stands for the shared filesystem path (results/, models/, data/ there);
    # status checks every few seconds instead of the profile's 40 s keep the test short. The
    # edit jobs also ask for one of the node's (fake) GPUs: the profile's GPU request path
    # (--gpus=1), with SLURM binding the device; the twin itself stays on the CPU.
    slurm_wall, log = snakemake(slurm_dir, "--workflow-profile", str(PROFILE),
                                "--slurm-init-seconds-before-status-checks", "5",
                                "--set-resources", "run_table1:gpu=1", env=env)
    ids = submitted_ids(log)
    lines = sacct_lines(ids)
    print(f"local wall {local_wall:.1f} s, SLURM wall {slurm_wall:.1f} s, {len(ids)} jobs")
    print("\n".join(lines))
    # Every job of the DAG ran as a SLURM job under the test account and completed.
    assert len(ids) >= 9, log[-3000:]
    states = {line.split("|")[0]: line.split("|")[4] for line in lines}
    assert set(states) == set(ids), (sorted(states), sorted(ids))
    assert set(states.values()) == {"COMPLETED"}, lines
    assert all(line.split("|")[2] == ACCOUNT for line in lines), lines
    gpus = {line.split("|")[1].split("_wildcards")[0]: "gres/gpu=1" in line for line in lines}
    assert gpus["rule_run_table1"] and not gpus["rule_finetune_backbone"], lines
    # ... and wrote the same records as the local run, in every non-timing field.
    diffs = compare_runs(local_dir, slurm_dir)
    assert set(diffs) == {"table1/llada-tiny-twin/timerome/seed0.json",
                          "table1/llada-tiny-twin/gradient_ascent/seed0.json"}, sorted(diffs)
    assert not any(diffs.values()), diffs
