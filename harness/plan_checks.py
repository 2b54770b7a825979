"""Plan-time checks of the workflow config: everything that can be checked without a model.

workflows/rules/common.smk runs these right after the JSON-schema validation, when Snakemake
plans the DAG (`snakemake -n` included), and turns a `ConfigError(key, message)` into the
one-line `invalid config at '<key>': <message>` the schema errors use. Nothing here imports
torch or Snakemake, loads a model or touches the network:

1. names: method names (`methods`, `scaling_methods`, `target_forget_drop`, keys of
   `method_config`) against the method registry (a reference row, kind "reference", is
   never listed or configured: the workflow adds it), adapters
   (`backbones.<name>.adapter`) against the backbone adapter registry, with did-you-mean
   (`check_method_names`, `check_adapters`);
2. each `method_config.<method>` parsed by the method's own validator
   (`harness.methods.registry.validate_method_config`) (`check_method_configs`);
3. the tuning grid and `tuning.max_retain_drop` (`check_tuning`);
4. no NaN or infinity anywhere in the config (`check_finite`);
5. split files, and the sizes the experiments draw from the prepared corpus
   (`check_corpus_sizes`), for every data source;
6. `--config` overrides typed as YAML before the schema sees them (`parse_overrides`).
"""

from __future__ import annotations

import ast
import difflib
import math
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from numbers import Real
from pathlib import Path
from typing import Any, NamedTuple

import yaml

# The experiments whose corpus sizes check_corpus_sizes checks (Table 1 includes tuning).
EXPERIMENTS = ("table1", "scaling", "sequential", "tie")


class ConfigError(ValueError):
    """A config mistake found at plan time; `key` is the dotted key path ('tie.n_facts',
    'methods.1', 'method_config.timerome.lam')."""

    def __init__(self, key: str, message: str):
        super().__init__(f"invalid config at '{key}': {message}")
        self.key = key
        self.message = message


