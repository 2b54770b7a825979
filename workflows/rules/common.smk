# Config validation, names and paths shared by every rule file.

import hashlib
import json
import os
import sys
from types import SimpleNamespace

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from harness import plan_checks
from harness.methods.registry import (method_info, methods_of_kind, reference_methods,
                                      tuned_methods)
from harness.workflow_params import tracked_job
from harness.workflow_resources import light_resources, rule_resources
from harness.plan_checks import ConfigError

PYTHON = sys.executable


def _validate_config():
    try:  # `--config seeds=[0,1]`: typed as YAML first (Snakemake passes ['0', '1'])
        plan_checks.parse_overrides(config, workflow.config_settings.config)
    except ConfigError as exc:
        raise WorkflowError(f"invalid config at '{exc.key}': {exc.message}") from None
    try:  # also fills every optional key with its schema default (the one place stated)
        validate(config, "../config/schema.json", set_default=True)
    except WorkflowError as exc:
        # Name the offending key first, e.g. "invalid config at 'data.retain_eval_size'".
        from jsonschema import ValidationError

        cause = exc.__context__  # snakemake raises from inside `except ValidationError`
        if not isinstance(cause, ValidationError):
            raise
        where = ".".join(str(p) for p in cause.absolute_path) or "(top level)"
        raise WorkflowError(f"invalid config at '{where}': {cause.message}") from None


_validate_config()

BACKBONES = list(config["backbones"])
METHODS = list(config["methods"])
SEEDS = [int(s) for s in config["seeds"]]
DATA = config["data"]
# The corpus as configured (given, downloaded or generated) ...
SOURCE_DIR = DATA["tofu_dir"].rstrip("/")
# Every optional key below was filled with its default from schema.json by the validation
# above: no rule restates a default.
VALIDATION_SPLIT = DATA["validation_split"]
VALIDATION_AUTHORS = int(DATA["validation_authors"])
SUBSET_AUTHORS = DATA.get("authors")
SPLIT_SEED = int(DATA["split_seed"])
# ... and the prepared corpus every job reads (rule prepare_corpus, harness.data.prepare):
# validation split present, optional author subset, an author_id on every record. Its
# path names the data settings it was made with, so configs never share a stale copy.
_PREPARE_KEYS = {k: DATA.get(k) for k in ("source", "tofu_dir", "forget_split", "retain_split")}
# data.synthetic is always filled (schema default {} plus its keys' defaults) but names the
# corpus only when the corpus is generated.
_PREPARE_KEYS["synthetic"] = DATA["synthetic"] if DATA["source"] == "synthetic" else None
_PREPARE_KEYS.update(validation_split=VALIDATION_SPLIT, validation_authors=VALIDATION_AUTHORS,
                     authors=SUBSET_AUTHORS, split_seed=SPLIT_SEED)
TOFU_DIR = "results/corpus/" + hashlib.sha256(
    json.dumps(_PREPARE_KEYS, sort_keys=True).encode()).hexdigest()[:12]
EVAL = config["evaluation"]
THREADS = config["threads"]
JOB_THREADS = int(THREADS["job"])
FT_THREADS = int(THREADS["finetune"])
METHOD_CONFIG = config["method_config"]  # per-method overrides of each method's own defaults
TUNING = config["tuning"]
# Backbone keys default to another key's value (not expressible in the schema).
TUNING_BACKBONE = TUNING.get("backbone") or BACKBONES[0]
TUNING_ENABLED = bool(TUNING["enabled"])
SCALING_BACKBONE = config.get("scaling_backbone") or TUNING_BACKBONE
FACT_COUNTS = sorted(int(n) for n in config["fact_counts"])
SEQUENTIAL = config["sequential"]
SEQUENTIAL_BACKBONE = SEQUENTIAL.get("backbone") or TUNING_BACKBONE
TIE = config["tie"]
# `tie.backbones`: a list of names, or "all": every configured backbone.
# Names are checked against `backbones` with the other cross-key checks (_check_names).
_TIE_CHOICE = TIE["backbones"]
TIE_BACKBONES = list(BACKBONES) if _TIE_CHOICE == "all" else (
    [_TIE_CHOICE] if isinstance(_TIE_CHOICE, str) else list(_TIE_CHOICE))
