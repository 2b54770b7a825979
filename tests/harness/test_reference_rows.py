"""The reference rows of Table 1 and the transfer table: the reference jobs end to end on a
tiny twin (harness.jobs.run_method with `no_edit` / `retain_model`), the rows the reports
make of their records (every score column; no edit time, memory, FLOPs or speedup; ROUGE-L
relative to the retain model; the facts behind each statistic read from the records), the
regression check and the plan-time checks leaving them out, and the workflow adding them."""

from __future__ import annotations

import copy
import json
import math
from dataclasses import asdict
from pathlib import Path

import pytest
import yaml
from harness_records import make_record, typed
from job_payloads import TINY_ENTRY, method_payload, write_tiny_setup
from test_workflow_config import DEFAULT, dry_run, job_counts

from harness import plan_checks
from harness.jobs import run_method
from harness.jobs.spec import MethodJob
from harness.plan_checks import ConfigError
from harness.regress import current_metrics
from harness.reports.render import NOT_APPLICABLE
from harness.reports.table1 import COLUMNS, EDIT_COLUMNS, build_table1, table1_csv
from harness.reports.transfer import build_transfer
from harness.results.aggregate import runs_frame
from harness.results.store import read_record


# ---- the jobs, on a tiny twin

@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny corpus, a random tiny twin as the "fine-tuned" model (root/model) and another
    one, same tokenizer, as its "retain model" (root/retain)."""
    from harness.backbones.base import BackboneSpec
    from harness.backbones.registry import adapter_class
    from harness.data import load_corpus
    from harness.finetune import corpus_texts

    root = tmp_path_factory.mktemp("reference_jobs")
    tofu = write_tiny_setup(root)
    spec = BackboneSpec(name="tiny", **TINY_ENTRY)
    retain = adapter_class("llada-twin").initial(spec, corpus_texts(load_corpus(tofu)), seed=7)
    retain.save_pretrained(str(root / "retain"))
    return root, tofu


def reference_job(root: Path, tofu: Path, method: str, **kw) -> dict:
    config = {"checkpoint": str(root / "retain")} if method == "retain_model" else {}
    job = MethodJob.from_dict(method_payload(
        str(root / "model"), str(tofu), str(root / f"{method}.json"), method,
        method_config=config, retain_model_path=str(root / "retain"),
        evaluation={"gen_steps": 4, "utility_size": 3}, **kw))
    assert run_method.main(["--job", json.dumps(asdict(job))]) == 0
    return read_record(job.out)


@pytest.fixture(scope="module")
def records(setup):
    root, tofu = setup
    return {m: reference_job(root, tofu, m) for m in ("no_edit", "retain_model")}


def test_no_edit_job_scores_the_finetuned_model_with_every_metric(records):
    rec = records["no_edit"]
    assert rec["status"] == "ok" and rec["method"] == "no_edit"
    assert rec["forget_logp_after"] == rec["forget_logp_before"] < 0  # nothing edited
    assert rec["retain_logp_after"] == rec["retain_logp_before"] < 0
    assert rec["forget_rougeL_after"] == rec["forget_rougeL_before"]
    for key in ("forget_rougeL_after", "retain_rougeL_after", "forget_quality",
                "model_utility"):
        assert 0.0 <= rec[key] <= 1.0, key
    assert rec["forget_quality"] < 1.0  # a random other model: distinguishable
    assert rec["wall_clock_s"] < 0.05 and rec["details"]["scored_model"] == "finetuned"


def test_retain_model_job_scores_the_retain_model_against_the_finetuned_one(records):
    finetuned, retain = records["no_edit"], records["retain_model"]
    assert retain["status"] == "ok"
    # before: the fine-tuned model (the same facts and seed as the no_edit row) ...
    assert retain["forget_logp_before"] == finetuned["forget_logp_before"]
    assert retain["retain_logp_before"] == finetuned["retain_logp_before"]
    # ... after: a different model, the retain model
    assert retain["forget_logp_after"] != finetuned["forget_logp_after"]
    # the KS test of the retain model's truth ratios against its own: p = 1
    assert retain["forget_quality"] == 1.0
    assert retain["wall_clock_s"] < 0.05  # loading the model is not an edit
    assert retain["details"]["scored_model"] == "retain"


def test_records_say_how_many_facts_each_statistic_rests_on(records, setup):
    from harness.data import load_split

    _, tofu = setup
    for rec in records.values():
        counts = rec["details"]["notes"]["fact_counts"]
        assert counts["forget"] == rec["n_facts"] == 5  # forget05 of 100 records
        assert counts["retain_eval"] == rec["n_retain_eval"] == 6
        assert counts["forget_quality"] == len(load_split(tofu, "forget05_perturbed")) == 5
        assert counts["model_utility"] == {"retain_perturbed": 3,
                                           "real_authors_perturbed": 3,
                                           "world_facts_perturbed": 3}


# ---- the reports

def reference_records(backbone: str = "bb", *, retain: bool = True) -> list[dict]:
    """Planted reference records: fine-tuned (no drop) and retain model (a 4-nat drop)."""
    def counts(record: dict) -> dict:
        record["details"] = {"notes": {"fact_counts": {
            "forget": 10, "retain_eval": 40, "forget_quality": 10,
            "model_utility": {"retain_perturbed": 20, "real_authors_perturbed": 20,
                              "world_facts_perturbed": 20}}}}
        return record

    rows = [counts({**make_record(backbone, "no_edit", wall=1e-6, forget=(-10.0, -10.0),
                                  retain=(-8.0, -8.0), peak=100 * 2**20),
                    "forget_rougeL_after": 0.9, "forget_quality": 0.02, "edit_flops": 0.0})]
    if retain:
        rows.append(counts({**make_record(backbone, "retain_model", wall=1e-6,
                                          forget=(-10.0, -14.0), retain=(-8.0, -8.1)),
                            "forget_rougeL_after": 0.52, "forget_quality": 1.0}))
    return rows


def no_retain_model(records: list[dict]) -> list[dict]:
    """`records` as on a backbone without a retain model: no forget quality."""
    return [{**r, "forget_quality": None} for r in records]


def method_records(backbone: str = "bb") -> list[dict]:
    return [
        {**make_record(backbone, "timerome", wall=2.0, forget=(-10.0, -60.0)),
         "forget_rougeL_after": 0.56, "edit_flops": 1e9},
        {**make_record(backbone, "graddiff", wall=16.0, forget=(-10.0, -50.0)),
         "edit_flops": 3e10},
    ]


def table(records: list[dict], **kw):
    return build_table1(runs_frame(typed(records)), methods=["timerome", "graddiff"], **kw)


def test_table1_opens_each_backbone_with_its_reference_rows():
    records = method_records("a") + reference_records("a") + no_retain_model(
        method_records("b") + reference_records("b", retain=False))
    t = table(records, backbones=["a", "b"])
    assert list(zip(t.summary["backbone"], t.summary["method"])) == [
        ("a", "no_edit"), ("a", "retain_model"), ("a", "timerome"), ("a", "graddiff"),
        ("b", "no_edit"), ("b", "timerome"), ("b", "graddiff")]
    rows = t.table().rows
    assert [r[1] for r in rows[:3]] == ["finetuned (no edit)", "retain (exact unlearning)",
                                        "timerome"]
    # b has no retain model (no forget quality): no retain row, and none is missed
    assert "retain (exact unlearning)" not in [r[1] for r in rows[4:]]
    assert not [n for n in t.footnotes() if "row among the records" in n]


def test_a_missing_reference_row_is_named_in_the_notes():
    records = method_records("a") + reference_records("a")[1:]  # no fine-tuned row
    notes = table(records).footnotes()
    assert "a: no 'finetuned (no edit)' row among the records (workflow rule run_reference " \
           "makes it)." in notes
    records = method_records("a") + reference_records("a", retain=False)  # FQ: a retain model
    notes = table(records).footnotes()
    assert [n for n in notes if "row among the records" in n] == [
        "a: no 'retain (exact unlearning)' row among the records (workflow rule "
        "run_reference makes it)."]


def test_reference_rows_have_every_score_and_no_edit_cost():
    t = table(method_records() + reference_records())
    headers = t.table().headers
    by_method = {r[1]: dict(zip(headers, r)) for r in t.table().rows}
    edit_headers = {h for h, col in zip(headers, COLUMNS) if col.key in EDIT_COLUMNS}
    assert edit_headers >= {"Wall-clock (s)", "Speedup", "FLOP speedup", "Peak mem (MiB)",
                            "Edit FLOPs", "Converged"}
    for label in ("finetuned (no edit)", "retain (exact unlearning)"):
        row = by_method[label]
        for header, cell in row.items():
            if header in edit_headers:
                assert cell == NOT_APPLICABLE, (label, header)
            else:  # every score is there: a number, not "--" or "—"
                assert cell not in ("--", NOT_APPLICABLE), (label, header)
    assert by_method["retain (exact unlearning)"]["Δ forget"] == "-4.00"
    assert by_method["finetuned (no edit)"]["Δ forget"] == "0.00"
    # no reference row has a speedup, however small its "edit time" was
    refs = t.summary[t.summary["reference"]]
    assert refs["speedup"].isna().all() and refs["flop_speedup"].isna().all()
    assert refs["wall_clock_s"].isna().all() and refs["edit_flops"].isna().all()
    assert t.strongest == {"bb": "graddiff"}
    tex = t.table().latex()
    assert "---" in tex and NOT_APPLICABLE not in tex


def test_method_rows_are_the_same_with_and_without_reference_rows():
    without = table(method_records()).summary
    with_refs = table(method_records() + reference_records()).summary
    with_refs = with_refs[~with_refs["reference"]].reset_index(drop=True)
    columns = [c for c in without.columns if c != "forget_rougeL_vs_retain"]
    assert with_refs[columns].equals(without[columns])


def test_forget_rouge_is_shown_relative_to_the_retain_model():
    t = table(method_records("a") + reference_records("a") + method_records("b")
              + reference_records("b", retain=False), backbones=["a", "b"])
    vs = dict(zip(zip(t.summary["backbone"], t.summary["method"]),
                  t.summary["forget_rougeL_vs_retain"]))
    assert vs[("a", "timerome")] == pytest.approx(0.56 - 0.52)
    assert vs[("a", "no_edit")] == pytest.approx(0.9 - 0.52)
    assert vs[("a", "retain_model")] == 0.0
    assert math.isnan(vs[("b", "timerome")])  # no retain model on b
    rows = {(r[0], r[1]): r for r in t.table().rows}
    column = t.table().headers.index("ROUGE-L forget − retain")
    assert rows[("a", "timerome")][column] == "+0.040"
    assert rows[("b", "timerome")][column] == "--"


def test_notes_give_the_facts_behind_each_statistic_from_the_records():
    records = method_records() + reference_records()
    for record in records:
        record.update(n_facts=7, n_retain_eval=13)
        notes = record.setdefault("details", {}).setdefault("notes", {})
        notes["fact_counts"] = {"forget_quality": 7, "model_utility": {"retain_perturbed": 5}}
    frame = runs_frame(typed(records))
    from harness.reports.inputs import FACT_COUNT_COLUMNS, fact_count_cells

    cells = [fact_count_cells(r) for r in typed(records)]  # as load_runs adds them
    for column in FACT_COUNT_COLUMNS:
        frame[column] = [c[column] for c in cells]
    md = build_table1(frame).table().markdown()
    assert ("forget log-prob, Δ forget and ROUGE-L forget: 7 forget facts (forget01); "
            "Δ retain and ROUGE-L retain: 13 scored retain facts") in md
    assert "perturbed set, 7 per model" in md
    assert "model utility: harmonic mean of the statistics of its sets (facts in each: " \
           "retain_perturbed: 5)" in md
    assert "Reference rows (no method): 'finetuned (no edit)'" in md


def test_load_runs_attaches_each_records_fact_counts(tmp_path):
    from harness.reports.inputs import load_runs

    records = method_records() + reference_records()
    for i, record in enumerate(records):
        record["seed"] = i  # distinct rows; counts differ by record
        record["details"] = {"notes": {"fact_counts": {"forget_quality": 100 + i}}}
        (tmp_path / f"{i}.json").write_text(json.dumps(record))
    frame = load_runs([tmp_path])
    assert dict(zip(frame["seed"], frame["n_forget_quality"])) == {
        i: 100 + i for i in range(len(records))}
    assert frame["n_model_utility"].isna().all()


def test_csv_keeps_method_names_and_leaves_reference_costs_empty():
    csv = table1_csv(table(method_records() + reference_records()))
    lines = csv.splitlines()
    header = lines[0].split(",")
    rows = [dict(zip(header, line.split(","))) for line in lines[1:]]
    assert [r["method"] for r in rows] == ["no_edit", "retain_model", "timerome", "graddiff"]
    for r in rows[:2]:
        assert r["reference"] == "True" and r["wall_clock_s"] == "" and r["speedup"] == ""
    assert rows[2]["reference"] == "False" and float(rows[2]["speedup"]) == 8.0


def test_transfer_table_has_the_reference_rows():
    records = method_records("a") + reference_records("a") + method_records("b") + \
        reference_records("b", retain=False)
    rendered, summary = build_transfer(runs_frame(typed(records)), "a", {"alpha": 2.0})
    rows = [(r[0], r[1]) for r in rendered.rows]
    assert rows == [("a (tuned here)", "finetuned (no edit)"),
                    ("a (tuned here)", "retain (exact unlearning)"), ("a (tuned here)", "timerome"),
                    ("b", "finetuned (no edit)"), ("b", "timerome")]
    by_row = {(r[0], r[1]): dict(zip(rendered.headers, r)) for r in rendered.rows}
    retain = by_row[("a (tuned here)", "retain (exact unlearning)")]
    assert retain["Δ forget"] == "-4.00" and retain["ROUGE-L forget − retain"] == "+0.000"
    assert retain["Wall-clock (s)"] == retain["Extra mem (MiB)"] == NOT_APPLICABLE
    method = by_row[("a (tuned here)", "timerome")]
    assert method["Wall-clock (s)"] == "2.00" and method["ROUGE-L forget − retain"] == "+0.040"
    assert "graddiff" not in set(summary["method"])


def test_regression_check_leaves_reference_rows_out():
    entries = current_metrics(runs_frame(typed(method_records() + reference_records())))
    assert sorted(e["method"] for e in entries) == ["graddiff", "timerome"]


# ---- config and workflow

@pytest.fixture
def cfg() -> dict:
    from snakemake.utils import validate

    config = yaml.safe_load(DEFAULT.read_text())
    validate(config, str(DEFAULT.parent / "schema.json"))
    return copy.deepcopy(config)


@pytest.mark.parametrize("key, edit, message", [
    ("methods.6", lambda c: c["methods"].append("no_edit"),
     "'no_edit' is a reference row (finetuned (no edit)), not a method: Table 1 and the "
     "transfer table always have it; do not list it"),
    ("scaling_methods.1", lambda c: c["scaling_methods"].insert(1, "retain_model"),
     "'retain_model' is a reference row (retain (exact unlearning)), not a method: reference "
     "rows are not part of the scaling experiment"),
    ("target_forget_drop", lambda c: c.update(target_forget_drop="no_edit"),
     "removes nothing"),
    ("method_config.retain_model",
     lambda c: c["method_config"].update(retain_model={"checkpoint": "x"}),
     "reference rows take no config"),
])
def test_a_reference_row_is_never_listed_or_configured(cfg, key, edit, message):
    edit(cfg)
    with pytest.raises(ConfigError) as info:
        plan_checks.check_method_names(cfg)
    assert info.value.key == key and message in info.value.message


def test_workflow_runs_the_reference_rows_of_every_backbone(tmp_path):
    result = dry_run(tmp_path, "reproduce_table1", extra=("-p",))
    assert result.returncode == 0, result.stderr
    counts = job_counts(result.stdout)
    n_backbones = len(yaml.safe_load(DEFAULT.read_text())["backbones"])
    # one fine-tuned row per backbone, one retain row per backbone with a retain model
    assert counts["run_reference"] == n_backbones + counts["retain_model"]
    assert counts["run_table1"] == 36  # the method jobs are unchanged
    jobs = [json.loads(line.split("--job '", 1)[1].split("' >", 1)[0])
            for line in result.stdout.splitlines() if "harness.jobs.run_method --job" in line]
    references = {(j["backbone"], j["method"]): j for j in jobs
                  if j["method"] in ("no_edit", "retain_model")}
    assert len(references) == counts["run_reference"]
    retain = references[("llada-8b-base-twin", "retain_model")]
    assert retain["method_config"] == {"checkpoint": "models/llada-8b-base-twin/retain"}
    assert retain["backbone_path"] == "models/llada-8b-base-twin/finetuned"
    assert retain["out"] == "results/runs/table1/llada-8b-base-twin/retain_model/seed0.json"
    assert references[("dream-7b-twin", "no_edit")]["method_config"] == {}
