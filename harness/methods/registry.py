"""Registry of methods: config names -> Method classes (no if/else chains), and what each
method is (`MethodInfo`: kind, tunable keys, retain use, applicability), answerable without
importing torch or any method module."""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from harness.methods.base import Method

KINDS = ("gradient", "weight_edit", "inference_time", "reference")


@dataclass(frozen=True)
class MethodInfo:
    """What a method is, for the code that plans, tunes and tabulates methods by name.

    kind: "gradient" (trains the weights on a loss), "weight_edit" (closed-form edit of
      weight matrices), "inference_time" (hooks the forward pass; weights untouched) or
      "reference" (no method: a reference row of the tables, a model scored as it is, by
      the same job as the methods; harness/methods/reference.py). A reference is never
      tuned, never a speedup baseline, never in scaling or sequential insertion, and its
      edit time, memory and FLOPs are not shown; it is not listed in config `methods`:
      Table 1 and the transfer table always have it.
    tunable_keys: method config keys the tune job chooses on validation (empty: not tuned).
    needs_retain: the edit itself uses retain facts (retain loss, key covariance, KL, gate),
      so a job must hand it the disjoint retain-train facts.
    applicability: the backbones it can edit, in words (a method raises MethodNotApplicable
      on any other, and the job is recorded as `not_applicable`).
    backbone_statistics: its edits need per-backbone statistics that do not depend on the
      forget set (`Method.backbone_statistics`); the workflow computes them once per
      backbone and every edit loads them (harness.backbone_statistics).
    sequential: it inserts facts one at a time into one edit (`Method.sequential_editor`),
      so the sequential-insertion experiment can run it.
    label: how tables name its row (None: the method name).
    on_retain_model: a reference scored on the backbone's retain model (the model trained
      without the forget split: exact unlearning), so it exists only for backbones with one.
    """

    name: str
    kind: str
    tunable_keys: tuple[str, ...] = ()
    needs_retain: bool = False
    applicability: str = "every backbone"
    backbone_statistics: bool = False
    sequential: bool = False
    label: str | None = None
    on_retain_model: bool = False

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"method '{self.name}': unknown kind '{self.kind}'; "
                             f"known: {', '.join(KINDS)}")
        if self.kind == "reference":
            edits = [key for key in ("tunable_keys", "needs_retain", "backbone_statistics",
                                     "sequential") if getattr(self, key)]
            if edits:
                raise ValueError(f"method '{self.name}': a reference edits nothing, so it "
                                 f"has no {', '.join(edits)}")
        elif self.on_retain_model:
            raise ValueError(f"method '{self.name}': only a reference is scored on the "
                             "retain model (on_retain_model)")

    @property
    def row_label(self) -> str:
        """How tables name the method's row."""
        return self.label or self.name


_METHODS: dict[str, type[Method]] = {}

# Modules whose import registers the built-in methods.
# Built-in method name -> the module whose import registers it (get_method imports only the
# one it needs, so a job imports one method's code).
BUILTIN_METHOD_MODULES: dict[str, str] = {
    "timerome": "harness.timerome.method",
    "gradient_ascent": "baselines.gradient_ascent",
    "graddiff": "baselines.graddiff",
    "npo": "baselines.npo",
    "rome": "baselines.rome",
    "memit": "baselines.memit",
    "no_edit": "harness.methods.reference",
    "retain_model": "harness.methods.reference",
}

_WEIGHT_AT_HOOK = ("backbones whose edited hook point is a 2-D weight matrix (not a "
                   "parameter-free point such as an MoE expert combine)")

# What each built-in method is, known without importing it (no torch). Each built-in
# Method class declares the same MethodInfo as its `info` (tests/methods check they agree).
BUILTIN_METHOD_INFO: dict[str, MethodInfo] = {info.name: info for info in (
    MethodInfo("timerome", "inference_time",
               tunable_keys=("alpha", "lam", "q", "gate_margin", "sites", "gate_span",
                             "gate_own_floor"),
               needs_retain=True, backbone_statistics=True,  # retain covariance, key gate
               sequential=True),
    MethodInfo("gradient_ascent", "gradient"),
    MethodInfo("graddiff", "gradient", needs_retain=True),  # retain loss term
    MethodInfo("npo", "gradient", needs_retain=True),  # retain loss term (alpha = 1)
    MethodInfo("rome", "weight_edit", needs_retain=True,  # key covariance, corpus prefixes
               applicability=_WEIGHT_AT_HOOK, backbone_statistics=True),
    MethodInfo("memit", "weight_edit", needs_retain=True,  # key covariance, corpus prefixes
               applicability=_WEIGHT_AT_HOOK, backbone_statistics=True),
    # The reference rows (harness/methods/reference.py): the fine-tuned model before any
    # unlearning, and the retain model (exact unlearning), scored like every method.
    MethodInfo("no_edit", "reference", label="finetuned (no edit)"),
    MethodInfo("retain_model", "reference", label="retain (exact unlearning)",
               applicability="backbones with a retain model", on_retain_model=True),
)}

