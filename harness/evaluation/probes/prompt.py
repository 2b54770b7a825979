"""Prompt probe: the forget facts asked in other prompt formats and behind a distractor.

Variants (options: harness/evaluation/probes/prompt.yaml, config `robustness.options.prompt`):

- other formats: every name in `formats` but the backbone's own (`options.prompt_format`,
  plain by default): the harness's formats (harness.backbones.chat_formats: `plain`, and
  `chat` where the tokenizer has a chat template; without one its columns are None) and
  `LOCAL_FORMATS` below (`short`: "Q: <question>\\nA:", a terser plain prompt);
- `distractor`: a fixed unrelated sentence put before the question (inside the format);
- `retain_distractor`: one retain fact's question and answer put before the question
  (forget fact i gets retain fact (i + seed) mod n of Table 1's scored retain sample).

Columns per variant: `<variant>_logp` (mean answer log-prob, nats per answer, ctx's
estimator) and `<variant>_rougeL` (greedy ROUGE-L recall, Table 1's generation; only with
`rouge: true`). The format is switched on the backbone object for the duration of the
variant (`prompt_format_as`) and restored after, also on an error.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from harness.evaluation.probes import (ProbeContext, ProbeError, ProbeResult, forget_logp,
                                       greedy_rouge, options_with_defaults, register_probe)

if TYPE_CHECKING:
    from harness.backbones.base import Backbone
    from harness.backbones.chat_formats import PromptFormat
    from harness.data.fact import Fact

# Formats only this probe tries (the backbones themselves are never prompted this way).
LOCAL_FORMAT_TEMPLATES = {"short": "Q: {question}\nA:"}
_OVERRIDDEN = ("format_prompt", "add_special_tokens", "answer_prefix", "answer_suffix")


def local_formats() -> dict[str, "PromptFormat"]:
    from harness.backbones.chat_formats import PromptFormat

    return {name: PromptFormat(name, lambda _tok, q, t=template: t.format(question=q),
                               add_special_tokens=True)
            for name, template in LOCAL_FORMAT_TEMPLATES.items()}


def known_formats() -> dict[str, "PromptFormat"]:
    from harness.backbones.chat_formats import PROMPT_FORMATS

    return {**PROMPT_FORMATS, **local_formats()}


def parse_options(options: Mapping[str, Any]) -> dict[str, Any]:
    opts = options_with_defaults("prompt", options)
    formats = opts["formats"]
    if not isinstance(formats, list) or not all(isinstance(f, str) for f in formats):
        raise ProbeError(f"robustness.options.prompt.formats: a list of format names, got "
                         f"{formats!r}")
    from harness.backbones.chat_formats import PROMPT_FORMATS

    known = [*PROMPT_FORMATS, *LOCAL_FORMAT_TEMPLATES]
    unknown = [f for f in formats if f not in known]
    if unknown:
        raise ProbeError(f"robustness.options.prompt.formats: unknown format(s) "
                         f"{', '.join(unknown)}; known: {', '.join(known)}")
    if opts["distractor"] is not None and not (isinstance(opts["distractor"], str)
                                               and opts["distractor"].strip()):
        raise ProbeError("robustness.options.prompt.distractor: a non-empty sentence or null")
    for key in ("retain_distractor", "rouge"):
        if not isinstance(opts[key], bool):
            raise ProbeError(f"robustness.options.prompt.{key}: true or false, got "
                             f"{opts[key]!r}")
    return opts


def own_format(backbone: "Backbone") -> str:
    """The prompt format the backbone was trained with (its `options.prompt_format`)."""
    spec = getattr(backbone, "spec", None)
    return str((getattr(spec, "options", None) or {}).get("prompt_format", "plain"))


def format_available(backbone: "Backbone", fmt: "PromptFormat") -> bool:
    """Whether `fmt` can render on this backbone (chat needs a tokenizer chat template)."""
    if fmt.name != "chat":
        return True
    return bool(getattr(backbone.tokenizer, "chat_template", None))


@contextmanager
def prompt_format_as(backbone: "Backbone", fmt: "PromptFormat") -> Iterator[None]:
    """Prompt `backbone` in format `fmt` inside the block: the prompt text and the three
    tokenisation settings of a format are set on the object and restored on exit."""
    saved = {name: backbone.__dict__[name] for name in _OVERRIDDEN if name in backbone.__dict__}
    tokenizer = backbone.tokenizer
    backbone.format_prompt = (  # type: ignore[method-assign]
        lambda question: fmt.render(tokenizer, question))
    backbone.add_special_tokens = fmt.add_special_tokens
    backbone.answer_prefix = fmt.answer_prefix
    backbone.answer_suffix = fmt.answer_suffix
    try:
        yield
    finally:
        for name in _OVERRIDDEN:
            if name in saved:
                setattr(backbone, name, saved[name])
            else:
                backbone.__dict__.pop(name, None)


def with_prefix(facts: Sequence["Fact"], prefixes: Sequence[str]) -> list["Fact"]:
    """Each fact with its prefix put before its question (one space between)."""
    return [replace(f, question=f"{p.strip()} {f.question}") for f, p in zip(facts, prefixes)]


def retain_prefixes(forget: Sequence["Fact"], retain: Sequence["Fact"], seed: int) -> list[str]:
    if not retain:
        raise ProbeError("prompt: retain_distractor needs retain facts (the job has none); "
                         "set robustness.options.prompt.retain_distractor: false")
    return [f"{r.question} {r.answer}"
            for r in (retain[(i + seed) % len(retain)] for i in range(len(forget)))]


def _scores(ctx: ProbeContext, name: str, facts: Sequence["Fact"], rouge: bool) -> ProbeResult:
    out: ProbeResult = {f"{name}_logp": forget_logp(ctx, facts)}
    if rouge:
        out[f"{name}_rougeL"] = greedy_rouge(ctx, facts)
    return out


@register_probe("prompt", validate=parse_options)
def prompt(ctx: ProbeContext) -> ProbeResult:
    opts = parse_options(ctx.options)
    facts, rouge = list(ctx.forget), opts["rouge"]
    out: ProbeResult = {}
    formats = known_formats()
    for name in opts["formats"]:
        if name == own_format(ctx.backbone):
            continue
        fmt = formats[name]
        if not format_available(ctx.backbone, fmt):
            out[f"{name}_logp"] = None
            if rouge:
                out[f"{name}_rougeL"] = None
            continue
        with prompt_format_as(ctx.backbone, fmt):
            out.update(_scores(ctx, name, facts, rouge))
    if opts["distractor"] is not None:
        asked = with_prefix(facts, [opts["distractor"]] * len(facts))
        out.update(_scores(ctx, "distractor", asked, rouge))
    if opts["retain_distractor"]:
        asked = with_prefix(facts, retain_prefixes(facts, ctx.retain, ctx.seed))
        out.update(_scores(ctx, "retain_distractor", asked, rouge))
    return out
