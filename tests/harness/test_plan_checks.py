"""Plan-time config checks (harness/plan_checks.py): each mistake is a named ConfigError, and
the workflow reports it when it plans the DAG (`snakemake -n`), before any job."""

from __future__ import annotations

import copy
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from test_workflow_config import DEFAULT, REPO_ROOT, broken_config, dry_run, job_counts

from harness import plan_checks
from harness.plan_checks import ConfigError

sys.path.insert(0, str(REPO_ROOT / "tests" / "data"))
from tofu_tiny import write_tiny_tofu

SCHEMA = REPO_ROOT / "workflows" / "config" / "schema.json"
CONFIGS = REPO_ROOT / "workflows" / "config"
METHODS = "graddiff, gradient_ascent, memit, npo, rome, timerome"


def validated(config: dict) -> dict:
    """`config` with the schema's defaults filled in, as the workflow checks it."""
    from snakemake.utils import validate

    validate(config, str(SCHEMA))
    return config


@pytest.fixture(scope="module")
def default() -> dict:
    return validated(yaml.safe_load(DEFAULT.read_text()))


@pytest.fixture
def cfg(default) -> dict:
    return copy.deepcopy(default)


def raised(check, *args, **kwargs) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        check(*args, **kwargs)
    return info.value


def tofu_dir_data(tofu: Path, **data) -> dict:
    return {"source": "tofu_dir", "tofu_dir": str(tofu), "forget_split": "forget01",
            "retain_split": "retain99", "validation_split": "validation",
            "validation_authors": 2, "authors": None, "split_seed": 0,
            "retain_eval_size": 40, **data}


# ---- the shipped configs pass every check

@pytest.mark.parametrize("name", ["default", "gpu_twins", "tofu_real_cpu", "paper",
                                  "paper_nightly"])
def test_shipped_configs_pass(name, monkeypatch):
    config = validated(yaml.safe_load((CONFIGS / f"{name}.yaml").read_text()))
    if config["data"]["source"] == "tofu_dir":
        tofu = Path(config["data"]["tofu_dir"])
        if not tofu.is_absolute():  # relative to the working directory, the repository
            monkeypatch.chdir(REPO_ROOT)
        if not tofu.is_dir():
            pytest.skip(f"{tofu} (real TOFU) is not on this machine")
    plan_checks.check_config(config)


# ---- 1. names

def test_unknown_method_with_did_you_mean(cfg):
    cfg["methods"][1] = "gradient_ascnt"
    err = raised(plan_checks.check_method_names, cfg)
    assert str(err) == ("invalid config at 'methods.1': unknown method 'gradient_ascnt' "
                        f"(did you mean 'gradient_ascent'?); known: {METHODS}")


def test_unknown_method_config_key(cfg):
    cfg["method_config"]["timerom"] = {}
    assert str(raised(plan_checks.check_method_names, cfg)) == (
        "invalid config at 'method_config.timerom': unknown method 'timerom' "
        f"(did you mean 'timerome'?); known: {METHODS}")


def test_gradient_baselines_is_no_config_key(cfg):
    """The gradient baselines are the registry's methods of kind "gradient": a config that
    still lists them is refused by the schema."""
    from snakemake.exceptions import WorkflowError

    cfg["gradient_baselines"] = ["gradient_ascent"]
    with pytest.raises(WorkflowError):
        validated(cfg)


def test_unknown_adapter(cfg):
    cfg["backbones"]["dream-7b-twin"]["adapter"] = "dreem-twin"
    err = raised(plan_checks.check_adapters, cfg)
    assert err.key == "backbones.dream-7b-twin.adapter"
    assert err.message.startswith("unknown backbone adapter 'dreem-twin' (did you mean "
                                  "'dream-twin'?); known: diffullama-hf, diffullama-twin, ")


def test_name_tables_match_the_registries():
    """The plan-time name lists (no torch) are the registries' own."""
    from harness.backbones.registry import adapter_names
    from harness.methods.registry import BUILTIN_CONFIG_VALIDATORS, method_names

    assert plan_checks.adapter_names() == adapter_names()
    assert sorted(BUILTIN_CONFIG_VALIDATORS) == method_names() == plan_checks.method_names()


# ---- 2. method configs: each method's own validator

