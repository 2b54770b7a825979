"""Robustness probes: does forgotten knowledge stay forgotten (issue 18)?

A probe measures an edited model (an inference-time method's hook attached, a weight
method's weights edited, a reference row's model as it is) in ways Table 1 does not:
paraphrased questions, other prompts, other samplers, membership inference, relearning.
It is a function `fn(ctx: ProbeContext) -> dict[str, float | None]` (column -> value)
registered by name with `@register_probe(name)`; the robustness job
(harness/jobs/robustness.py) runs the configured probes on one edited model and writes
their columns into its record, nested by probe name (so columns of two probes never
collide). `None` is "not measurable here" (e.g. no chat template); NaN or infinity is an
error (`run_probe` raises `NonFiniteProbe` naming the probe and column: no non-finite
number passes silently, harness/evaluation/finite.py).

Probes are imported lazily from `BUILTIN_PROBE_MODULES` (name -> module), like the method
registry's modules; a module not yet present is tolerated until its probe is asked for
(`probe_available`). Probes that change the model (relearning fine-tunes it, and restores
it itself) are listed in `RUN_LAST`: `probe_order` puts them after every other probe.

This package imports no torch at import time (the workflow checks probe names when it
plans the DAG).
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.backbones.base import Backbone
    from harness.data.fact import Fact

ProbeResult = dict[str, float | None]
ProbeFn = Callable[["ProbeContext"], ProbeResult]

# Probe name -> the module whose import registers it.
BUILTIN_PROBE_MODULES: dict[str, str] = {
    "paraphrase": "harness.evaluation.probes.paraphrase",
    "prompt": "harness.evaluation.probes.prompt",
    "sampler": "harness.evaluation.probes.sampler",
    "membership": "harness.evaluation.probes.membership",
    "relearning": "harness.evaluation.probes.relearning",
}
# Probes that change the model while they run (and restore it): always run last.
RUN_LAST: frozenset[str] = frozenset({"relearning"})


@dataclass(frozen=True)
class GenerationSettings:
    """How Table 1 generates (harness.evaluation.mean_scores.rouge_recall): greedy,
    low-confidence remasking, one block, each row its answer's length + 4 masks, `steps`
    (config evaluation.gen_steps; None: one token per step)."""

    steps: int | None = None


@dataclass(frozen=True)
class ProbeContext:
    """Everything a probe may use; one edited model, its facts and the job's settings.

    backbone: the edited model (for a reference row, the model it scores). Probes must leave
      it as they found it (prompt overrides undone, weights restored).
    method / method_kind: the row's method name and registry kind ("gradient",
      "weight_edit", "inference_time", "reference").
    forget: the forget facts Table 1 scores, with `paraphrased_question` /
      `paraphrased_answer` / `perturbed_answers` filled from the forget split's perturbed
      file where it has the fact (harness.jobs.robustness.with_perturbed).
    retain: Table 1's scored retain sample (never handed to the method).
    retain_train: the retain facts the method was given (retain loss, covariance, gate).
    holdout: never-trained facts (the corpus's holdout split for the forget split,
      harness.data.holdout_split_for); empty when the corpus has none (real TOFU).
    estimator / batch_size / seed: as the Table 1 job (config estimator, evaluation.
      batch_size, the job's seed).
    generation: Table 1's generation settings.
    options: this probe's options (config `robustness.options.<probe>`; {} when unset).
    tofu_dir / forget_split: where the facts came from (a probe that needs more of the
      corpus reads it from there).
    """

    backbone: "Backbone"
    method: str
    method_kind: str
    forget: tuple["Fact", ...]
    retain: tuple["Fact", ...]
    retain_train: tuple["Fact", ...]
    holdout: tuple["Fact", ...]
    estimator: str
    batch_size: int
    seed: int
    generation: GenerationSettings = GenerationSettings()
    options: Mapping[str, Any] = field(default_factory=dict)
    tofu_dir: str = ""
    forget_split: str = ""


class ProbeError(ValueError):
    """A probe that cannot run (unknown name, module missing, unusable options or facts)."""


class NonFiniteProbe(ProbeError):
    """A probe returned NaN or infinity (the message names the probe and the column)."""


_PROBES: dict[str, ProbeFn] = {}
_VALIDATORS: dict[str, Callable[[Mapping[str, Any]], Any]] = {}


def register_probe(name: str, validate: Callable[[Mapping[str, Any]], Any] | None = None
                   ) -> Callable[[ProbeFn], ProbeFn]:
    """Decorator: register `fn(ctx) -> {column: value}` as probe `name`. `validate`, if
    given, checks the probe's options (config `robustness.options.<name>`) and raises
    ProbeError (or ValueError) naming the bad key: the job calls it before any model work."""
    def wrap(fn: ProbeFn) -> ProbeFn:
        if name in _PROBES and _PROBES[name] is not fn:
            raise ValueError(f"probe '{name}' registered twice")
        _PROBES[name] = fn
        if validate is not None:
            _VALIDATORS[name] = validate
        return fn

    return wrap


def validate_probe_options(name: str, options: Mapping[str, Any]) -> None:
    """Check probe `name`'s options with its registered validator (none: any options)."""
    get_probe(name)
    check = _VALIDATORS.get(name)
    if check is not None:
        check(options)


def probe_defaults(name: str) -> dict[str, Any]:
    """The defaults of probe `name`'s options: harness/evaluation/probes/<name>.yaml (the
    one place they are stated; {} when the probe has no such file)."""
    from pathlib import Path

    import yaml

    path = Path(__file__).with_name(f"{name}.yaml")
    if not path.exists():
        return {}
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise ProbeError(f"{path}: not a mapping of option -> default")
    return data


def options_with_defaults(name: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """`options` over probe `name`'s defaults (`probe_defaults`); ProbeError naming any key
    the defaults do not have."""
    if not isinstance(options, Mapping):
        raise ProbeError(f"robustness.options.{name}: must be a mapping, got "
                         f"{type(options).__name__}")
    defaults = probe_defaults(name)
    unknown = sorted(str(k) for k in set(options) - set(defaults))
    if unknown:
        close = difflib.get_close_matches(unknown[0], list(defaults), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ProbeError(f"robustness.options.{name}: unknown key(s) {', '.join(unknown)}"
                         f"{hint}; known: {', '.join(sorted(defaults)) or 'none'}")
    return {**defaults, **dict(options)}


def known_probe_names() -> list[str]:
    """The built-in probe names and any registered since (no probe module imported)."""
    return sorted(set(BUILTIN_PROBE_MODULES) | set(_PROBES))


def probe_available(name: str) -> bool:
    """Whether probe `name` can run: registered, or its built-in module is present (found,
    not imported)."""
    if name in _PROBES:
        return True
    module = BUILTIN_PROBE_MODULES.get(name)
    return module is not None and importlib.util.find_spec(module) is not None


def available_probes() -> list[str]:
    """Probes that can run, in the table's order (then any registered elsewhere)."""
    names = [n for n in BUILTIN_PROBE_MODULES if probe_available(n)]
    return names + sorted(set(_PROBES) - set(names))


def _unknown(name: str) -> ProbeError:
    known = known_probe_names()
    close = difflib.get_close_matches(str(name), known, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return ProbeError(f"unknown probe '{name}'{hint}; known: {', '.join(known)}")


def check_probe_names(names: Iterable[str]) -> list[str]:
    """`names` as a list, each a probe that can run; ProbeError naming the first that is
    unknown or whose module is not present."""
    out = []
    for name in names:
        if name not in known_probe_names():
            raise _unknown(name)
        if not probe_available(name):
            raise ProbeError(f"probe '{name}': its module {BUILTIN_PROBE_MODULES[name]} is "
                             f"not present (probes that can run: "
                             f"{', '.join(available_probes()) or 'none'})")
        out.append(name)
    return out


def get_probe(name: str) -> ProbeFn:
    """The probe function registered as `name`, importing its built-in module if needed."""
    if name not in _PROBES and name in BUILTIN_PROBE_MODULES:
        module = BUILTIN_PROBE_MODULES[name]
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as err:
            if err.name != module:
                raise
            raise ProbeError(f"probe '{name}': its module {module} is not present") from None
    if name not in _PROBES:
        raise _unknown(name)
    return _PROBES[name]


def probe_order(names: Sequence[str]) -> list[str]:
    """`names` in the order they must run: as given, those in RUN_LAST (they change the
    model while they run) after all others."""
    return [n for n in names if n not in RUN_LAST] + [n for n in names if n in RUN_LAST]


def check_result(name: str, result: Any) -> ProbeResult:
    """A probe's result as {str: float | None}; NonFiniteProbe for NaN/infinity, ProbeError
    for anything that is not a number (each names the probe and the column)."""
    if not isinstance(result, Mapping):
        raise ProbeError(f"probe '{name}' returned {type(result).__name__}, not a mapping "
                         f"of column -> number")
    out: ProbeResult = {}
    for column, value in result.items():
        if not isinstance(column, str) or not column:
            raise ProbeError(f"probe '{name}': column name {column!r} is not a string")
        if value is None:
            out[column] = None
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            try:  # a 0-d tensor or numpy scalar
                value = value.item()
            except AttributeError:
                raise ProbeError(f"probe '{name}': column '{column}' is "
                                 f"{type(value).__name__}, not a number") from None
        if not math.isfinite(float(value)):
            raise NonFiniteProbe(f"probe '{name}': column '{column}' is {value} (non-finite)")
        out[column] = float(value)
    return out


def run_probe(name: str, ctx: ProbeContext) -> ProbeResult:
    """Run probe `name` on `ctx` and check its result (`check_result`)."""
    return check_result(name, get_probe(name)(ctx))


def mean(values: Sequence[float]) -> float | None:
    """Mean of `values`, None for none."""
    return float(sum(values) / len(values)) if values else None


def forget_logp(ctx: ProbeContext, facts: Sequence["Fact"]) -> float | None:
    """Mean answer log-prob (nats per answer) of `facts` under ctx's model, estimator,
    batch size and seed: Table 1's forget log-prob (harness.evaluation.mean_scores)."""
    from harness.evaluation.mean_scores import mean_logp

    return mean_logp(ctx.backbone, facts, ctx.estimator, ctx.batch_size, ctx.seed)


def greedy_rouge(ctx: ProbeContext, facts: Sequence["Fact"]) -> float | None:
    """Mean ROUGE-L recall of `facts`' answers generated as Table 1 generates them."""
    from harness.evaluation.mean_scores import rouge_recall

    return rouge_recall(ctx.backbone, facts, ctx.generation.steps, ctx.batch_size, ctx.seed)
