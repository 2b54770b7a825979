"""Transfer table: the tuned TimeROME-DLM config applied unchanged to every backbone."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from harness.methods.registry import tuned_methods
from harness.reports.inputs import InputError
from harness.reports.render import Table
from harness.reports.table1 import _mib, _num, summarise

HEADERS = ["Backbone", "Forget logp before", "Forget logp after", "Δ forget", "Δ retain",
           "ROUGE-L forget", "Wall-clock (s)", "Extra mem (MiB)"]
LATEX = ["Backbone", "$\\log p_f$ before", "$\\log p_f$ after", "$\\Delta_f$", "$\\Delta_r$",
         "R-L$_f$", "Time (s)", "Extra (MiB)"]


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
    return dict(params)


def transferred_method() -> str:
    """The method whose tuned point transfers across backbones: the registry's one method
    with tunable keys (TimeROME-DLM)."""
    (method,) = tuned_methods()
    return method


def build_transfer(runs: pd.DataFrame, source: str, tuned: dict) -> tuple[Table, pd.DataFrame]:
    summary = summarise(runs[runs["method"] == transferred_method()])
    fmt2, fmt3 = _num(2), _num(3)
    rows = []
    for rec in summary.to_dict("records"):
        name = rec["backbone"] + (" (tuned here)" if rec["backbone"] == source else "")
        rows.append([name, fmt2(rec["forget_logp_before"]), fmt2(rec["forget_logp_after"]),
                     fmt2(rec["forget_delta"]), fmt2(rec["retain_delta"]),
                     fmt3(rec["forget_rougeL_after"]), fmt2(rec["wall_clock_s"]),
                     _mib(rec["extra_mem_bytes"])])
    shown = {k: v for k, v in tuned.items() if k in ("alpha", "lam", "lambda", "q")}
    notes = [f"TimeROME-DLM hyper-parameters tuned on {source}'s validation split and applied "
             f"unchanged to every backbone: "
             + (", ".join(f"{k}={v}" for k, v in sorted(shown.items())) or "method defaults")
             + ".",
             "Log-probabilities: mean nats per sample; Δ = after − before."]
    return Table(HEADERS, LATEX, rows, notes, n_text_columns=1), summary