@pytest.mark.parametrize("timerome, key, message", [
    ({"alhpa": 8.0}, "method_config.timerome.alhpa",
     "unknown TimeROMEConfig key(s): alhpa (did you mean 'alpha'?); known: alpha, "),
    ({"lam": 0}, "method_config.timerome.lam", "invalid TimeROMEConfig: lam must be > 0, got 0"),
    ({"q": 2}, "method_config.timerome.q", "invalid TimeROMEConfig: q must lie in (0, 1], got 2"),
    ({"alpha": math.nan}, "method_config.timerome.alpha",
     "invalid TimeROMEConfig: alpha must be a finite number, got nan"),
    ({"noise_samples": 2.5}, "method_config.timerome.noise_samples",
     "invalid TimeROMEConfig: noise_samples must be an integer, got 2.5"),
])
def test_timerome_config(cfg, timerome, key, message):
    cfg["method_config"]["timerome"] = timerome
    err = raised(plan_checks.check_method_configs, cfg)
    assert err.key == key
    assert err.message.startswith(message)


@pytest.mark.parametrize("method, config, key, message", [
    ("npo", {"learning_rate": 1e-4}, "method_config.npo.learning_rate",
     "method 'npo': unknown config key(s) learning_rate; known: alpha, batch_size, beta, "),
    ("graddiff", {"lrr": 1e-4}, "method_config.graddiff.lrr",
     "method 'graddiff': unknown config key(s) lrr (did you mean 'lr'?)"),
    ("gradient_ascent", {"max_steps": 0}, "method_config.gradient_ascent.max_steps",
     "invalid training config field(s): max_steps must be >= 1, got 0"),
    ("gradient_ascent", {"lr": math.inf}, "method_config.gradient_ascent.lr",
     "invalid training config: lr must be a finite number, got inf"),
    ("npo", {"beta": 0}, "method_config.npo.beta", "npo: beta must be > 0, got 0"),
    ("rome", {"clampp": 2}, "method_config.rome.clampp",
     "method 'rome': unknown config key(s) clampp (did you mean 'clamp'?)"),
    ("rome", {"v_lr": -1}, "method_config.rome.v_lr",
     "invalid value-optimisation config: v_lr must be > 0, got -1"),
    ("memit", {"layers": [3, 3]}, "method_config.memit.layers",
     "config 'layers': repeated layer in [3, 3]"),
    ("memit", {"mom2_ratio": 0}, "method_config.memit.mom2_ratio",
     "memit: mom2_weight / mom2_ratio must be > 0"),
])
def test_baseline_configs(cfg, method, config, key, message):
    cfg["method_config"][method] = config
    err = raised(plan_checks.check_method_configs, cfg)
    assert err.key == key
    assert err.message.startswith(message)


def test_baselines_parse_with_the_validated_parser():
    """The methods reject at run time what the plan-time check rejects (one parser)."""
    from baselines.configs import parse_edit_config, split_config
    from harness.methods.base import MethodConfigError

    with pytest.raises(MethodConfigError, match="v_steps must be an integer"):
        parse_edit_config({"v_steps": 2.5}, "rome", ("layer",))
    with pytest.raises(MethodConfigError, match="did you mean 'eval_every'"):
        split_config({"eval_evry": 2}, "npo", ("beta", "alpha"))


# ---- 3. tuning

def test_tuning_grid_alpha_zero(cfg):
    cfg["tuning"]["grid"]["alpha"] = [0]
    assert str(raised(plan_checks.check_tuning, cfg)) == (
        "invalid config at 'tuning.grid.alpha.0': alpha must be > 0 in the tuning grid, got 0 "
        "(alpha 0 edits nothing: no forgetting to tune)")


def test_tuning_grid_values_go_through_timerome_config(cfg):
    cfg["tuning"]["grid"]["lam"] = [1.0, 0.0]
    err = raised(plan_checks.check_tuning, cfg)
    assert (err.key, err.message) == ("tuning.grid.lam.1",
                                      "invalid TimeROMEConfig: lam must be > 0, got 0.0")


def test_tuning_max_retain_drop_nan(cfg):
    cfg["tuning"]["max_retain_drop"] = math.nan
    assert str(raised(plan_checks.check_finite, cfg)) == (
        "invalid config at 'tuning.max_retain_drop': nan is not a finite number")
    assert raised(plan_checks.check_tuning, cfg).message == (
        "must be a finite number >= 0 (nats per sample), got nan")


# ---- 4. NaN / infinity anywhere (YAML .nan / .inf)

def test_nan_and_inf_anywhere_are_named(cfg):
    text = yaml.safe_dump(cfg).replace("max_retain_drop: 1.0", "max_retain_drop: .inf")
    assert str(raised(plan_checks.check_finite, yaml.safe_load(text))) == (
        "invalid config at 'tuning.max_retain_drop': inf is not a finite number")
    cfg["method_config"]["timerome"] = {"alpha": yaml.safe_load(".nan")}
    assert str(raised(plan_checks.check_config, cfg)) == (
        "invalid config at 'method_config.timerome.alpha': nan is not a finite number")
    cfg["method_config"]["timerome"]["alpha"] = 8.0
    cfg["backbones"]["dream-7b-twin"]["options"] = {"scale": [1.0, -math.inf]}
    assert raised(plan_checks.check_finite, cfg).key == "backbones.dream-7b-twin.options.scale.1"


