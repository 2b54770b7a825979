# Table 1 (every method on every backbone, forget split, with its reference rows),
# TimeROME-DLM tuning, transfer.
# Reports are built from the job records (harness.reports reads and types them once); the
# runs CSV is written from the same records for people to read, never read back.

TABLE1_RECORDS = expand("results/runs/table1/{backbone}/{method}/seed{seed}.json",
                        backbone=BACKBONES, method=METHODS, seed=SEEDS)
# The reference rows (rule run_reference): per backbone "finetuned (no edit)" and, where it
# has a retain model, "retain (exact unlearning)" (common.smk references_of). Their records
# sit next to the methods' (a reference name is no method's name: one registry); Table 1,
# its runs CSV and the transfer table read them; the edit-phase breakdown, the runs CSV of
# every experiment and the regression check do not (nothing is edited).
REFERENCE_RECORDS = [f"results/runs/table1/{backbone}/{method}/seed{seed}.json"
                     for backbone in BACKBONES for method in references_of(backbone)
                     for seed in SEEDS]
TABLE1_RUNS_CSV = "results/table1.csv"  # the runs frame of TABLE1_RECORDS, for people to read
# What Table 1 publishes: the table (reports/table1.*), the runs CSV of its records and the
# per-phase breakdown of every edit's time (reports/edit_phases.md).
TABLE1_REPORTS = multiext("reports/table1", ".md", ".tex", ".csv") + [
    TABLE1_RUNS_CSV, "reports/edit_phases.md"]
TRANSFER_RECORDS = expand("results/runs/table1/{backbone}/{method}/seed{seed}.json",
                          backbone=BACKBONES, method=[TUNED_METHOD], seed=SEEDS
                          ) + REFERENCE_RECORDS
TRANSFER_REPORTS = multiext("reports/transfer", ".md", ".tex", ".csv")


rule tune_timerome:
    input:
        corpus_marker(),
        lambda w: finetuned_path(w.backbone),
    output:
        "results/tuning/{backbone}/seed{seed}.json",
    params:
        **tracked_job(lambda w, output: job_arg({
            "backbone": w.backbone, "backbone_entry": backbone_entry(w.backbone),
            "backbone_path": finetuned_path(w.backbone), "tofu_dir": TOFU_DIR,
            "validation_split": VALIDATION_SPLIT,
            "retain_split": DATA["retain_split"], "forget_split": DATA["forget_split"],
            "retain_eval_size": int(DATA["retain_eval_size"]),
            "retain_train_size": int(DATA["retain_train_size"]),
            "eval_seed": int(DATA["eval_seed"]), "seed": int(w.seed),
            "grid": TUNING.get("grid", {}), "max_retain_drop": TUNING["max_retain_drop"],
            "fact_counts": TUNING["fact_counts"], "groups": TUNING["groups"],
            "max_retain_gate_opens": TUNING.get("max_retain_gate_opens"),
            "extrapolate_to": max([*FACT_COUNTS, int(SEQUENTIAL["n_facts"])]),
            "on_no_safe_point": TUNING["on_no_safe_point"],
            "method_config": METHOD_CONFIG.get(TUNED_METHOD, {}),
            "out": output[0], "threads": JOB_THREADS})),
    threads: JOB_THREADS
    resources:
        **rule_resources(config, "tune", JOB_THREADS),
    log:
        "results/logs/tuning/{backbone}/seed{seed}.log",
    benchmark:
        "results/benchmarks/tuning/{backbone}/seed{seed}.tsv"
    shell:
        "{PYTHON} -m harness.jobs.tune --job {params.job:q} > {log} 2>&1"


rule run_table1:
    input:
        corpus_marker(),
        lambda w: model_inputs(w.backbone, with_retain=True),
        tuned_input,
        matched_input("table1"),
        statistics_input("table1"),
    output:
        "results/runs/table1/{backbone}/{method}/seed{seed}.json",
    params:
        **tracked_job(lambda w, output: method_job(w, "table1", output[0])),
    threads: JOB_THREADS
    resources:
        **rule_resources(config, "edit", JOB_THREADS),
    log:
        "results/logs/table1/{backbone}/{method}/seed{seed}.log",
    benchmark:
        "results/benchmarks/table1/{backbone}/{method}/seed{seed}.tsv"
    shell:
        "{PYTHON} -m harness.jobs.run_method --job {params.job:q} > {log} 2>&1"


