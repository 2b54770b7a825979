"""The baselines' method configs: parsed and checked here, without torch.

The config dataclasses (`TrainingConfig` of the gradient baselines, `ContextConfig` and
`ValueConfig` of ROME/MEMIT), the key tables and the parsers live in this torch-free module
so that the workflow can check `method_config.<baseline>` when it plans the DAG
(`harness.plan_checks` through `harness.methods.registry.validate_method_config`), before
any model is loaded. The methods parse their configs with the same functions at run time
(`baselines.training.split_config`, `baselines.editing.edit_setup`, `memit`), so a config
that passes `validate_<method>` is one the method accepts. Errors are `MethodConfigError`s
naming the offending method config key. A gradient method's own keys have their own typed
config next to it (`baselines.graddiff_config.GradDiffConfig`, `baselines.npo_config.
NPOConfig`), parsed with the loop's keys by `parse_gradient_config`.
The defaults are harness/methods/defaults/<method>.yaml (`gradient_loop.yaml` for the
training loop shared by the gradient baselines, `weight_edit.yaml` for ROME and MEMIT's
shared keys); the dataclasses read them from there.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from numbers import Integral, Real
from typing import Any, TypeVar

from harness.methods.base import MethodConfigError
from harness.methods.defaults import method_defaults


ObjectiveConfigT = TypeVar("ObjectiveConfigT")


def _is_int(value: Any) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    """A finite real number (bools are not numbers here; NaN and infinity are refused)."""
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)


def _type_problems(obj: Any, ints: Iterable[str] = (), reals: Iterable[str] = (),
                   bools: Iterable[str] = (), optional: Iterable[str] = ()
                   ) -> list[tuple[str, str]]:
    """(field, problem) for fields of `obj` of the wrong type; `optional` ones may be None."""
    problems = []
    optional = set(optional)
    for kind, names, ok in (("an integer", ints, _is_int), ("a finite number", reals, _is_real),
                            ("true or false", bools, lambda v: isinstance(v, bool))):
        for name in names:
            value = getattr(obj, name)
            if not (ok(value) or (value is None and name in optional)):
                problems.append((name, f"{name} must be {kind}, got {value!r}"))
    return problems


def _raise_out_of_range(what: str, obj: Any, rules: Mapping[str, tuple[bool, str]],
                        key_of: Mapping[str, str] | None = None) -> None:
    """MethodConfigError naming every field whose rule (ok, requirement) fails."""
    key_of = key_of or {}
    bad = [(key_of.get(name, name), getattr(obj, name), need)
           for name, (ok, need) in rules.items() if not ok]
    if bad:
        raise MethodConfigError(f"{what}: " + "; ".join(
            f"{key} must be {need}, got {value!r}" for key, value, need in bad), key=bad[0][0])


def _unknown_keys(config: Mapping[str, Any], known: Iterable[str], method: str) -> None:
    known = sorted(known)
    unknown = sorted(str(k) for k in set(config) - set(known))
    if unknown:
        close = difflib.get_close_matches(unknown[0], known, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise MethodConfigError(f"method '{method}': unknown config key(s) {', '.join(unknown)}"
                                f"{hint}; known: {', '.join(known)}", key=unknown[0])


def _check_keys(stem: str, defaults: Mapping[str, Any], keys: Iterable[str]) -> None:
    """harness/methods/defaults/<stem>.yaml must state a default for exactly `keys`."""
    if set(defaults) != set(keys):
        raise ValueError(f"harness/methods/defaults/{stem}.yaml and the config keys differ: "
                         f"{sorted(set(defaults) ^ set(keys))}")


# ---- the gradient baselines (gradient_ascent, graddiff, npo): baselines.training's loop

def _constant(progress: float) -> float:
    return 1.0


def _linear(progress: float) -> float:
    return 1.0 - progress


def _cosine(progress: float) -> float:
    return 0.5 * (1.0 + math.cos(math.pi * progress))


SCHEDULES: dict[str, Callable[[float], float]] = {"constant": _constant, "linear": _linear,
                                                  "cosine": _cosine}


_LOOP = method_defaults("gradient_loop")  # harness/methods/defaults/gradient_loop.yaml


@dataclass(frozen=True)
class TrainingConfig:
    """Hyper-parameters of the unlearning loop (method config keys of the same names;
    defaults and their meaning: harness/methods/defaults/gradient_loop.yaml). `lr` None: the
    method's learning rate for the backbone (harness.methods.defaults.learning_rate)."""

    lr: float | None = _LOOP["lr"]
    weight_decay: float = _LOOP["weight_decay"]
    warmup_steps: int = _LOOP["warmup_steps"]
    schedule: str = _LOOP["schedule"]
    batch_size: int = _LOOP["batch_size"]
    grad_accum: int = _LOOP["grad_accum"]
    max_steps: int = _LOOP["max_steps"]
    eval_every: int = _LOOP["eval_every"]
    max_grad_norm: float = _LOOP["max_grad_norm"]
    eps: float = _LOOP["eps"]
    plateau_window: int = _LOOP["plateau_window"]
    plateau_rel_tol: float = _LOOP["plateau_rel_tol"]
    collapse_retain_drop: float = _LOOP["collapse_retain_drop"]
    retain_eval_facts: int = _LOOP["retain_eval_facts"]
    generation_prompts: int = _LOOP["generation_prompts"]
    score_batch_size: int = _LOOP["score_batch_size"]
    keep_original: bool = _LOOP["keep_original"]
    progress: bool = _LOOP["progress"]

    def __post_init__(self) -> None:
        types = _type_problems(
            self, ints=("warmup_steps", "batch_size", "grad_accum", "max_steps", "eval_every",
                        "plateau_window", "retain_eval_facts", "generation_prompts",
                        "score_batch_size"),
            reals=("lr", "weight_decay", "max_grad_norm", "eps", "plateau_rel_tol",
                   "collapse_retain_drop"),
            bools=("keep_original", "progress"), optional=("lr",))
        if not isinstance(self.schedule, str):
            types.append(("schedule", (f"schedule must be one of {', '.join(SCHEDULES)}, "
                                       f"got {self.schedule!r}")))
        if types:
            raise MethodConfigError("invalid training config: " + "; ".join(p for _, p in types),
                                    key=types[0][0])
        rules = {"lr": (self.lr is None or self.lr > 0, "> 0 (or null: the default)"),
                 "weight_decay": (self.weight_decay >= 0, ">= 0"),
                 "warmup_steps": (self.warmup_steps >= 0, ">= 0"),
                 "batch_size": (self.batch_size >= 1, ">= 1"),
                 "grad_accum": (self.grad_accum >= 1, ">= 1"),
                 "max_steps": (self.max_steps >= 1, ">= 1"),
                 "eval_every": (self.eval_every >= 1, ">= 1"),
                 "max_grad_norm": (self.max_grad_norm > 0, "> 0"),
                 "eps": (0 <= self.eps < 1, "in [0, 1)"),
                 "plateau_window": (self.plateau_window >= 1, ">= 1"),
                 "plateau_rel_tol": (self.plateau_rel_tol >= 0, ">= 0"),
                 "collapse_retain_drop": (self.collapse_retain_drop > 0, "> 0"),
                 "retain_eval_facts": (self.retain_eval_facts >= 1, ">= 1"),
                 "generation_prompts": (self.generation_prompts >= 0, ">= 0"),
                 "score_batch_size": (self.score_batch_size >= 1, ">= 1"),
                 "schedule": (self.schedule in SCHEDULES, f"one of {', '.join(SCHEDULES)}")}
        _raise_out_of_range("invalid training config field(s)", self, rules)

    def lr_factor(self, step: int) -> float:
        """Multiplier of lr at optimiser step `step` (0-based)."""
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        span = max(1, self.max_steps - self.warmup_steps)
        return SCHEDULES[self.schedule](min(1.0, (step - self.warmup_steps) / span))