# ---- 5. corpus sizes (synthetic computed, tofu_dir read from disk, tofu_hub TOFU's sizes)

def test_tie_n_facts_too_large(cfg):
    cfg["tie"]["n_facts"] = 11  # forget01 of the default 1000-record synthetic corpus: 10
    assert str(raised(plan_checks.check_corpus_sizes, cfg)) == (
        "invalid config at 'tie.n_facts': 11 facts to trace, but forget01 has only 10 "
        "records in the synthetic corpus (100 authors x 10 facts)")
    cfg["tie"]["n_facts"] = 10
    plan_checks.check_corpus_sizes(cfg)


def test_sequential_n_facts_too_large(cfg):
    cfg["sequential"]["n_facts"] = 960  # 1000 records - 40 scored retain facts - 1 = 959
    assert str(raised(plan_checks.check_corpus_sizes, cfg)) == (
        "invalid config at 'sequential.n_facts': 960 facts do not fit: sequential insertion "
        "forgets the last n records of full and draws the retain facts from the records "
        "before them, data.retain_eval_size (40) scored + at least 1 for the method, so at "
        "most 959 of the 1000 records of full in the synthetic corpus (100 authors x 10 facts)")
    cfg["sequential"]["n_facts"] = 959
    plan_checks.check_corpus_sizes(cfg)


def test_fact_counts_too_large_for_a_tofu_dir_corpus(cfg, tmp_path):
    tofu = write_tiny_tofu(tmp_path / "tofu")  # 200 records in full
    cfg["data"] = tofu_dir_data(tofu)
    cfg["tie"]["n_facts"] = 2
    cfg["fact_counts"] = [1, 10, 160]
    err = raised(plan_checks.check_corpus_sizes, cfg)
    assert err.key == "fact_counts"
    assert err.message.startswith("160 facts do not fit: scaling forgets the last n records ")
    assert err.message.endswith(f"so at most 159 of the 200 records of full in the corpus in "
                                f"{tofu}")
    cfg["fact_counts"] = [1, 10, 159]
    plan_checks.check_corpus_sizes(cfg)
    # Only Table 1 planned: the scaling/sequential/TIE sizes are not the corpus's concern.
    cfg["fact_counts"] = [400]
    plan_checks.check_corpus_sizes(cfg, experiments=["table1"])


def test_sizes_follow_the_author_subset(tmp_path):
    """data.authors cuts the prepared corpus: the sizes are those prepare_corpus writes."""
    from harness.data.prepare import prepare_corpus, validation_author_ids
    from harness.data.reader import load_split

    tofu = write_tiny_tofu(tmp_path / "tofu")
    data = tofu_dir_data(tofu, authors=4)
    sizes = plan_checks.prepared_sizes(data)
    out = tmp_path / "prepared"
    prepare_corpus(tofu, out, "forget01", "retain99", validation_split="validation",
                   validation_authors=2, authors=4, seed=0)
    excluded = validation_author_ids(out) | {f.author_id for f in load_split(out, "forget01")}
    pool = [f for f in load_split(out, "retain99") if f.author_id not in excluded]
    assert (sizes.full, sizes.forget, sizes.retain_pool) == (
        len(load_split(out, "full")), len(load_split(out, "forget01")), len(pool))


def test_retain_eval_size_too_large(cfg, tmp_path):
    cfg["data"] = tofu_dir_data(write_tiny_tofu(tmp_path / "tofu"), authors=4,
                                retain_eval_size=41)  # 2 retain authors x 20 left
    err = raised(plan_checks.check_corpus_sizes, cfg, experiments=["table1"])
    assert err.key == "data.retain_eval_size"
    assert err.message.startswith("41 retain facts to score, but only 40 records of retain99 "
                                  "lie outside the validation and forget authors in ")


def test_tofu_hub_uses_tofus_published_sizes(cfg):
    cfg["data"].update(source="tofu_hub", forget_split="forget10", retain_split="retain90")
    sizes = plan_checks.prepared_sizes(cfg["data"])
    assert (sizes.full, sizes.forget) == (4000, 400)
    cfg["tie"]["n_facts"] = 401
    assert raised(plan_checks.check_corpus_sizes, cfg).message.startswith(
        "401 facts to trace, but forget10 has only 400 records in TOFU from the hub")