def reference_inputs(wildcards):
    """The models of a reference job; a retain-model reference of a backbone without a retain
    model is a named error when the DAG is planned."""
    if method_info(wildcards.reference).on_retain_model and not has_retain_model(
            wildcards.backbone):
        raise WorkflowError(f"{wildcards.reference}: backbone '{wildcards.backbone}' has no "
                            "retain model (config retain_model / retain_checkpoint)")
    return model_inputs(wildcards.backbone, with_retain=True)


rule run_reference:
    input:
        corpus_marker(),
        reference_inputs,
    output:
        "results/runs/table1/{backbone}/{reference}/seed{seed}.json",
    wildcard_constraints:
        reference=_alternation(REFERENCE_METHODS),
    params:
        **tracked_job(lambda w, output: method_job(SimpleNamespace(
            backbone=w.backbone, method=w.reference, seed=w.seed), "table1", output[0])),
    threads: JOB_THREADS
    resources:
        **rule_resources(config, "edit", JOB_THREADS),
    log:
        "results/logs/table1/{backbone}/{reference}/seed{seed}.log",
    benchmark:
        "results/benchmarks/table1/{backbone}/{reference}/seed{seed}.tsv"
    shell:
        "{PYTHON} -m harness.jobs.run_method --job {params.job:q} > {log} 2>&1"


rule aggregate_table1:
    input:
        TABLE1_RECORDS + REFERENCE_RECORDS,
    output:
        TABLE1_RUNS_CSV,
    resources:
        **light_resources(config),
    log:
        "results/logs/aggregate_table1.log",
    benchmark:
        "results/benchmarks/aggregate_table1.tsv"
    shell:
        "{PYTHON} -m harness.results.aggregate --out {output} {input} > {log} 2>&1"


rule table1_report:
    input:
        TABLE1_RECORDS + REFERENCE_RECORDS,
    output:
        md=report("reports/table1.md", category="Table 1", caption="../report/table1.rst"),
        tex="reports/table1.tex",
        csv=report("reports/table1.csv", category="Table 1", caption="../report/table1.rst"),
    params:
        baselines=" ".join(GRADIENT_BASELINES) or "none",
    resources:
        **light_resources(config),
    log:
        "results/logs/table1_report.log",
    benchmark:
        "results/benchmarks/table1_report.tsv"
    shell:
        "{PYTHON} -m harness.reports table1 --records {input} --out reports/table1 "
        "--gradient-baselines {params.baselines} --backbones {BACKBONES} --methods {METHODS} "
        "> {log} 2>&1"


rule edit_phases_report:
    input:
        TABLE1_RECORDS,
    output:
        report("reports/edit_phases.md", category="Table 1", caption="../report/edit_phases.rst"),
    resources:
        **light_resources(config),
    log:
        "results/logs/edit_phases_report.log",
    benchmark:
        "results/benchmarks/edit_phases_report.tsv"
    shell:
        "{PYTHON} -m harness.reports.edit_phases --records {input} --out {output} > {log} 2>&1"


rule transfer_report:
    input:
        runs=TRANSFER_RECORDS,
        tuned=[tuned_path()] if TUNING_ENABLED else [],
    output:
        md=report("reports/transfer.md", category="Transfer", caption="../report/transfer.rst"),
        tex="reports/transfer.tex",
        csv="reports/transfer.csv",
    params:
        source=TUNING_BACKBONE,
        tuned=lambda w, input: f"--tuned {input.tuned[0]}" if input.tuned else "",
    resources:
        **light_resources(config),
    log:
        "results/logs/transfer_report.log",
    benchmark:
        "results/benchmarks/transfer_report.tsv"
    shell:
        "{PYTHON} -m harness.reports transfer --records {input.runs} --out reports/transfer "
        "--source {params.source} {params.tuned} > {log} 2>&1"


rule reproduce_table1:
    input:
        TABLE1_REPORTS,


rule transfer_table:
    input:
        TRANSFER_REPORTS,
