"""The Snakemake workflow: bad configs are rejected before any job; dry-runs plan the DAG."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
REPO_ROOT = Path(__file__).resolve().parents[2]

SNAKEMAKE = [sys.executable, "-m", "snakemake"]
DEFAULT = REPO_ROOT / "workflows" / "config" / "default.yaml"
PAPER = REPO_ROOT / "workflows" / "config" / "paper.yaml"


def dry_run(workdir: Path, target: str, configfile: Path | None = None,
            env: dict | None = None, extra: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    cmd = SNAKEMAKE + ["-n", "--nolock", "--cores", "1", "-s", str(REPO_ROOT / "Snakefile"),
                       "--directory", str(workdir), *extra, target]
    if configfile is not None:
        cmd += ["--configfile", str(configfile)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


def job_counts(output: str) -> dict[str, int]:
    block = output.split("Job stats:", 1)[1]
    return {m.group(1): int(m.group(2))
            for m in re.finditer(r"^(\w+)\s+(\d+)$", block, flags=re.MULTILINE)}


def broken_config(tmp_path: Path, edit) -> Path:
    config = yaml.safe_load(DEFAULT.read_text())
    edit(config)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize("edit, message", [
    (lambda c: c["data"].update(bogus_key=1),
     "invalid config at 'data': Additional properties are not allowed ('bogus_key'"),
    (lambda c: c["data"].update(retain_eval_size="forty"),
     "invalid config at 'data.retain_eval_size': 'forty' is not of type 'integer'"),
    (lambda c: c["backbones"]["dream-7b-twin"].update(dtype="float8"),
     "invalid config at 'backbones.dream-7b-twin.dtype'"),
    (lambda c: c["data"]["synthetic"].update(answer_style="long"),
     "invalid config at 'data.synthetic.answer_style': 'long' is not one of"),
    (lambda c: c["tuning"].update(backbone="no-such-backbone"),
     "invalid config: tuning.backbone: 'no-such-backbone' is not a configured backbone"),
    (lambda c: c["sequential"].update(method="memit"),
     "invalid config: sequential.method: 'memit' does not insert facts one at a time; "
     "methods that do: timerome"),
])
def test_bad_config_rejected_before_any_job(tmp_path, edit, message):
    result = dry_run(tmp_path, "reproduce_table1", broken_config(tmp_path, edit))
    assert result.returncode != 0
    text = result.stdout + result.stderr
    assert message in text
    assert "Job stats" not in text  # nothing was planned


def test_default_dry_run_plans_table1(tmp_path):
    result = dry_run(tmp_path, "reproduce_table1", DEFAULT, extra=("-p",))
    assert result.returncode == 0, result.stderr
    counts = job_counts(result.stdout)
    assert counts["finetune_backbone"] == 6
    assert counts["run_table1"] == 36
    assert counts["synthetic_corpus"] == 1
    assert counts["retain_model"] == 1
    # data.synthetic.answer_style is not in default.yaml: the schema's default is passed
    from harness.data.synth import DEFAULT_ANSWER_STYLE
    assert f"--answer-style {DEFAULT_ANSWER_STYLE} >" in result.stdout


def test_synthetic_answer_style_reaches_the_generator(tmp_path):
    def edit(c):
        c["data"]["synthetic"] = {"answer_style": "tofu"}  # other keys: their defaults
    config = broken_config(tmp_path, edit)
    result = dry_run(tmp_path, "data/synthetic/manifest.json", config, extra=("-p",))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert job_counts(result.stdout) == {"synthetic_corpus": 1, "total": 1}
    assert ("--authors 100 --facts-per-author 10 --seed 0 --answer-style tofu >"
            in result.stdout)


def test_paper_dry_run_loads_no_model_and_touches_no_network(tmp_path):
    # torch / transformers / datasets shadowed by modules that fail on import.
    shadow = tmp_path / "shadow"
    for name in ("torch", "transformers", "datasets", "huggingface_hub"):
        (shadow / name).mkdir(parents=True)
        (shadow / name / "__init__.py").write_text(
            f"raise ImportError('{name} imported during a dry-run')\n")
    env = {"PYTHONPATH": str(shadow), "HF_HUB_OFFLINE": "1", "no_proxy": "*",
           "https_proxy": "http://127.0.0.1:9", "http_proxy": "http://127.0.0.1:9"}
    result = dry_run(tmp_path / "work", "reproduce_table1", PAPER, env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    counts = job_counts(result.stdout)
    n_backbones = len(yaml.safe_load(PAPER.read_text())["backbones"])
    assert n_backbones == 6
    assert counts["run_table1"] == 6 * 6
    assert counts["finetune_backbone"] == 6
    assert counts["fetch_tofu"] == 1


def test_gradient_baselines_wait_for_the_timerome_record_they_match(tmp_path):
    """target_forget_drop: timerome makes each gradient baseline job an input-dependent of
    the TimeROME-DLM record of the same backbone and seed; ROME/MEMIT do not wait."""
    result = dry_run(tmp_path, "results/runs/table1/dream-7b-twin/npo/seed0.json", DEFAULT)
    assert result.returncode == 0, result.stderr
    planned = re.findall(r"output: (\S+)", result.stdout)
    assert "results/runs/table1/dream-7b-twin/timerome/seed0.json" in planned
    result = dry_run(tmp_path, "results/runs/table1/dream-7b-twin/memit/seed0.json", DEFAULT)
    assert result.returncode == 0, result.stderr
    planned = re.findall(r"output: (\S+)", result.stdout)
    assert "results/runs/table1/dream-7b-twin/timerome/seed0.json" not in planned


# ---- real-TOFU layout (tofu_dir): files made here, in the shipped layout (no validation)
sys.path.insert(0, str(REPO_ROOT / "tests" / "data"))
from tofu_tiny import write_tiny_tofu  # noqa: E402

TOFU_REAL_CPU = REPO_ROOT / "workflows" / "config" / "tofu_real_cpu.yaml"


def tofu_dir_config(tmp_path: Path, tofu: Path, **data) -> Path:
    def edit(c):
        c["data"].update(source="tofu_dir", tofu_dir=str(tofu), authors=4, **data)
        c["data"].pop("synthetic", None)
    return broken_config(tmp_path, edit)


def test_tofu_dir_without_validation_file_plans(tmp_path):
    tofu = write_tiny_tofu(tmp_path / "tofu")
    result = dry_run(tmp_path / "work", "reproduce_table1", tofu_dir_config(tmp_path, tofu))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    counts = job_counts(result.stdout)
    assert counts["prepare_corpus"] == 1 and counts["tune_timerome"] == 1
    assert "synthetic_corpus" not in counts and "fetch_tofu" not in counts


@pytest.mark.parametrize("content", [None, ""])
def test_missing_or_empty_split_file_fails_the_dry_run_naming_it(tmp_path, content):
    tofu = write_tiny_tofu(tmp_path / "tofu", skip=("forget01_perturbed",))
    if content is not None:
        (tofu / "forget01_perturbed.json").write_text(content)
    result = dry_run(tmp_path / "work", "reproduce_table1", tofu_dir_config(tmp_path, tofu))
    assert result.returncode != 0
    text = result.stdout + result.stderr
    assert f"{tofu}/forget01_perturbed.json" in text
    assert ("split file not found" if content is None else "split file is empty") in text
    assert "Job stats" not in text  # nothing was planned


def test_authors_must_exceed_validation_authors(tmp_path):
    tofu = write_tiny_tofu(tmp_path / "tofu")
    cfg = tofu_dir_config(tmp_path, tofu, validation_authors=4)
    result = dry_run(tmp_path / "work", "reproduce_table1", cfg)
    assert result.returncode != 0
    assert ("invalid config: data.authors: 4 retain authors must exceed"
            in result.stdout + result.stderr)


def test_authors_is_validated_by_the_schema(tmp_path):
    result = dry_run(tmp_path, "reproduce_table1",
                     broken_config(tmp_path, lambda c: c["data"].update(authors=1)))
    assert result.returncode != 0
    assert ("invalid config at 'data.authors': 1 is less than the minimum of 2"
            in result.stdout + result.stderr)


def test_tofu_real_cpu_config_is_a_whole_config_with_the_default_twins():
    cfg = yaml.safe_load(TOFU_REAL_CPU.read_text())
    default = yaml.safe_load(DEFAULT.read_text())
    # The same twins; only the fine-tune length differs (real answers are longer).
    def strip(backbones):
        return {name: {**entry, "finetune": {k: v for k, v in entry["finetune"].items()
                                             if k != "epochs"}}
                for name, entry in backbones.items()}

    assert strip(cfg["backbones"]) == strip(default["backbones"])
    assert cfg["methods"] == default["methods"]
    data = cfg["data"]
    assert (data["source"], data["forget_split"], data["tofu_dir"]) == (
        "tofu_dir", "forget01", "../shared/data/tofu")
    kept_retain_records = (data["authors"] - data["validation_authors"]) * 20
    # Table 1's scored sample, the tuning's (disjoint from it) and the tuning's calibration
    # facts (harness.jobs.selection.tuning_retain), all full.
    assert 2 * data["retain_eval_size"] + data["retain_train_size"] <= kept_retain_records
    assert max(cfg["fact_counts"]) < (2 + data["authors"]) * 20


def test_config_workdir_puts_every_output_there(tmp_path):
    """`workdir` in the config (a shared filesystem on a cluster): the outputs are written
    there, not in the directory snakemake runs in."""
    shared, here = tmp_path / "shared", tmp_path / "submit"
    here.mkdir()
    config = broken_config(tmp_path, lambda c: c.update(workdir=str(shared)))
    cmd = SNAKEMAKE + ["--cores", "1", "-s", str(REPO_ROOT / "Snakefile"),
                       "data/synthetic/manifest.json", "--configfile", str(config)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=here)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (shared / "data" / "synthetic" / "manifest.json").is_file()
    assert not (here / "data").exists()


FORGET05 = REPO_ROOT / "workflows" / "config" / "forget05.yaml"


def test_forget05_config_is_the_default_on_forget05_for_the_tuning_twin(tmp_path):
    """Forget quality on 50 facts: the default config but for the splits, one backbone (the
    tuning twin, with its retain model) and its own working directory."""
    cfg = yaml.safe_load(FORGET05.read_text())
    default = yaml.safe_load(DEFAULT.read_text())
    tuning_twin = default["tuning"]["backbone"]
    assert cfg["backbones"] == {tuning_twin: default["backbones"][tuning_twin]}
    assert cfg["backbones"][tuning_twin]["retain_model"] is True
    assert (cfg["data"]["forget_split"], cfg["data"]["retain_split"]) == ("forget05", "retain95")
    same = {k: v for k, v in cfg.items() if k not in ("data", "backbones", "workdir")}
    assert same == {k: v for k, v in default.items() if k not in ("data", "backbones")}
    assert {k: v for k, v in cfg["data"].items() if not k.endswith("_split")} == \
        {k: v for k, v in default["data"].items() if not k.endswith("_split")}
    result = dry_run(tmp_path, "reproduce_table1", FORGET05)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    counts = job_counts(result.stdout)
    assert counts["run_table1"] == len(default["methods"]) and counts["retain_model"] == 1
    assert f"results/runs/table1/{tuning_twin}/timerome/seed0.json" in result.stdout
