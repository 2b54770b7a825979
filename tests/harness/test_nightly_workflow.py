"""The nightly GPU workflow (.github/workflows/nightly-gpu.yml) and the rule behind its check
(workflows/rules/regression.smk), run for real with a stand-in for snakemake / the check:
which outcome passes the night, that a report exists in every outcome, that GPU jobs are
capped with --resources gpu=N, that the work directories outlive the checkout."""

from __future__ import annotations

import ast
import os
import re
import stat
import subprocess
from pathlib import Path

import pytest
import yaml

from harness import regress

REPO_ROOT = Path(__file__).resolve().parents[2]
NIGHTLY = REPO_ROOT / ".github" / "workflows" / "nightly-gpu.yml"
RULE = REPO_ROOT / "workflows" / "rules" / "regression.smk"
RUN_STEP = "GPU twins and reduced paper config, each with its regression check"

FAKE_SNAKEMAKE = r"""#!/bin/bash
# Stands in for snakemake: logs its arguments; a run (not --unlock) writes $FAKE_REPORT (if
# set) as <--directory>/results/regression.txt and exits $FAKE_STATUS.
echo "$*" >> "$FAKE_LOG"
for arg in "$@"; do [ "$arg" = --unlock ] && exit 0; done
while [ $# -gt 0 ]; do [ "$1" = --directory ] && work="$2"; shift; done
if [ -n "${FAKE_REPORT:-}" ]; then
  mkdir -p "$work/results" && printf '%s' "$FAKE_REPORT" > "$work/results/regression.txt"
fi
exit "${FAKE_STATUS:-0}"
"""


def workflow() -> dict:
    return yaml.safe_load(NIGHTLY.read_text())


def steps() -> list[dict]:
    return workflow()["jobs"]["nightly-gpu"]["steps"]


