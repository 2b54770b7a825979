"""Transfer table: the tuned TimeROME-DLM config applied unchanged to every backbone, each
backbone's row after its reference rows ("finetuned (no edit)", "retain (exact
unlearning)" where the backbone has a retain model; harness/methods/reference.py) with the
same score columns; a reference row's edit time and memory are "—" (it edits nothing)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from harness.methods.registry import reference_methods, tuned_methods
from harness.reports.inputs import InputError
from harness.reports.render import NOT_APPLICABLE, Table
from harness.reports.table1 import (_mib, _num, _signed, add_reference_columns, order_rows,
                                    row_label, summarise)

HEADERS = ["Backbone", "Row", "Forget logp before", "Forget logp after", "Δ forget",
           "Δ retain", "ROUGE-L forget", "ROUGE-L forget − retain", "Wall-clock (s)",
           "Extra mem (MiB)"]
LATEX = ["Backbone", "Row", "$\\log p_f$ before", "$\\log p_f$ after", "$\\Delta_f$",
         "$\\Delta_r$", "R-L$_f$", "R-L$_f$ $-$ retain", "Time (s)", "Extra (MiB)"]


def tuned_params(path: str | None) -> dict:
    """The chosen hyper-parameters of a tuning output ({} when it chose none: method
    defaults); InputError naming `path` when it is not a tuning output."""
    if not path:
        return {}
    try:
        payload = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(payload, dict):
        raise InputError(f"{path}: not a tuning output (a JSON object)")
    chosen = payload.get("chosen", payload)
    if chosen is None:
        return {}
    if not isinstance(chosen, dict):
        raise InputError(f"{path}: 'chosen' is neither an object nor null")
    params = chosen.get("params", chosen)
    if not isinstance(params, dict):
        raise InputError(f"{path}: 'chosen/params' is not an object")
    by_facts = payload.get("chosen_by_facts")
    if by_facts is not None and not isinstance(by_facts, dict):
        raise InputError(f"{path}: 'chosen_by_facts' is not an object")
    return {**params, **({"by_facts": by_facts} if by_facts else {})}


SHOWN_KEYS = ("alpha", "lam", "lambda", "q", "gate_margin", "sites", "gate_span",
              "gate_own_floor")


def tuned_text(tuned: dict) -> str:
    """The transferred hyper-parameters in words: per fact-count regime when the tuning has
    regimes (a job editing up to n facts applies regime n's point; Table 1's forget split
    is the smallest regime), else the one chosen point."""
    def point(values: dict | None) -> str:
        if values is None:
            return "no utility-safe point (untuned)"
        return ", ".join(f"{k}={v}" for k, v in sorted(values.items()) if k in SHOWN_KEYS)

    by_facts = tuned.get("by_facts")
    if by_facts:
        return "; ".join(f"jobs of up to {n} facts: {point(by_facts[n])}"
                         for n in sorted(by_facts, key=int))
    return point(tuned) or "method defaults"


def transferred_method() -> str:
    """The method whose tuned point transfers across backbones: the registry's one method
    with tunable keys (TimeROME-DLM)."""
    (method,) = tuned_methods()
    return method


def build_transfer(runs: pd.DataFrame, source: str, tuned: dict) -> tuple[Table, pd.DataFrame]:
    """The table and its summary frame: per backbone its reference rows, then the
    transferred method's row."""
    method = transferred_method()
    shown_methods = [*reference_methods(), method]
    summary = order_rows(summarise(runs[runs["method"].isin(shown_methods)]), None,
                         shown_methods)
    add_reference_columns(summary)
    fmt2, fmt3, signed3 = _num(2), _num(3), _signed(3)
    rows = []
    for rec in summary.to_dict("records"):
        name = rec["backbone"] + (" (tuned here)" if rec["backbone"] == source else "")
        cost = ([NOT_APPLICABLE, NOT_APPLICABLE] if rec["reference"]
                else [fmt2(rec["wall_clock_s"]), _mib(rec["extra_mem_bytes"])])
        rows.append([name, row_label(rec["method"]), fmt2(rec["forget_logp_before"]),
                     fmt2(rec["forget_logp_after"]), fmt2(rec["forget_delta"]),
                     fmt2(rec["retain_delta"]), fmt3(rec["forget_rougeL_after"]),
                     signed3(rec["forget_rougeL_vs_retain"]), *cost])
    notes = [f"TimeROME-DLM hyper-parameters tuned on {source}'s validation split and applied "
             f"unchanged to every backbone: " + tuned_text(tuned) + ". Each count's grid and "
             "its frontier: the tuning record (regimes).",
             "Log-probabilities: mean nats per sample; Δ = after − before.",
             f"Reference rows: '{row_label('no_edit')}' is the fine-tuned model as it is; "
             f"'{row_label('retain_model')}' the model fine-tuned without the forget split "
             "(backbones with a retain model), its 'before' the fine-tuned model. They edit "
             f"nothing ('{NOT_APPLICABLE}': no edit time or memory). ROUGE-L forget − retain: "
             "the row's forget ROUGE-L minus the retain model's on the same backbone ('--' "
             "without one). Facts behind each number: Table 1's notes."]
    return Table(HEADERS, LATEX, rows, notes, n_text_columns=2), summary
