# Table 1 (every method on every backbone, forget split), TimeROME-DLM tuning, transfer.

TABLE1_RECORDS = expand("results/runs/table1/{backbone}/{method}/seed{seed}.json",
                        backbone=BACKBONES, method=METHODS, seed=SEEDS)
TABLE1_REPORTS = multiext("reports/table1", ".md", ".tex", ".csv")
TRANSFER_RECORDS = expand("results/runs/table1/{backbone}/timerome/seed{seed}.json",
                          backbone=BACKBONES, seed=SEEDS)
TRANSFER_REPORTS = multiext("reports/transfer", ".md", ".tex", ".csv")


rule tune_timerome:
    input:
        corpus_marker(),
        lambda w: finetuned_path(w.backbone),
    output:
        "results/tuning/{backbone}/seed{seed}.json",
    params:
        job=lambda w, output: job_arg({
            "backbone": w.backbone, "backbone_entry": backbone_entry(w.backbone),
            "backbone_path": finetuned_path(w.backbone), "tofu_dir": TOFU_DIR,
            "validation_split": VALIDATION_SPLIT,
            "retain_split": DATA["retain_split"], "forget_split": DATA["forget_split"],
            "retain_eval_size": int(DATA.get("retain_eval_size", 40)),
            "retain_train_size": int(DATA.get("retain_train_size", 400)),
            "eval_seed": int(DATA.get("eval_seed", 0)), "seed": int(w.seed),
            "estimator": config["estimator"], "grid": TUNING.get("grid", {}),
            "max_retain_drop": TUNING.get("max_retain_drop", 1.0),
            # Passed only when set: configs without it keep their job parameters (no rerun).
            **({"on_no_safe_point": TUNING["on_no_safe_point"]}
               if "on_no_safe_point" in TUNING else {}),
            "method_config": config.get("method_config", {}).get("timerome", {}),
            "out": output[0], "threads": JOB_THREADS}),
    threads: JOB_THREADS
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
    output:
        "results/runs/table1/{backbone}/{method}/seed{seed}.json",
    params:
        job=lambda w, output: method_job(w, "table1", output[0]),
    threads: JOB_THREADS
    log:
        "results/logs/table1/{backbone}/{method}/seed{seed}.log",
    benchmark:
        "results/benchmarks/table1/{backbone}/{method}/seed{seed}.tsv"
    shell:
        "{PYTHON} -m harness.jobs.run_method --job {params.job:q} > {log} 2>&1"


rule aggregate_table1:
    input:
        TABLE1_RECORDS,
    output:
        "results/table1.csv",
    log:
        "results/logs/aggregate_table1.log",
    benchmark:
        "results/benchmarks/aggregate_table1.tsv"
    shell:
        "{PYTHON} -m harness.results.aggregate --out {output} {input} > {log} 2>&1"


rule table1_report:
    input:
        "results/table1.csv",
    output:
        md=report("reports/table1.md", category="Table 1", caption="../report/table1.rst"),
        tex="reports/table1.tex",
        csv=report("reports/table1.csv", category="Table 1", caption="../report/table1.rst"),
    params:
        baselines=" ".join(GRADIENT_BASELINES) or "none",
    log:
        "results/logs/table1_report.log",
    benchmark:
        "results/benchmarks/table1_report.tsv"
    shell:
        "{PYTHON} -m harness.reports table1 --runs {input} --out reports/table1 "
        "--gradient-baselines {params.baselines} --backbones {BACKBONES} --methods {METHODS} "
        "> {log} 2>&1"


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