def executable(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


def night(tmp_path: Path, report: str | None, status: int, stale: str | None = None
          ) -> tuple[subprocess.CompletedProcess, Path, str]:
    """The nightly's run step (bash -e, as GitHub runs it) with a fake snakemake whose
    regression_check writes `report` (None: it never ran) and exits `status`; `stale`: a
    report left from the night before. (result, work dir, logged snakemake calls)."""
    script = next(s["run"] for s in steps() if s.get("name") == RUN_STEP)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    executable(bin_dir / "snakemake", FAKE_SNAKEMAKE)
    work = tmp_path / "nightly-work"
    if stale is not None:
        for name in ("gpu_twins", "paper"):
            (work / name / "results").mkdir(parents=True)
            (work / name / "results" / "regression.txt").write_text(stale)
    log = tmp_path / "snakemake.log"
    env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "GITHUB_WORKSPACE": str(REPO_ROOT),
           "NIGHTLY_WORK": str(work), "GPUS": "1", "FAKE_LOG": str(log),
           "FAKE_STATUS": str(status), **({"FAKE_REPORT": report} if report is not None else {})}
    done = subprocess.run(["bash", "-e", "-c", script], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    return done, work, log.read_text()


def report_of(outcome_status: int) -> str:
    return f"some table\noutcome: {regress.OUTCOMES[outcome_status]} (exit {outcome_status})\n"


@pytest.mark.parametrize("check_status, snakemake_status, passes", [
    (regress.EXIT_OK, 0, True),
    (regress.EXIT_NO_BASELINE, 0, True),   # the rule succeeds on 4 (a new baseline)
    (regress.EXIT_REGRESSED, 1, False),
    (regress.EXIT_BAD_INPUT, 1, False),
    (regress.EXIT_BUG, 1, False),
])
def test_which_outcomes_pass_the_night(tmp_path, check_status, snakemake_status, passes):
    done, work, _ = night(tmp_path, report_of(check_status), snakemake_status)
    assert (done.returncode == 0) is passes, done.stdout + done.stderr
    name = regress.OUTCOMES[check_status]
    assert f"gpu_twins: outcome '{name}', snakemake exit {snakemake_status}" in done.stdout
    assert f"paper: outcome '{name}'" in done.stdout  # the paper config ran after the twins
    if check_status == regress.EXIT_NO_BASELINE:
        assert "::warning title=gpu_twins::no baseline" in done.stdout
    for name in ("gpu_twins", "paper"):  # the report is kept for the artifact
        kept = tmp_path / "nightly-out" / name / "regression.txt"
        assert kept.read_text() == report_of(check_status)


def test_a_check_that_never_ran_gets_a_report_and_fails_the_night(tmp_path):
    # Last night's passing report must not stand in for tonight's, which never ran.
    done, work, _ = night(tmp_path, None, 1, stale=report_of(regress.EXIT_OK))
    assert done.returncode != 0
    text = (work / "gpu_twins" / "results" / "regression.txt").read_text()
    assert text.startswith("error: regression_check did not run: a job it needs failed "
                           "(snakemake exit 1")
    assert text.endswith("outcome: not run (exit none)\n")
    assert "::error title=paper::regression check outcome 'not run'" in done.stdout


def test_an_ok_report_with_a_failed_snakemake_fails_the_night(tmp_path):
    done, _, _ = night(tmp_path, report_of(regress.EXIT_OK), 1)
    assert done.returncode != 0


def test_runs_cap_gpu_jobs_rerun_the_timed_jobs_and_work_outside_the_checkout(tmp_path):
    _, work, calls = night(tmp_path, report_of(regress.EXIT_OK), 0)
    runs = [c.split() for c in calls.splitlines() if "--unlock" not in c]
    assert len(runs) == 2
    for call, config in zip(runs, ("gpu_twins.yaml", "paper_nightly.yaml")):
        assert call[0] == "regression_check"  # the target before the many-valued options
        assert call[call.index("--resources") + 1] == "gpu=1"
        forced = call[call.index("--forcerun") + 1:]
        assert forced == ["run_table1", "run_scaling", "run_sequential"]
        assert call[call.index("--configfile") + 1].endswith(f"workflows/config/{config}")
        assert call[call.index("--directory") + 1].startswith(str(work))
    env = workflow()["jobs"]["nightly-gpu"]["env"]
    assert env["NIGHTLY_WORK"].startswith("${{ github.workspace }}/../")  # checkout-proof
    assert not any("actions/cache" in str(s.get("uses")) for s in steps())


def rule_shell() -> str:
    """regression_check's shell command as Snakemake formats it (placeholders left)."""
    text = RULE.read_text()
    body = text[text.index("    shell:\n") + len("    shell:\n"):]
    return ast.literal_eval("(" + body + ")")


@pytest.mark.parametrize("check_status, job_status", [(0, 0), (4, 0), (1, 1), (2, 2), (3, 3)])
def test_the_rule_succeeds_on_ok_and_no_baseline_only(tmp_path, check_status, job_status):
    fake = executable(tmp_path / "check", f"#!/bin/bash\necho checked\nexit {check_status}\n")
    command = re.sub(r"\{PYTHON\} -m harness\.regress", str(fake), rule_shell())
    command = re.sub(r"\{(input|params)\.\w+\}", "x", command)
    command = command.replace("{output}", str(tmp_path / "out.txt")).replace(
        "{log}", str(tmp_path / "check.log")).replace("{{", "{").replace("}}", "}")
    done = subprocess.run(["bash", "-c", "set -euo pipefail; " + command],  # as snakemake
                          capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == job_status, done.stderr
    assert (tmp_path / "check.log").read_text() == "checked\n"


def test_the_gpu_configs_ask_for_three_repeats_and_have_the_seeds_for_them():
    for name in ("gpu_twins.yaml", "paper_nightly.yaml"):
        config = yaml.safe_load((REPO_ROOT / "workflows" / "config" / name).read_text())
        assert config["regression"]["repeats"] == 3
        assert len(config["seeds"]) >= 3
        assert all(b["device"] == "cuda" for b in config["backbones"].values())