@pytest.mark.parametrize("content", ["", "\n  \n"])
def test_empty_split_file(cfg, tmp_path, content):
    tofu = write_tiny_tofu(tmp_path / "tofu")
    (tofu / "retain_perturbed.json").write_text(content)
    cfg["data"] = tofu_dir_data(tofu)
    assert str(raised(plan_checks.check_corpus_sizes, cfg)) == (
        f"invalid config at 'data.tofu_dir': {tofu}/retain_perturbed.json: split file is "
        "empty (split 'retain_perturbed')")


def test_malformed_split_file(cfg, tmp_path):
    tofu = write_tiny_tofu(tmp_path / "tofu")
    (tofu / "full.json").write_text(json.dumps({"question": "Q?"}) + "\n")
    cfg["data"] = tofu_dir_data(tofu)
    err = raised(plan_checks.check_corpus_sizes, cfg)
    assert err.key == "data.tofu_dir" and f"{tofu}/full.json, line 1" in err.message


# ---- 6. --config overrides

def test_config_override_lists_are_typed(cfg):
    cfg["seeds"] = ["0", "1"]  # what Snakemake makes of --config 'seeds=[0,1]'
    plan_checks.parse_overrides(cfg, {"seeds": ["0", "1"]})
    assert cfg["seeds"] == [0, 1]
    cfg["seeds"] = "[0, -1]"  # a flow collection kept as a string
    plan_checks.parse_overrides(cfg, {"seeds": "[0, -1]"})
    assert cfg["seeds"] == [0, -1]
    tuning = {"grid": {"alpha": [".nan"]}}  # nested: only the overridden leaves are typed
    cfg["tuning"]["grid"]["alpha"] = [".nan"]
    plan_checks.parse_overrides(cfg, {"tuning": tuning})
    assert math.isnan(cfg["tuning"]["grid"]["alpha"][0]) and cfg["tuning"]["backbone"] == (
        "llada-8b-base-twin")
    cfg["seeds"] = "[0, 1"
    assert raised(plan_checks.parse_overrides, cfg, {"seeds": "[0, 1"}).key == "seeds"


def test_plan_checks_import_no_torch():
    code = ("import sys, yaml; from harness import plan_checks; from snakemake.utils import "
            f"validate; c = yaml.safe_load(open({str(DEFAULT)!r})); "
            f"validate(c, {str(SCHEMA)!r}); plan_checks.check_config(c); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=REPO_ROOT, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]


# ---- end to end: `snakemake -n` fails at plan time, naming the key

def assert_refused(result, message):
    text = result.stdout + result.stderr
    assert result.returncode != 0
    assert message in text, text[-2000:]
    assert "Job stats" not in text  # nothing was planned


def test_dry_run_refuses_an_unknown_method(tmp_path):
    config = broken_config(tmp_path, lambda c: c["scaling_methods"].append("memitt"))
    assert_refused(dry_run(tmp_path, "reproduce_table1", config),
                   "invalid config at 'scaling_methods.3': unknown method 'memitt' "
                   "(did you mean 'memit'?)")


def test_dry_run_refuses_a_nan_hyperparameter(tmp_path):
    config = broken_config(tmp_path, lambda c: c["method_config"].update(
        timerome={"alpha": float("nan")}))
    assert ".nan" in config.read_text()
    assert_refused(dry_run(tmp_path, "reproduce_table1", config),
                   "invalid config at 'method_config.timerome.alpha': nan is not a finite number")


def test_dry_run_checks_fact_counts_against_a_tofu_dir_corpus(tmp_path):
    tofu = write_tiny_tofu(tmp_path / "tofu")

    def edit(c):
        c["data"].update(source="tofu_dir", tofu_dir=str(tofu), authors=4)  # 100 records
        c["data"].pop("synthetic")
        c.update(fact_counts=[1, 60], tie={"n_facts": 2}, sequential={"n_facts": 10})
    config = broken_config(tmp_path, edit)
    result = dry_run(tmp_path / "work", "scaling_figures", config)
    assert_refused(result, "invalid config at 'fact_counts': 60 facts do not fit: scaling "
                           "forgets the last n records of full")
    assert "so at most 59 of the 100 records of full" in result.stdout + result.stderr
    # Table 1 alone does not draw the scaling sets: it plans.
    result = dry_run(tmp_path / "work", "reproduce_table1", config)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]


def test_dry_run_types_config_overrides(tmp_path):
    # --nolock ends --config's list of entries (the target follows).
    result = dry_run(tmp_path, "reproduce_table1", extra=("--config", "seeds=[0,1]", "--nolock"))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert job_counts(result.stdout)["run_table1"] == 6 * 6 * 2
    assert_refused(dry_run(tmp_path, "reproduce_table1",
                           extra=("--config", "seeds=[0,-1]", "--nolock")),
                   "invalid config at 'seeds.1': -1 is less than the minimum of 0")