TRAINING_KEYS = frozenset(f.name for f in fields(TrainingConfig))
_check_keys("gradient_loop", _LOOP, TRAINING_KEYS)


def split_config(config: Mapping[str, Any], method: str, objective_keys: Sequence[str]
                 ) -> tuple[TrainingConfig, dict[str, Any]]:
    """(TrainingConfig, objective kwargs) from a method config; unknown keys are an error."""
    _unknown_keys(config, TRAINING_KEYS | set(objective_keys), method)
    train = TrainingConfig(**{k: v for k, v in config.items() if k in TRAINING_KEYS})
    return train, {k: v for k, v in config.items() if k in objective_keys}


def own_defaults(method: str) -> dict[str, Any]:
    """The defaults of gradient method `method`'s own keys: harness/methods/defaults/
    <method>.yaml's `config` (the training loop's keys come from gradient_loop.yaml)."""
    return {k: v for k, v in method_defaults(method).items() if k not in TRAINING_KEYS}


def check_own_keys(method: str, config_class: type | None) -> None:
    """<method>.yaml states a default for exactly the fields of its config dataclass."""
    _check_keys(method, method_defaults(method), TRAINING_KEYS | set(_field_names(config_class)))


def _field_names(config_class: type | None) -> tuple[str, ...]:
    return () if config_class is None else tuple(f.name for f in fields(config_class))


def check_finite_numbers(method: str, values: Mapping[str, Any]) -> None:
    """MethodConfigError naming the first key whose value is not a finite number."""
    for key, value in values.items():
        if not _is_real(value):
            raise MethodConfigError(f"{method}: {key} must be a finite number, got {value!r}",
                                    key=key)


