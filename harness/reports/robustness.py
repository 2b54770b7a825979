"""The robustness table (issue 18): each Table 1 row's probe columns next to its
trained-phrasing numbers, with the reference rows beside them.

`python -m harness.reports.robustness --records DIR_OR_FILE... --out reports/robustness`
writes `<out>.md` (one table per probe, after the trained phrasing) and `<out>.csv` (one
line per record, every column flat as `<probe>.<column>`, with a `<...>.delta` column next
to each log-prob and ROUGE-L column).

Inputs are robustness records (harness/jobs/robustness.py `RobustnessRecord`), each read
and checked once. A row is one backbone x method x seed. Δ is the row's value minus the
fine-tuned model's ("finetuned (no edit)", the `no_edit` reference row of the same
backbone and seed) for every log-prob and ROUGE-L column: the trained phrasing's Δ is
Table 1's forget drop; a paraphrase, prompt or sampler Δ near 0 where the trained
phrasing's is large means the knowledge is still there. The "retain (exact unlearning)"
row is the target.

Exit status: 0 ok; 2 bad input (a file that is not a robustness record, or no record with
status ok), printed as `error: <file>: <what is wrong>` before anything is written.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from harness.atomic import write_text_atomic
from harness.jobs.robustness import BASE_COLUMNS, RobustnessRecord
from harness.reports.inputs import InputError, Inputs, describe, record_paths
from harness.reports.render import Table

FINETUNED = "no_edit"  # the reference row every Δ is taken against
RETAIN = "retain_model"  # the reference row PrivLeak is taken against
BASE = "trained phrasing"  # the section of the record's `base` columns
DELTA_SUFFIXES = ("logp", "rougeL", "rougeL_max")  # columns that get a Δ vs the fine-tuned
EMPTY = "—"


def has_delta(column: str) -> bool:
    return column.endswith(DELTA_SUFFIXES) or column.startswith("logp_t")


def load_records(inputs: Inputs) -> list[RobustnessRecord]:
    records = []
    for path in record_paths(inputs):
        try:
            payload = json.loads(Path(path).read_text(encoding="utf-8"))
            records.append(RobustnessRecord.from_dict(payload, str(path)))
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InputError(f"{path}: cannot read ({exc})") from None
        except (TypeError, ValueError) as exc:
            raise InputError(str(exc)) from None
    if not any(r.status == "ok" for r in records):
        raise InputError(f"{describe(inputs)}: no robustness record with status ok")
    return records


def sections(record: RobustnessRecord) -> dict[str, dict[str, float | None]]:
    """Section -> column -> value: the trained phrasing first, then each probe's (probes
    in the order they ran, columns in the order the probe returned them)."""
    out = {BASE: {c: record.base.get(c) for c in BASE_COLUMNS}}
    for probe, order in record.columns:
        values = record.probes.get(probe, {})
        out[probe] = {c: values.get(c) for c in [*order, *(c for c in values if c not in order)]}
    for probe, values in record.probes.items():
        out.setdefault(probe, dict(values))
    return out


def ordered(records: Sequence[RobustnessRecord], backbones: Sequence[str] | None,
            methods: Sequence[str] | None) -> list[RobustnessRecord]:
    """Rows by backbone, then method (given orders first, then first seen), then seed."""
    def rank(order: Sequence[str] | None, value: str, seen: list[str]) -> int:
        if order and value in order:
            return list(order).index(value)
        if value not in seen:
            seen.append(value)
        return len(order or ()) + seen.index(value)

    seen_b: list[str] = []
    seen_m: list[str] = []
    keyed = [((rank(backbones, r.backbone, seen_b), rank(methods, r.method, seen_m), r.seed), r)
             for r in records]
    return with_privleak([r for _, r in sorted(keyed, key=lambda kv: kv[0])])


def with_privleak(records: Sequence[RobustnessRecord]) -> list[RobustnessRecord]:
    """The records with `membership.<attack>_privleak` added: MUSE's PrivLeak, the row's MIA
    AUC relative to the retain model's (row `retain_model` of the same backbone and seed;
    `harness.evaluation.membership.privleak`), 0 for exact unlearning, None without a
    retain row or an AUC."""
    from harness.evaluation.membership import privleak

    retain = {(r.backbone, r.seed): r.probes.get("membership", {}) for r in records
              if r.method == RETAIN and r.status == "ok"}
    out = []
    for r in records:
        membership = r.probes.get("membership")
        reference = retain.get((r.backbone, r.seed))
        if membership is None:
            out.append(r)
            continue
        leaks = {}
        for column, auc in membership.items():
            if column.endswith("_auc"):
                ref = None if reference is None else reference.get(column)
                leaks[column[:-len("_auc")] + "_privleak"] = \
                    None if auc is None or ref is None else privleak(auc, ref)
        probes = {**r.probes, "membership": {**membership, **leaks}}
        columns = [(probe, cols + [c for c in leaks if c not in cols]) if probe == "membership"
                   else (probe, cols) for probe, cols in r.columns]
        out.append(replace(r, probes=probes, columns=columns))
    return out


def columns_of(records: Sequence[RobustnessRecord]) -> dict[str, list[str]]:
    """Section -> its columns, in the order first seen."""
    out: dict[str, list[str]] = {BASE: list(BASE_COLUMNS)}
    for record in records:
        for section, cols in sections(record).items():
            known = out.setdefault(section, [])
            known += [c for c in cols if c not in known]
    return out


def finetuned_values(records: Sequence[RobustnessRecord]
                     ) -> dict[tuple[str, int], dict[str, dict[str, float | None]]]:
    return {(r.backbone, r.seed): sections(r) for r in records
            if r.method == FINETUNED and r.status == "ok"}


def delta(value: float | None, reference: float | None) -> float | None:
    if value is None or reference is None:
        return None
    return float(value) - float(reference)


def fmt(column: str, value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return EMPTY
    if column.startswith("n_"):
        return str(int(round(value)))
    if "rougeL" in column:
        return f"{value:.3f}"
    if "logp" in column:
        return f"{value:.2f}"
    return f"{value:.3g}"  # another probe's number (an AUC, a learning rate, a step count)


def cell(column: str, value: float | None, reference: float | None, show_delta: bool) -> str:
    text = fmt(column, value)
    d = delta(value, reference) if show_delta and has_delta(column) else None
    if d is None:
        return text
    return f"{text} ({'+' if d >= 0 else '−'}{fmt(column, abs(d))})"


def section_table(section: str, columns: Sequence[str], rows: Sequence[RobustnessRecord],
                  reference: dict, many_seeds: bool) -> Table:
    lead = ["Backbone", "Row"] + (["Seed"] if many_seeds else [])
    cells = []
    for r in rows:
        head = [r.backbone, r.label] + ([str(r.seed)] if many_seeds else [])
        if r.status != "ok":
            cells.append(head + [f"{r.status}"] + [EMPTY] * (len(columns) - 1))
            continue
        values = sections(r).get(section, {})
        ref = reference.get((r.backbone, r.seed), {}).get(section, {})
        is_ref = r.method == FINETUNED
        cells.append(head + [cell(c, values.get(c), ref.get(c), not is_ref) for c in columns])
    extra: list[str] = []
    if section == BASE:  # the reproduction check
        extra = ["Table 1 |diff|"]
        for r, row in zip(rows, cells):
            diff = (r.table1 or {}).get("max_abs_diff") if r.status == "ok" else None
            row.append(EMPTY if diff is None else f"{diff:.1e}")
    headers = lead + list(columns) + extra
    return Table(headers, headers, cells, [], n_text_columns=len(lead))


def notes(rows: Sequence[RobustnessRecord]) -> list[str]:
    ok = [r for r in rows if r.status == "ok"]
    estimators = sorted({r.estimator for r in ok})
    counts = sorted({(r.n_forget, r.n_retain, r.n_holdout) for r in ok})
    splits = sorted({r.forget_split for r in ok})
    seconds: dict[str, list[float]] = {}
    for r in ok:
        for name, s in r.probe_seconds.items():
            seconds.setdefault(name, []).append(float(s))
    timing = ", ".join(f"{n} {sum(v) / len(v):.1f} s" for n, v in seconds.items())
    return [
        "Δ (in parentheses): the row's value minus the fine-tuned model's (row \"finetuned "
        "(no edit)\", same backbone and seed), for every log-prob and ROUGE-L column; the "
        "\"retain (exact unlearning)\" row is the target. A probe can show forgetting only "
        "where the finetuned row knows the answer (a variant the fine-tuned model never "
        "answered, e.g. a paraphrase a twin was not trained on, has nothing to forget).",
        f"Log-probs: mean nats per answer ({', '.join(estimators)} estimator), except "
        "sampler logp_t<t>: nats per answer token still masked at level t. ROUGE-L: mean "
        "recall of the generated answer.",
        f"Facts: forget split {', '.join(splits)}; (forget, scored retain, holdout) counts "
        f"{', '.join(str(c) for c in counts)}.",
        "Trained phrasing: scored on the re-made edited model as Table 1 scores it; "
        "Table 1 |diff|: the largest difference from the row's Table 1 record (0: the "
        "probed model is the one Table 1 scored).",
        f"Mean seconds per row: {timing}.",
    ]


def robustness_tables(records: Sequence[RobustnessRecord], backbones: Sequence[str] | None,
                      methods: Sequence[str] | None) -> list[tuple[str, Table]]:
    rows = ordered(records, backbones, methods)
    reference = finetuned_values(rows)
    many_seeds = len({r.seed for r in rows}) > 1
    return [(section, section_table(section, cols, rows, reference, many_seeds))
            for section, cols in columns_of(rows).items()]


def robustness_markdown(records: Sequence[RobustnessRecord], backbones: Sequence[str] | None,
                        methods: Sequence[str] | None) -> str:
    parts = ["# Robustness of forgetting (issue 18)", ""]
    for section, table in robustness_tables(records, backbones, methods):
        parts += [f"## {section}", "", table.markdown()]
    parts += ["## Notes", ""]
    parts += [f"{i}. {n}" for i, n in enumerate(notes(ordered(records, backbones, methods)), 1)]
    return "\n".join(parts) + "\n"


def robustness_csv(records: Sequence[RobustnessRecord], backbones: Sequence[str] | None,
                   methods: Sequence[str] | None) -> str:
    rows = ordered(records, backbones, methods)
    reference = finetuned_values(rows)
    cols = columns_of(rows)
    header = ["backbone", "method", "label", "method_kind", "seed", "status",
              "table1_max_abs_diff"]
    for section, names in cols.items():
        prefix = "base" if section == BASE else section
        for c in names:
            header.append(f"{prefix}.{c}")
            if has_delta(c):
                header.append(f"{prefix}.{c}.delta")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for r in rows:
        line: list[object] = [r.backbone, r.method, r.label, r.method_kind, r.seed, r.status,
                              (r.table1 or {}).get("max_abs_diff")]
        values, ref = sections(r), reference.get((r.backbone, r.seed), {})
        for section, names in cols.items():
            for c in names:
                v = values.get(section, {}).get(c)
                line.append(v)
                if has_delta(c):
                    line.append(delta(v, ref.get(section, {}).get(c)))
        writer.writerow(["" if v is None else v for v in line])
    return buffer.getvalue()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m harness.reports.robustness",
                                description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--records", nargs="+", required=True,
                   help="robustness record JSON files, or directories searched for them")
    p.add_argument("--out", required=True, help="output stem, e.g. reports/robustness")
    p.add_argument("--backbones", nargs="*", default=None, help="row order of backbones")
    p.add_argument("--methods", nargs="*", default=None, help="row order of methods")
    args = p.parse_args(argv)
    try:
        records = load_records(args.records)
    except InputError as exc:  # bad input; anything else is a bug: traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out)
    text = robustness_markdown(records, args.backbones, args.methods)
    write_text_atomic(out.with_suffix(".md"), text)
    write_text_atomic(out.with_suffix(".csv"), robustness_csv(records, args.backbones,
                                                              args.methods))
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