def _unknown(kind: str, name: Any, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(str(name), list(known), n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return f"unknown {kind} '{name}'{hint}; known: {', '.join(known)}"


# ---- 6. --config overrides

def _yaml_scalar(text: str) -> Any:
    """`text` as YAML's safe loader reads a plain scalar: '0' -> 0, '.5' -> 0.5, 'true' ->
    True, 'null' -> None, anything else stays the string."""
    loader = yaml.SafeLoader("")
    try:
        tag = loader.resolve(yaml.ScalarNode, text, (True, False))
        return loader.construct_object(yaml.ScalarNode(tag, text))
    finally:
        loader.dispose()


def _typed(current: Any, override: Any) -> Any:
    """`current` (the merged config value) with the leaves that came from `override` typed."""
    if isinstance(override, Mapping) and isinstance(current, dict):
        for key, value in override.items():
            if key in current:
                current[key] = _typed(current[key], value)
        return current
    if isinstance(override, list):
        return [_typed(None, item) for item in override]
    if isinstance(override, Mapping):
        return {key: _typed(None, value) for key, value in override.items()}
    return _yaml_scalar(override) if isinstance(override, str) else override


def parse_overrides(config: dict[str, Any], overrides: Mapping[str, Any]) -> None:
    """Type the top-level `--config key=value` overrides in `config`, in place, before the
    schema validation. Snakemake reads `seeds=[0,1]` with YAML's BaseLoader, which keeps
    every scalar a string (['0', '1'], refused by the schema as "'0' is not of type
    'integer'"), and keeps a value it cannot read as the plain string. Here a string that
    looks like a YAML flow collection (starts with '[' or '{') is read with yaml.safe_load,
    and the scalars of a collection are typed the way yaml.safe_load types them.
    `overrides`: the `--config` entries (workflow.config_settings.config)."""
    for key, value in overrides.items():
        if key not in config:
            continue
        if isinstance(value, str) and value.lstrip()[:1] in ("[", "{"):
            try:
                config[key] = yaml.safe_load(value)
            except yaml.YAMLError as exc:
                problem = " ".join(str(getattr(exc, "problem", None) or exc).split())
                raise ConfigError(key, f"--config value {value!r} is not valid YAML: "
                                       f"{problem}") from None
        elif isinstance(value, (list, Mapping)):
            config[key] = _typed(config[key], value)


# ---- 4. NaN / infinity

def check_finite(config: Mapping[str, Any]) -> None:
    """Every float in the config is finite (YAML's .nan / .inf pass the schema's type and
    range rules: NaN compares false with every bound)."""
    def walk(value: Any, path: tuple[str, ...]) -> None:
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(".".join(path) or "(top level)",
                              f"{value!r} is not a finite number")
        if isinstance(value, Mapping):
            for key, item in value.items():
                walk(item, (*path, str(key)))
        elif isinstance(value, (list, tuple)):
            for i, item in enumerate(value):
                walk(item, (*path, str(i)))

    walk(config, ())


# ---- 1. names

def method_names() -> list[str]:
    """Known method names (harness.methods.registry; no method module imported)."""
    from harness.methods.registry import known_method_names

    return known_method_names()


def configurable_method_names() -> list[str]:
    """The method names a config may list or configure: every known method but the
    reference rows (kind "reference": Table 1 and the transfer table always have them)."""
    from harness.methods.registry import method_info

    return [name for name in method_names() if method_info(name).kind != "reference"]


def _reference_listed(name: Any, where: str) -> str | None:
    """Why `name` may not appear in `where`, when it is a reference row; else None."""
    from harness.methods.registry import method_info

    if name not in method_names() or method_info(name).kind != "reference":
        return None
    return (f"'{name}' is a reference row ({method_info(name).row_label}), not a method: "
            f"{where}")


def adapter_names() -> list[str]:
    """Known backbone adapter keys. harness.backbones.registry imports torch, so its table of
    built-in adapters (BUILTIN_ADAPTER_MODULES) is read from its source; adapters registered
    in this process are added when the registry is already imported."""
    path = Path(__file__).resolve().parent / "backbones" / "registry.py"
    names: set[str] | None = None
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        target = node.target if isinstance(node, ast.AnnAssign) else (
            node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else None)
        if isinstance(target, ast.Name) and target.id == "BUILTIN_ADAPTER_MODULES":
            names = set(ast.literal_eval(node.value))
    if names is None:
        raise RuntimeError(f"no BUILTIN_ADAPTER_MODULES table in {path}")
    registry = sys.modules.get("harness.backbones.registry")
    if registry is not None:
        names |= set(registry.adapter_names())
    return sorted(names)


def check_method_names(config: Mapping[str, Any]) -> None:
    """Every method name is a registered method; every `method_config` entry configures a
    method the workflow runs (methods, scaling_methods, or a tuned method: the tuning,
    sequential and TIE jobs use its config)."""
    from harness.methods.registry import tuned_methods

    known = configurable_method_names()
    not_listed = {"methods": "Table 1 and the transfer table always have it; do not list it",
                  "scaling_methods": "reference rows are not part of the scaling experiment"}
    for key in ("methods", "scaling_methods"):
        for i, name in enumerate(config.get(key) or []):
            reason = _reference_listed(name, not_listed[key])
            if reason:
                raise ConfigError(f"{key}.{i}", reason)
            if name not in known:
                raise ConfigError(f"{key}.{i}", _unknown("method", name, known))
    target = config.get("target_forget_drop")
    if isinstance(target, str):
        reason = _reference_listed(target, "it removes nothing, no drop to match")
        if reason:
            raise ConfigError("target_forget_drop", reason)
        if target not in known:
            raise ConfigError("target_forget_drop", _unknown("method", target, known))
        from harness.methods.registry import method_info

        if target not in (config.get("methods") or []):
            raise ConfigError("target_forget_drop", f"the gradient baselines match the forget "
                              f"drop of '{target}', which is not in methods")
        if method_info(target).kind == "gradient":
            raise ConfigError("target_forget_drop", f"'{target}' is a gradient baseline; the "
                              "gradient baselines match the drop of a method of another kind")
    sequential = (config.get("sequential") or {}).get("method")
    if sequential is not None:
        reason = _reference_listed(sequential, "it inserts no facts")
        if reason:
            raise ConfigError("sequential.method", reason)
        if sequential not in known:
            raise ConfigError("sequential.method", _unknown("method", sequential, known))
    run = {*tuned_methods(), *(config.get("methods") or []),
           *(config.get("scaling_methods") or []), *([sequential] if sequential else [])}
    for name in config.get("method_config") or {}:
        reason = _reference_listed(name, "reference rows take no config (the workflow "
                                         "sets the retain model's folder itself)")
        if reason:
            raise ConfigError(f"method_config.{name}", reason)
        if name not in known:
            raise ConfigError(f"method_config.{name}", _unknown("method", name, known))
        if name not in run:
            raise ConfigError(f"method_config.{name}", f"method '{name}' is configured but "
                              "not run: it is in neither methods nor scaling_methods")


def check_adapters(config: Mapping[str, Any]) -> None:
    known = adapter_names()
    for name, entry in (config.get("backbones") or {}).items():
        adapter = (entry or {}).get("adapter")
        if adapter not in known:
            raise ConfigError(f"backbones.{name}.adapter", _unknown("backbone adapter", adapter,
                                                                     known))


# ---- 2. method configs

def _method_config_error(prefix: str, method: str, exc: Exception) -> ConfigError:
    key = getattr(exc, "key", None)
    return ConfigError(f"{prefix}.{key}" if key else prefix,
                       str(exc) if isinstance(exc, ValueError) else f"{method}: {exc}")


def check_method_configs(config: Mapping[str, Any]) -> None:
    """Each `method_config.<method>` parsed by that method's own validator (unknown keys
    with did-you-mean, types, ranges, finiteness); the error names the offending key."""
    from harness.methods.registry import validate_method_config

    for method, method_config in (config.get("method_config") or {}).items():
        try:
            validate_method_config(method, method_config or {})
        except KeyError:
            raise ConfigError(f"method_config.{method}",
                              _unknown("method", method, configurable_method_names())) from None
        except (ValueError, TypeError) as exc:
            raise _method_config_error(f"method_config.{method}", method, exc) from None


# ---- 3. tuning

def check_tuning(config: Mapping[str, Any]) -> None:
    """Every tuning grid value is one the tuned method's config accepts on top of its
    `method_config` entry (the tuning job applies each point that way) and alpha > 0
    (alpha 0 scales the edit to nothing: a grid point that cannot forget); max_retain_drop
    is a finite number >= 0."""
    from harness.methods.registry import tuned_methods

    tuning = config.get("tuning") or {}
    for method in tuned_methods():
        _check_grid(method, tuning, dict((config.get("method_config") or {}).get(method) or {}))
    drop = tuning.get("max_retain_drop")
    if drop is not None and not (isinstance(drop, Real) and not isinstance(drop, bool)
                                 and math.isfinite(drop) and drop >= 0):
        raise ConfigError("tuning.max_retain_drop",
                          f"must be a finite number >= 0 (nats per sample), got {drop!r}")


def _check_grid(method: str, tuning: Mapping[str, Any], base: dict[str, Any]) -> None:
    from harness.methods.registry import validate_method_config

    grid = tuning.get("grid") or {}
    for name in grid:
        for i, value in enumerate(grid.get(name) or []):
            key = f"tuning.grid.{name}.{i}"
            try:
                validate_method_config(method, {**base, name: value})
            except (ValueError, TypeError) as exc:
                raise ConfigError(key, str(exc)) from None
            if name == "alpha" and not value > 0:
                raise ConfigError(key, f"alpha must be > 0 in the tuning grid, got {value} "
                                       "(alpha 0 edits nothing: no forgetting to tune)")


# ---- 5. the corpus

class _Record(NamedTuple):
    author_id: int  # what harness.data.prepare's author choices read of a Fact


@dataclass(frozen=True)
class SourceLayout:
    """Author ids, record by record, of the splits of a source corpus that decide the sizes
    of the prepared one (harness.data.prepare)."""

    description: str
    full: list[int]
    forget: list[int]
    retain: list[int]
    validation: list[int] | None  # a shipped validation split; None: derived by prepare
    retain_perturbed: list[int] | None  # None: unknown (preferred authors of data.authors)


@dataclass(frozen=True)
class CorpusSizes:
    """Record counts of the prepared corpus every job reads."""

    description: str
    full: int  # records of `full` (scaling and sequential forget its last n)
    forget: int  # records of the forget split (TIE traces its first n)
    retain_pool: int  # retain-split records outside the validation and forget authors


# TOFU as published on the hub (locuslab/TOFU): 200 authors x 20 records in `full`; the
# forget splits are its last 1/5/10% (forget01/05/10 = 40/200/400 records).
TOFU_HUB_AUTHORS = 200
TOFU_HUB_FACTS_PER_AUTHOR = 20


def _hub_layout(data: Mapping[str, Any]) -> SourceLayout:
    """The hub's files are fetched when the workflow runs (rule fetch_tofu): TOFU's published
    layout stands in. forgetNN is the last NN% of full, retainNN the rest; no validation
    split is fetched (prepare derives one); retain_perturbed's authors are not known here
    (they only order the data.authors draw; every TOFU author has 20 records)."""
    from harness.data.splits import forget_pct, n_pct_records, retain_pct_of

    per = TOFU_HUB_FACTS_PER_AUTHOR
    full = [i // per for i in range(TOFU_HUB_AUTHORS * per)]
    n = n_pct_records(len(full), forget_pct(data["forget_split"]))
    n_not_retained = n_pct_records(len(full), 100 - retain_pct_of(data["retain_split"]))
    return SourceLayout(f"TOFU from the hub ({len(full)} records in full, {n} in "
                        f"{data['forget_split']})", full, full[len(full) - n:],
                        full[: len(full) - n_not_retained], None, None)


def _synthetic_layout(data: Mapping[str, Any]) -> SourceLayout:
    from harness.data.splits import SPLITS
    from harness.data.synth import synthetic_splits

    syn = data["synthetic"]  # filled by the schema validation (every key has its default)
    authors, per = int(syn["authors"]), int(syn["facts_per_author"])
    splits = synthetic_splits(authors, per, int(syn["seed"]), answer_style=syn["answer_style"])

    def ids(split: str) -> list[int]:
        return [int(r["author_id"]) for r in splits[split]]

    shipped = data["validation_split"] in splits and data["validation_split"] in SPLITS
    return SourceLayout(f"the synthetic corpus ({authors} authors x {per} facts)", ids("full"),
                        ids(data["forget_split"]), ids(data["retain_split"]),
                        ids(data["validation_split"]) if shipped else None,
                        ids("retain_perturbed"))


def _dir_layout(data: Mapping[str, Any], facts_per_author: int) -> SourceLayout:
    from harness.data.errors import DataError
    from harness.data.prepare import (
        UTILITY_RETAIN_SPLIT,
        check_split_files,
        required_splits,
    )
    from harness.data.reader import available_splits, load_corpus

    source = data["tofu_dir"].rstrip("/")
    validation = data["validation_split"]
    try:
        check_split_files(source, required_splits(data["forget_split"], data["retain_split"]),
                          optional=[validation])
        shipped = validation in available_splits(source)
        wanted = ["full", data["forget_split"], data["retain_split"], UTILITY_RETAIN_SPLIT]
        corpus = load_corpus(source, wanted + ([validation] if shipped else []),
                             facts_per_author=facts_per_author)
    except (FileNotFoundError, DataError) as exc:
        raise ConfigError("data.tofu_dir", str(exc)) from None
    full_ids = {(f.question, f.answer): f.author_id for f in corpus["full"]}

    def ids(split: str) -> list[int]:  # prepare's ids: those of the same record in full
        return [full_ids.get((f.question, f.answer), f.author_id) for f in corpus[split]]

    return SourceLayout(f"the corpus in {source}", ids("full"), ids(data["forget_split"]),
                        ids(data["retain_split"]), ids(validation) if shipped else None,
                        ids(UTILITY_RETAIN_SPLIT))


def source_layout(data: Mapping[str, Any]) -> SourceLayout:
    """The source corpus's layout: synthetic computed from `data.synthetic`, tofu_hub from
    TOFU's published sizes, tofu_dir read from the split files on disk (present, non-empty
    and well-formed, else a ConfigError at 'data.tofu_dir')."""
    from harness.data.splits import TOFU_FACTS_PER_AUTHOR

    if data["source"] == "synthetic":
        return _synthetic_layout(data)
    if data["source"] == "tofu_hub":
        return _hub_layout(data)
    return _dir_layout(data, TOFU_FACTS_PER_AUTHOR)


def prepared_sizes(data: Mapping[str, Any], layout: SourceLayout | None = None) -> CorpusSizes:
    """The sizes of the corpus rule prepare_corpus will write, from the same author choices
    harness.data.prepare makes (validation authors, `data.authors` subset)."""
    from harness.data.prepare import choose_authors, choose_validation_authors

    layout = layout or source_layout(data)
    full = [_Record(a) for a in layout.full]
    forget_authors = set(layout.forget)
    if layout.validation is not None:
        validation = set(layout.validation)
        clash = sorted(validation & forget_authors)
        if clash:
            raise ConfigError("data.validation_split", f"validation authors {clash} are "
                              f"authors of {data['forget_split']} in {layout.description}")
    else:
        try:
            validation = set(choose_validation_authors(full, int(data["validation_authors"]),
                                                       int(data["split_seed"])))
        except ValueError as exc:
            raise ConfigError("data.validation_authors", f"{exc} ({layout.description})") from None
    description = layout.description
    kept: set[int] | None = None
    if data.get("authors") is not None:
        try:
            kept = set(choose_authors(full, forget_authors, validation, int(data["authors"]),
                                      int(data["split_seed"]), set(layout.retain_perturbed or ())))
        except ValueError as exc:
            raise ConfigError("data.authors", f"{exc} ({layout.description})") from None
        description += f", cut to the forget authors + data.authors={data['authors']}"

    def keep(ids: Iterable[int]) -> list[int]:
        return [a for a in ids if kept is None or a in kept]

    splits = {"full": keep(layout.full), data["forget_split"]: keep(layout.forget),
              data["retain_split"]: keep(layout.retain)}
    if layout.retain_perturbed is not None:
        splits["retain_perturbed"] = keep(layout.retain_perturbed)
    for split, ids in splits.items():
        if not ids:  # prepare_corpus would refuse to write it
            raise ConfigError("data.authors" if kept is not None else "data.tofu_dir",
                              f"split '{split}' has no record in {description}")
    pool = [a for a in splits[data["retain_split"]] if a not in validation | forget_authors]
    return CorpusSizes(description, len(splits["full"]), len(splits[data["forget_split"]]),
                       len(pool))


def check_corpus_sizes(config: Mapping[str, Any], experiments: Iterable[str] = EXPERIMENTS,
                       sizes: CorpusSizes | None = None) -> None:
    """The sizes the planned experiments draw fit the prepared corpus (harness.jobs.selection):

    * table1 (and tuning): the retain sample of `data.retain_eval_size` facts comes from the
      retain split without the validation and forget authors;
    * scaling: `last_n_selection` forgets the last n records of `full` and draws the retain
      facts from the records before the last max(fact_counts): those must hold the
      `data.retain_eval_size` scored facts plus at least one retain fact for the method
      (ROME/MEMIT refuse an empty retain set; TimeROME's covariance and gate need one), so
      max(fact_counts) <= len(full) - retain_eval_size - 1;
    * sequential: the same selection with n = max = `sequential.n_facts`;
    * tie: the job traces the first `tie.n_facts` records of the forget split.
    """
    experiments = set(experiments)
    data = config["data"]
    sizes = sizes or prepared_sizes(data)
    eval_size = int(data["retain_eval_size"])
    where = sizes.description
    if "table1" in experiments and sizes.retain_pool < eval_size:
        raise ConfigError("data.retain_eval_size", (
            f"{eval_size} retain facts to score, but only {sizes.retain_pool} records of "
            f"{data['retain_split']} lie outside the validation and forget authors in {where}"))
    lasts = []
    if "scaling" in experiments and config["fact_counts"]:
        lasts.append(("fact_counts", max(int(n) for n in config["fact_counts"]), "scaling"))
    if "sequential" in experiments:
        lasts.append(("sequential.n_facts", int(config["sequential"]["n_facts"]),
                      "sequential insertion"))
    for key, n, what in lasts:
        if n + eval_size + 1 > sizes.full:
            raise ConfigError(key, (
                f"{n} facts do not fit: {what} forgets the last n records of full and draws "
                f"the retain facts from the records before them, data.retain_eval_size "
                f"({eval_size}) scored + at least 1 for the method, so at most "
                f"{max(0, sizes.full - eval_size - 1)} of the {sizes.full} records of full "
                f"in {where}"))
    if "tie" in experiments:
        n = int(config["tie"]["n_facts"])
        if n > sizes.forget:
            raise ConfigError("tie.n_facts", (
                f"{n} facts to trace, but {data['forget_split']} has only {sizes.forget} "
                f"records in {where}"))


# ---- all of them

def check_config(config: Mapping[str, Any], experiments: Iterable[str] = EXPERIMENTS) -> None:
    """Every plan-time check, in order (after the schema validation, which fills defaults)."""
    check_finite(config)
    check_method_names(config)
    check_adapters(config)
    check_method_configs(config)
    check_tuning(config)
    check_corpus_sizes(config, experiments)