# Methods' roles come from the method registry (harness.methods.registry), not from names:
# the gradient baselines are the configured methods of kind "gradient"; tuning runs for the
# methods with tunable keys.
GRADIENT_BASELINES = [m for m in METHODS if m in set(methods_of_kind("gradient"))]
TUNED_METHODS = set(tuned_methods())
if len(TUNED_METHODS) != 1:  # rule tune_timerome, the transfer table and the TIE and
    # sequential experiments are those of the one tuned method (TimeROME-DLM)
    raise WorkflowError(f"the method registry names {len(TUNED_METHODS)} methods with "
                        f"tunable keys ({', '.join(sorted(TUNED_METHODS))}); the workflow "
                        "tunes exactly one")
(TUNED_METHOD,) = TUNED_METHODS
# Methods of the scaling experiment: the config's list, or the registry's tuned method.
SCALING_METHODS = list(config.get("scaling_methods") or sorted(TUNED_METHODS))
# The reference rows of Table 1 and the transfer table (registry kind "reference",
# harness/methods/reference.py): never listed in `methods`, always run (rule run_reference).
REFERENCE_METHODS = reference_methods()


def _check_names():
    """Cross-key checks the JSON schema cannot express; each names the offending key."""
    import difflib

    known = set(BACKBONES)
    refs = {"tuning.backbone": [TUNING_BACKBONE], "scaling_backbone": [SCALING_BACKBONE],
            "sequential.backbone": [SEQUENTIAL_BACKBONE], "tie.backbones": TIE_BACKBONES}
    for key, names in refs.items():
        for name in names:
            if name not in known:
                close = difflib.get_close_matches(str(name), BACKBONES, n=1)
                hint = f"; did you mean '{close[0]}'?" if close else ""
                raise WorkflowError(f"invalid config: {key}: '{name}' is not a configured "
                                    f"backbone{hint} (known: {', '.join(BACKBONES)})")
    if SUBSET_AUTHORS is not None and int(SUBSET_AUTHORS) <= VALIDATION_AUTHORS:
        raise WorkflowError(f"invalid config: data.authors: {SUBSET_AUTHORS} retain authors "
                            f"must exceed data.validation_authors ({VALIDATION_AUTHORS}), "
                            f"which count among them")


_check_names()


# Corpus sizes are checked for every experiment (rule `all` plans them all), unless every
# target on the command line is a Table 1 one (its tuning, corpus and models included): a
# small corpus may plan Table 1 without fitting the scaling, sequential and TIE sizes it
# never uses. Snakemake parses this file before it hands over the targets
# (workflow.dag_settings is still None here), so they are read from the command line with
# Snakemake's own argument parser (a job Snakemake runs again through an executor names its
# rule in --target-jobs); when they cannot be told (the API, an odd command line),
# everything is checked.
_TABLE1_RULES = {"reproduce_table1", "transfer_table", "aggregate_table1", "table1_report",
                 "transfer_report", "run_table1", "run_reference", "tune_timerome",
                 "prepare_corpus",
                 "synthetic_corpus", "fetch_tofu", "finetune_backbone", "retain_model",
                 "backbone_statistics_table1", "edit_phases_report"}
_TABLE1_PATHS = ("results/runs/table1/", "results/tuning/", "results/table1.csv",
                 "results/statistics/table1/", "reports/table1.", "reports/transfer.",
                 "reports/edit_phases.md", "models/", f"{SOURCE_DIR}/", f"{TOFU_DIR}/")