def parse_gradient_config(config: Mapping[str, Any], method: str,
                          objective: type[ObjectiveConfigT] | None
                          ) -> tuple[TrainingConfig, ObjectiveConfigT | None]:
    """(TrainingConfig, the method's own config dataclass `objective` or None) of a gradient
    method's config: unknown keys, wrong types and out-of-range values are
    MethodConfigErrors naming the key; keys left out take the YAML defaults."""
    train, kw = split_config(config, method, _field_names(objective))
    return train, (None if objective is None else objective(**kw))


def validate_gradient_ascent(config: Mapping[str, Any]) -> None:
    """Gradient ascent has no keys of its own (gradient_ascent.yaml: `config: {}`)."""
    parse_gradient_config(config, "gradient_ascent", None)


check_own_keys("gradient_ascent", None)


# ---- the weight edits (rome, memit): key contexts, value optimisation, covariance

_EDIT = method_defaults("weight_edit")  # harness/methods/defaults/weight_edit.yaml


@dataclass(frozen=True)
class ContextConfig:
    """Key contexts of ROME/MEMIT: corpus prefixes and masked answer states."""

    n_prefixes: int = _EDIT["n_prefixes"]
    prefix_tokens: tuple[int, int] = tuple(_EDIT["prefix_tokens"])
    mask_ratios: tuple[float, ...] = tuple(_EDIT["mask_ratios"])

    def __post_init__(self) -> None:
        if not _is_int(self.n_prefixes):
            raise MethodConfigError(f"n_prefixes must be an integer, got {self.n_prefixes!r}",
                                    key="n_prefixes")
        if not (isinstance(self.prefix_tokens, (list, tuple)) and len(self.prefix_tokens) == 2
                and all(_is_int(t) for t in self.prefix_tokens)):
            raise MethodConfigError(f"prefix_tokens must be two integers [min, max], got "
                                    f"{self.prefix_tokens!r}", key="prefix_tokens")
        if not (isinstance(self.mask_ratios, (list, tuple))
                and all(_is_real(r) for r in self.mask_ratios)):
            raise MethodConfigError(f"mask_ratios must be a list of finite numbers, got "
                                    f"{self.mask_ratios!r}", key="mask_ratios")
        lo, hi = self.prefix_tokens
        _raise_out_of_range("invalid context config", self, {
            "n_prefixes": (self.n_prefixes >= 0, ">= 0"),
            "prefix_tokens": (1 <= lo <= hi, "[min, max] with 1 <= min <= max")})
        if not self.mask_ratios or any(not 0 < r <= 1 for r in self.mask_ratios):
            raise MethodConfigError(f"mask_ratios must be in (0, 1], got {self.mask_ratios}",
                                    key="mask_ratios")


# Method config key -> field of ContextConfig / ValueConfig.
CONTEXT_KEYS = {"n_prefixes": "n_prefixes", "prefix_tokens": "prefix_tokens",
                "mask_ratios": "mask_ratios"}
VALUE_KEYS = {"v_steps": "steps", "v_lr": "lr", "kl_factor": "kl_factor",
              "v_weight_decay": "weight_decay", "clamp": "clamp"}
COMMON_KEYS = ("cov_facts", "cov_ridge", "retain_eval_facts", "score_batch_size")
ROME_KEYS = ("layer",)
MEMIT_KEYS = ("layers", "mom2_weight", "mom2_ratio")
DEFAULT_MOM2_RATIO: float = method_defaults("memit")["mom2_ratio"]
_check_keys("weight_edit", _EDIT, set(CONTEXT_KEYS) | set(VALUE_KEYS) | set(COMMON_KEYS))
_check_keys("rome", method_defaults("rome"), set(_EDIT) | set(ROME_KEYS))
_check_keys("memit", method_defaults("memit"), set(_EDIT) | set(MEMIT_KEYS))


@dataclass(frozen=True)
class ValueConfig:
    """Value optimisation; errors name the method config keys (v_lr for `lr`, ...)."""

    steps: int = _EDIT["v_steps"]
    lr: float = _EDIT["v_lr"]
    kl_factor: float = _EDIT["kl_factor"]
    weight_decay: float = _EDIT["v_weight_decay"]
    clamp: float = _EDIT["clamp"]  # ||delta|| <= clamp * ||v_original||

    def __post_init__(self) -> None:
        key_of = {field: key for key, field in VALUE_KEYS.items()}
        types = _type_problems(self, ints=("steps",),
                               reals=("lr", "kl_factor", "weight_decay", "clamp"))
        if types:
            field, problem = types[0]
            raise MethodConfigError("invalid value-optimisation config: "
                                    + problem.replace(field, key_of[field], 1), key=key_of[field])
        rules = {"steps": (self.steps >= 1, ">= 1"), "lr": (self.lr > 0, "> 0"),
                 "kl_factor": (self.kl_factor >= 0, ">= 0"),
                 "weight_decay": (self.weight_decay >= 0, ">= 0"), "clamp": (self.clamp > 0, "> 0")}
        _raise_out_of_range("invalid value-optimisation config", self, rules, key_of)