# Built-in method name -> "module:function" that checks its `method_config` entry (raises
# MethodConfigError). These modules import neither torch nor a model, so the workflow checks
# method names and configs when it plans the DAG without importing the method modules above.
# Method.validate_config calls the same function (tests/harness/test_plan_checks.py checks
# that this table and the registered methods name the same methods).
BUILTIN_CONFIG_VALIDATORS: dict[str, str] = {
    "timerome": "harness.timerome.config:validate_config",
    "gradient_ascent": "baselines.configs:validate_gradient_ascent",
    "graddiff": "baselines.graddiff_config:validate_graddiff",
    "npo": "baselines.npo_config:validate_npo",
    "rome": "baselines.configs:validate_rome",
    "memit": "baselines.configs:validate_memit",
    "no_edit": "harness.methods.reference:validate_no_edit",
    "retain_model": "harness.methods.reference:validate_retain_model",
}

T = TypeVar("T", bound=type)


def register_method(name: str) -> Callable[[T], T]:
    """Class decorator: register a Method subclass under `name`. The class declares its
    `info` (a MethodInfo named `name`); a built-in method that declares none gets its entry
    of BUILTIN_METHOD_INFO."""
    def wrap(cls: T) -> T:
        if name in _METHODS and _METHODS[name] is not cls:
            raise ValueError(f"method '{name}' registered twice")
        info = cls.__dict__.get("info", BUILTIN_METHOD_INFO.get(name))
        if not isinstance(info, MethodInfo) or info.name != name:
            raise ValueError(f"method '{name}': the class must declare info = "
                             f"MethodInfo('{name}', kind, ...), got {info!r}")
        cls.name = name
        cls.info = info
        _METHODS[name] = cls
        return cls

    return wrap


def _import_module(module: str) -> None:
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as err:  # a method package not yet present
        if err.name != module:
            raise


def _import_builtins() -> None:
    for module in BUILTIN_METHOD_MODULES.values():
        _import_module(module)


def method_names() -> list[str]:
    _import_builtins()
    return sorted(_METHODS)


def known_method_names() -> list[str]:
    """The built-in method names and any registered since, without importing the built-in
    method modules (no torch): what `method_names()` lists once they are imported."""
    return sorted(set(_METHODS) | set(BUILTIN_METHOD_INFO))


def _unknown_method(name: str) -> KeyError:
    known = known_method_names()
    close = difflib.get_close_matches(str(name), known, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return KeyError(f"unknown method '{name}'{hint}; known: {', '.join(known)}")


def method_info(name: str) -> MethodInfo:
    """What method `name` is (no method module imported): a registered class's `info`, else
    the built-in table. KeyError, with a did-you-mean, for an unknown name."""
    if name in _METHODS:
        return _METHODS[name].info
    if name in BUILTIN_METHOD_INFO:
        return BUILTIN_METHOD_INFO[name]
    raise _unknown_method(name)


def methods_of_kind(kind: str) -> list[str]:
    """Sorted names of the built-in and registered methods of `kind` (one of KINDS)."""
    if kind not in KINDS:
        raise ValueError(f"unknown method kind '{kind}'; known: {', '.join(KINDS)}")
    return [n for n in known_method_names() if method_info(n).kind == kind]


def tuned_methods() -> list[str]:
    """Sorted names of the methods with tunable keys (the tune job chooses them)."""
    return [n for n in known_method_names() if method_info(n).tunable_keys]


def reference_methods() -> list[str]:
    """Sorted names of the reference rows (kind "reference"): 'no_edit' (the fine-tuned
    model) and 'retain_model' (the retain model; MethodInfo.on_retain_model)."""
    return methods_of_kind("reference")


def sequential_methods() -> list[str]:
    """Sorted names of the methods that insert facts one at a time (MethodInfo.sequential)."""
    return [n for n in known_method_names() if method_info(n).sequential]


def builtin_config_validator(name: str) -> Callable[[Mapping[str, Any]], None] | None:
    """The config validator of built-in method `name` (imported without torch), or None."""
    if name not in BUILTIN_CONFIG_VALIDATORS:
        return None
    module, function = BUILTIN_CONFIG_VALIDATORS[name].split(":")
    return getattr(importlib.import_module(module), function)


def validate_method_config(name: str, config: Mapping[str, Any]) -> None:
    """Check `config` for method `name` with the method's own parser: Method.validate_config
    of a registered class, else the built-in's validator (no method module imported, so no
    torch). Raises KeyError for an unknown method, MethodConfigError (a ValueError) for a
    config the method would refuse."""
    if name in _METHODS:
        _METHODS[name].validate_config(config)
        return
    check = builtin_config_validator(name)
    if check is None:
        raise _unknown_method(name)
    check(config)


def get_method(name: str, config: dict[str, Any] | None = None) -> Method:
    if name not in _METHODS and name in BUILTIN_METHOD_MODULES:
        _import_module(BUILTIN_METHOD_MODULES[name])
    if name not in _METHODS:
        raise _unknown_method(name)
    return _METHODS[name](config)
