# Robustness probes (issue 18): does forgotten knowledge stay forgotten? Target
# robustness_table (not part of reproduce_table1 or all).
#
# For every Table 1 row (each configured method and each reference row, common.smk
# references_of) of the probed backbones (config robustness.backbones: the tuning backbone
# by default), rule run_robustness makes the row's edited model again from Table 1's own
# job description (common.smk method_job; harness/jobs/edited_model.py), checks it against
# the row's Table 1 record, and runs the configured probes (harness/evaluation/probes);
# robustness_report renders reports/robustness.{md,csv} from the records.

from harness.evaluation.probes import (ProbeError, available_probes, check_probe_names,
                                       validate_probe_options)

ROBUSTNESS = config["robustness"]
_ROBUSTNESS_CHOICE = ROBUSTNESS["backbones"]
ROBUSTNESS_BACKBONES = ([TUNING_BACKBONE] if _ROBUSTNESS_CHOICE is None else
                        list(BACKBONES) if _ROBUSTNESS_CHOICE == "all" else
                        list(_ROBUSTNESS_CHOICE))


def _robustness_probes():
    """Config robustness.probes ("all": every probe whose module is present), each checked
    against the probe table; each probe's options (robustness.options) by its own parser."""
    choice = ROBUSTNESS["probes"]
    try:
        probes = available_probes() if choice == "all" else check_probe_names(choice)
    except ProbeError as exc:
        raise WorkflowError(f"invalid config at 'robustness.probes': {exc}") from None
    for name, options in ROBUSTNESS.get("options", {}).items():
        try:  # a probe's own parser (the job checks them again before any work)
            check_probe_names([name])
            validate_probe_options(name, options)
        except (ProbeError, ValueError) as exc:
            raise WorkflowError(f"invalid config at 'robustness.options.{name}': {exc}") from None
    for name in ROBUSTNESS_BACKBONES:
        if name not in BACKBONES:
            raise WorkflowError(f"invalid config: robustness.backbones: '{name}' is not a "
                                f"configured backbone (known: {', '.join(BACKBONES)})")
    return probes


ROBUSTNESS_PROBES = _robustness_probes()


def robustness_rows(backbone):
    """Table 1's rows of `backbone`: the configured methods, then its reference rows."""
    return list(METHODS) + references_of(backbone)


ROBUSTNESS_RECORDS = [f"results/robustness/{backbone}/{row}/seed{seed}.json"
                      for backbone in ROBUSTNESS_BACKBONES
                      for row in robustness_rows(backbone) for seed in SEEDS]
ROBUSTNESS_REPORTS = multiext("reports/robustness", ".md", ".csv")


def _table1_row(w):
    """The wildcards of the row's Table 1 job."""
    return SimpleNamespace(backbone=w.backbone, method=w.row, seed=w.seed)


def _table1_record(w):
    return f"results/runs/table1/{w.backbone}/{w.row}/seed{w.seed}.json"


def robustness_job(w, output):
    """The RobustnessJob: Table 1's own job description of the row (its `out` is the Table 1
    record, read for the reproduction check, never written), the probes and their options."""
    row = _table1_row(w)
    return job_arg({
        "method_job": json.loads(method_job(row, "table1", _table1_record(w))),
        "table1_record": _table1_record(w),
        "probes": ROBUSTNESS_PROBES,
        "options": ROBUSTNESS.get("options", {}),
        "out": str(output),
    })


rule run_robustness:
    input:
        corpus_marker(),
        lambda w: model_inputs(w.backbone, with_retain=True),
        lambda w: tuned_input(_table1_row(w)),
        lambda w: matched_input("table1")(_table1_row(w)),
        lambda w: statistics_input("table1")(_table1_row(w)),
        _table1_record,
    output:
        "results/robustness/{backbone}/{row}/seed{seed}.json",
    wildcard_constraints:
        row=_alternation(set(METHODS) | set(REFERENCE_METHODS)),
    params:
        **tracked_job(lambda w, output: robustness_job(w, output[0])),
    threads: JOB_THREADS
    resources:
        **rule_resources(config, "edit", JOB_THREADS),
    log:
        "results/logs/robustness/{backbone}/{row}/seed{seed}.log",
    benchmark:
        "results/benchmarks/robustness/{backbone}/{row}/seed{seed}.tsv"
    shell:
        "{PYTHON} -m harness.jobs.robustness --job {params.job:q} > {log} 2>&1"


rule robustness_report:
    input:
        ROBUSTNESS_RECORDS,
    output:
        md=report("reports/robustness.md", category="Robustness",
                  caption="../report/robustness.rst"),
        csv=report("reports/robustness.csv", category="Robustness",
                   caption="../report/robustness.rst"),
    params:
        rows=lambda w: " ".join(dict.fromkeys(
            row for b in ROBUSTNESS_BACKBONES for row in robustness_rows(b))),
    resources:
        **light_resources(config),
    log:
        "results/logs/robustness_report.log",
    benchmark:
        "results/benchmarks/robustness_report.tsv"
    shell:
        "{PYTHON} -m harness.reports.robustness --records {input} --out reports/robustness "
        "--backbones {ROBUSTNESS_BACKBONES} --methods {params.rows} > {log} 2>&1"


rule robustness_table:
    input:
        ROBUSTNESS_REPORTS,