@dataclass(frozen=True)
class EditConfig:
    """A ROME/MEMIT method config, parsed (defaults filled in)."""

    contexts: ContextConfig
    values: ValueConfig
    cov_facts: int = _EDIT["cov_facts"]
    cov_ridge: float = _EDIT["cov_ridge"]  # added to C's diagonal relative to its mean diagonal
    retain_eval_facts: int = _EDIT["retain_eval_facts"]  # reporting only
    score_batch_size: int = _EDIT["score_batch_size"]


def parse_edit_config(config: Mapping[str, Any], method: str,
                      extra_keys: Sequence[str] = ()) -> EditConfig:
    """The context / value / covariance settings of a ROME or MEMIT config; unknown keys,
    wrong types and out-of-range values are MethodConfigErrors naming the config key."""
    _unknown_keys(config, set(CONTEXT_KEYS) | set(VALUE_KEYS) | set(COMMON_KEYS)
                  | set(extra_keys), method)
    ctx_kw = {CONTEXT_KEYS[k]: (tuple(v) if isinstance(v, list) else v)
              for k, v in config.items() if k in CONTEXT_KEYS}
    contexts = ContextConfig(**ctx_kw)
    values = ValueConfig(**{VALUE_KEYS[k]: v for k, v in config.items() if k in VALUE_KEYS})
    common = {k: config[k] for k in COMMON_KEYS if k in config}
    parsed = EditConfig(contexts, values, **common)
    problems = _type_problems(parsed, ints=("cov_facts", "retain_eval_facts", "score_batch_size"),
                              reals=("cov_ridge",))
    problems += [(k, f"{k} must be >= 1, got {getattr(parsed, k)}")
                 for k in ("cov_facts", "retain_eval_facts", "score_batch_size")
                 if not problems and getattr(parsed, k) < 1]
    if not problems and parsed.cov_ridge < 0:
        problems.append(("cov_ridge", f"cov_ridge must be >= 0, got {parsed.cov_ridge}"))
    if problems:
        raise MethodConfigError(f"method '{method}': {problems[0][1]}", key=problems[0][0])
    return parsed


def check_layer_choice(value: Any, key: str, many: bool) -> None:
    """`layer` (many=False) / `layers` (many=True) as far as it can be checked without the
    model: absent, "tie", or non-negative integer(s), distinct and at least one. That the
    layers exist (and are not the last) is checked against the model (baselines.layer_choice)."""
    if value is None or value == "tie":
        return
    layers = value if many and isinstance(value, (list, tuple)) else [value]
    shape = "a list of layer indices" if many else "a layer index"
    if (many and not isinstance(value, (list, tuple))) or not layers \
            or any(not _is_int(v) or v < 0 for v in layers):
        raise MethodConfigError(f"config '{key}': must be {shape} (integers >= 0) or \"tie\", "
                                f"got {value!r}", key=key)
    if len(set(layers)) != len(layers):
        raise MethodConfigError(f"config '{key}': repeated layer in {list(layers)}", key=key)


def memit_mom2(config: Mapping[str, Any]) -> tuple[float | None, float]:
    """(mom2_weight or None, mom2_ratio) of a MEMIT config, both checked > 0 and finite."""
    weight = config.get("mom2_weight")
    ratio = config.get("mom2_ratio", DEFAULT_MOM2_RATIO)
    for key, value in (("mom2_weight", weight), ("mom2_ratio", ratio)):
        if value is not None and not _is_real(value):
            raise MethodConfigError(f"memit: {key} must be a finite number, got {value!r}",
                                    key=key)
    if (weight is not None and not float(weight) > 0) or not ratio > 0:
        raise MethodConfigError(f"memit: mom2_weight / mom2_ratio must be > 0, got {weight}, "
                                f"{ratio}", key="mom2_ratio" if not ratio > 0 else "mom2_weight")
    return (None if weight is None else float(weight)), float(ratio)


def validate_rome(config: Mapping[str, Any]) -> None:
    parse_edit_config(config, "rome", ROME_KEYS)
    check_layer_choice(config.get("layer"), "layer", many=False)


def validate_memit(config: Mapping[str, Any]) -> None:
    parse_edit_config(config, "memit", MEMIT_KEYS)
    check_layer_choice(config.get("layers"), "layers", many=True)
    memit_mom2(config)