def _cli_targets():
    """The targets (files, rules; the rules of --target-jobs) of the `snakemake` command
    line this process runs, or None."""
    prog = sys.argv[0] if sys.argv else ""
    if os.path.basename(prog) != "snakemake" and not prog.endswith(
            os.path.join("snakemake", "__main__.py")):
        return None
    argv, explicit = sys.argv[1:], []
    if "--" in argv:  # as snakemake.cli.parse_args: targets after '--'
        argv, explicit = argv[: argv.index("--")], argv[argv.index("--") + 1:]
    try:
        from snakemake.cli import get_argument_parser

        args, _ = get_argument_parser().parse_known_args(argv)
    except (Exception, SystemExit):
        return None
    jobs = [getattr(job, "rulename", None) or str(job).split(":", 1)[0]
            for job in getattr(args, "target_jobs", None) or []]
    return [*(args.targets or []), *explicit, *jobs]


def _size_experiments():
    targets = _cli_targets()
    if targets and all(t in _TABLE1_RULES or t.startswith(_TABLE1_PATHS) for t in targets):
        return ["table1"]
    return list(plan_checks.EXPERIMENTS)


def _plan_checks():
    """Everything checkable without a model (harness/plan_checks.py): method and adapter
    names, method configs, the tuning grid, NaN/infinity, split files and corpus sizes."""
    try:
        plan_checks.check_config(config, _size_experiments())
    except ConfigError as exc:
        raise WorkflowError(f"invalid config at '{exc.key}': {exc.message}") from None


_plan_checks()


def _alternation(names):
    return "|".join(sorted((n.replace(".", r"\.") for n in names), key=len, reverse=True))


wildcard_constraints:
    backbone=_alternation(BACKBONES),
    method=_alternation(set(METHODS) | set(SCALING_METHODS) | TUNED_METHODS),
    n_facts=r"[0-9]+",
    seed=r"[0-9]+",


def config_hash(*parts):
    text = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def backbone_entry(name):
    return dict(config["backbones"][name])


# ---- model paths: configured checkpoints are used as they are (no fine-tuning job)
def finetuned_path(name):
    return backbone_entry(name).get("checkpoint") or f"models/{name}/finetuned"


def has_retain_model(name):
    entry = backbone_entry(name)
    return bool(entry.get("retain_checkpoint") or entry.get("retain_model", False))


def retain_path(name):
    return backbone_entry(name).get("retain_checkpoint") or f"models/{name}/retain"


def model_inputs(name, with_retain):
    paths = [finetuned_path(name)]
    if with_retain and has_retain_model(name):
        paths.append(retain_path(name))
    return paths


def references_of(name):
    """The reference rows of backbone `name`: every reference method, but one scored on the
    retain model (MethodInfo.on_retain_model) only where the backbone has a retain model."""
    return [m for m in REFERENCE_METHODS
            if not method_info(m).on_retain_model or has_retain_model(name)]


def method_config_of(method, name):
    """The method config a job of `method` on backbone `name` runs with: the config's
    `method_config` entry; a reference scored on the retain model gets its folder."""
    entry = METHOD_CONFIG.get(method, {})
    if method_info(method).on_retain_model:
        return {**(entry or {}), "checkpoint": retain_path(name)}
    return entry


def corpus_marker():
    """The prepared corpus's manifest (rule prepare_corpus): jobs read TOFU_DIR after it."""
    return f"{TOFU_DIR}/manifest.json"


def job_arg(payload):
    return json.dumps(payload, sort_keys=True, separators=(",", ":"))




def tuned_path(seed=0):
    return f"results/tuning/{TUNING_BACKBONE}/seed{seed}.json"


def is_tuned(method):
    """Whether `method`'s jobs apply the tuning job's chosen point (its registry entry has
    tunable keys and tuning is enabled)."""
    return method in TUNED_METHODS and TUNING_ENABLED


