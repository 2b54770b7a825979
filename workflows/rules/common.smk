# Config validation, names and paths shared by every rule file.

import hashlib
import json
import os
import sys

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

PYTHON = sys.executable


def _validate_config():
    try:
        validate(config, "../config/schema.json")
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
# Defaults of these keys are filled in from schema.json by the validation above.
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
EVAL = config.get("evaluation", {})
THREADS = config.get("threads", {})
JOB_THREADS = int(THREADS.get("job", 1))
FT_THREADS = int(THREADS.get("finetune", 1))
TUNING = config.get("tuning", {})
TUNING_BACKBONE = TUNING.get("backbone", BACKBONES[0])
TUNING_ENABLED = bool(TUNING.get("enabled", True))
SCALING_BACKBONE = config.get("scaling_backbone", TUNING_BACKBONE)
SCALING_METHODS = list(config.get("scaling_methods", ["timerome"]))
FACT_COUNTS = sorted(int(n) for n in config.get("fact_counts", []))
SEQUENTIAL = config.get("sequential", {})
SEQUENTIAL_BACKBONE = SEQUENTIAL.get("backbone", TUNING_BACKBONE)
TIE = config.get("tie", {})
# `tie.backbones`: a list of names, or "all" (the default): every configured backbone.
# Names are checked against `backbones` with the other cross-key checks (_check_names).
_TIE_CHOICE = TIE.get("backbones", "all")
TIE_BACKBONES = list(BACKBONES) if _TIE_CHOICE == "all" else (
    [_TIE_CHOICE] if isinstance(_TIE_CHOICE, str) else list(_TIE_CHOICE))
GRADIENT_BASELINES = list(config.get("gradient_baselines", []))


def _check_names():
    """Cross-key checks the JSON schema cannot express; each names the offending key."""
    known = set(BACKBONES)
    refs = {"tuning.backbone": [TUNING_BACKBONE], "scaling_backbone": [SCALING_BACKBONE],
            "sequential.backbone": [SEQUENTIAL_BACKBONE], "tie.backbones": TIE_BACKBONES}
    for key, names in refs.items():
        for name in names:
            if name not in known:
                raise WorkflowError(f"invalid config: {key}: '{name}' is not a configured "
                                    f"backbone (known: {', '.join(BACKBONES)})")
    unknown = sorted(set(config.get("method_config", {})) - set(METHODS) - set(SCALING_METHODS)
                     - {"timerome"})
    if unknown:
        raise WorkflowError(f"invalid config: method_config: no method named "
                            f"{', '.join(unknown)} in methods/scaling_methods")
    if SUBSET_AUTHORS is not None and int(SUBSET_AUTHORS) <= VALIDATION_AUTHORS:
        raise WorkflowError(f"invalid config: data.authors: {SUBSET_AUTHORS} retain authors "
                            f"must exceed data.validation_authors ({VALIDATION_AUTHORS}), "
                            f"which count among them")
    if FACT_COUNTS and DATA["source"] == "synthetic":
        syn = DATA.get("synthetic", {})
        total = syn.get("authors", 100) * syn.get("facts_per_author", 10)
        if FACT_COUNTS[-1] >= total:
            raise WorkflowError(f"invalid config: fact_counts: {FACT_COUNTS[-1]} facts do not "
                                f"leave a retain pool in the {total}-record synthetic corpus")


_check_names()


def _alternation(names):
    return "|".join(sorted((n.replace(".", r"\.") for n in names), key=len, reverse=True))


wildcard_constraints:
    backbone=_alternation(BACKBONES),
    method=_alternation(set(METHODS) | set(SCALING_METHODS) | {"timerome"}),
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


def corpus_marker():
    """The prepared corpus's manifest (rule prepare_corpus): jobs read TOFU_DIR after it."""
    return f"{TOFU_DIR}/manifest.json"


def job_arg(payload):
    return json.dumps(payload, sort_keys=True, separators=(",", ":"))


def tuned_path(seed=0):
    return f"results/tuning/{TUNING_BACKBONE}/seed{seed}.json"


def method_job(wildcards, experiment, output, n_facts=None, seed=None):
    name, method = wildcards.backbone, wildcards.method
    seed = int(wildcards.seed if seed is None else seed)
    tuned = tuned_path() if (method == "timerome" and TUNING_ENABLED) else None
    payload = {
        "experiment": experiment,
        "backbone": name,
        "backbone_entry": backbone_entry(name),
        "backbone_path": finetuned_path(name),
        "method": method,
        "method_config": config.get("method_config", {}).get(method, {}),
        "tofu_dir": TOFU_DIR,
        "forget_split": DATA["forget_split"],
        "retain_split": DATA["retain_split"],
        "out": str(output),
        "n_facts": n_facts,
        "max_n_facts": FACT_COUNTS[-1] if n_facts is not None else None,
        "retain_model_path": retain_path(name) if (experiment == "table1"
                                                    and has_retain_model(name)) else None,
        "tuned_config": tuned,
        "retain_eval_size": int(DATA.get("retain_eval_size", 40)),
        "retain_train_size": int(DATA.get("retain_train_size", 400)),
        "eval_seed": int(DATA.get("eval_seed", 0)),
        "seed": seed,
        "estimator": config["estimator"],
        "target_forget_drop": None if MATCH_TIMEROME else config.get("target_forget_drop"),
        "target_from_record": matched_record_path(wildcards, experiment, n_facts),
        "evaluation": {k: EVAL[k] for k in ("rouge", "gen_steps", "batch_size",
                                             "forget_quality", "model_utility", "utility_size")
                       if k in EVAL},
        "threads": JOB_THREADS,
    }
    if experiment == "scaling":
        payload["evaluation"] = {**payload["evaluation"], "forget_quality": False,
                                 "model_utility": False}
    payload["config_hash"] = config_hash(payload, DATA)
    return job_arg(payload)


MATCH_TIMEROME = config.get("target_forget_drop") == "timerome"


def matched_record_path(wildcards, experiment, n_facts=None):
    """The TimeROME-DLM record whose forget drop a gradient baseline must match, or None.

    With `target_forget_drop: timerome` every gradient baseline stops when it has removed
    as much as TimeROME-DLM did on the same backbone, forget set and seed (the paper's
    matched-efficacy comparison); a number is a fixed target; null stops on plateau/cap."""
    if not MATCH_TIMEROME or wildcards.method not in GRADIENT_BASELINES:
        return None
    base = f"results/runs/{experiment}/{wildcards.backbone}/timerome"
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
    return [tuned_path()] if (wildcards.method == "timerome" and TUNING_ENABLED) else []