# Per experiment, its methods that declare per-backbone statistics (rule files
# statistics.smk).
STATISTICS_METHODS = {
    experiment: [m for m in methods if method_info(m).backbone_statistics]
    for experiment, methods in (("table1", METHODS), ("scaling", SCALING_METHODS))}


def statistics_path(wildcards, experiment):
    """The method's per-backbone statistics file for an edit job, or None (the method
    declares none in the registry, or the experiment computes them in the edit)."""
    if wildcards.method not in STATISTICS_METHODS.get(experiment, ()):
        return None
    return (f"results/statistics/{experiment}/{wildcards.backbone}/{wildcards.method}/"
            f"seed{wildcards.seed}.safetensors")


def statistics_input(experiment):
    def inputs(wildcards):
        path = statistics_path(wildcards, experiment)
        return [path] if path else []
    return inputs


def method_job(wildcards, experiment, output, n_facts=None, seed=None, statistics=True):
    """The job description of harness.jobs.run_method (its MethodJob fields, all given);
    `statistics=False`: the job of rule backbone_statistics itself."""
    name, method = wildcards.backbone, wildcards.method
    seed = int(wildcards.seed if seed is None else seed)
    tuned = tuned_path() if is_tuned(method) else None
    payload = {
        "experiment": experiment,
        "backbone": name,
        "backbone_entry": backbone_entry(name),
        "backbone_path": finetuned_path(name),
        "method": method,
        "method_config": method_config_of(method, name),
        "tofu_dir": TOFU_DIR,
        "forget_split": DATA["forget_split"],
        "retain_split": DATA["retain_split"],
        "validation_split": VALIDATION_SPLIT,
        "out": str(output),
        "n_facts": n_facts,
        "max_n_facts": FACT_COUNTS[-1] if n_facts is not None else None,
        "retain_model_path": retain_path(name) if (experiment == "table1"
                                                    and has_retain_model(name)) else None,
        "tuned_config": tuned,
        "retain_eval_size": int(DATA["retain_eval_size"]),
        "retain_train_size": int(DATA["retain_train_size"]),
        "eval_seed": int(DATA["eval_seed"]),
        "seed": seed,
        "estimator": config["estimator"],
        "target_forget_drop": None if MATCHED_METHOD else config["target_forget_drop"],
        "target_from_record": matched_record_path(wildcards, experiment, n_facts),
        "evaluation": dict(EVAL),
        "threads": JOB_THREADS,
        "statistics": statistics_path(wildcards, experiment) if statistics else None,
    }
    if experiment == "scaling":
        payload["evaluation"] = {**payload["evaluation"], "forget_quality": False,
                                 "model_utility": False}
    payload["config_hash"] = config_hash(payload, DATA)
    return job_arg(payload)


# `target_forget_drop: <method>` (a method name): gradient baselines match
# that method's achieved drop; a number is a fixed target; null: plateau or step cap.
MATCHED_METHOD = config["target_forget_drop"] if isinstance(config["target_forget_drop"],
                                                            str) else None


def matched_record_path(wildcards, experiment, n_facts=None):
    """The TimeROME-DLM record whose forget drop a gradient baseline must match, or None.

    With `target_forget_drop: timerome` every gradient baseline stops when it has removed
    as much as TimeROME-DLM did on the same backbone, forget set and seed (the paper's
    matched-efficacy comparison); a number is a fixed target; null stops on plateau/cap."""
    if not MATCHED_METHOD or wildcards.method not in GRADIENT_BASELINES:
        return None
    base = f"results/runs/{experiment}/{wildcards.backbone}/{MATCHED_METHOD}"
    if n_facts is not None:
        base += f"/n{n_facts}"
    return f"{base}/seed{wildcards.seed}.json"


def matched_input(experiment):
    def inputs(wildcards):
        n = getattr(wildcards, "n_facts", None)
        path = matched_record_path(wildcards, experiment, n)
        return [path] if path else []
    return inputs


def tuned_input(wildcards):
    return [tuned_path()] if is_tuned(wildcards.method) else []
