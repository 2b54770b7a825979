# Sequential insertion: facts edited in one at a time, retain log-prob after each.

from harness.methods.registry import method_info, sequential_methods


def _sequential_method():
    """Config `sequential.method`, else the registry's one method that inserts facts one at
    a time (MethodInfo.sequential); either way one that does."""
    able = sequential_methods()
    name = SEQUENTIAL.get("method")
    if name is None:
        if len(able) != 1:
            raise WorkflowError(f"invalid config: sequential.method: the method registry names "
                                f"{len(able)} methods that insert facts one at a time "
                                f"({', '.join(able) or 'none'}); name one")
        return able[0]
    if name not in able:
        raise WorkflowError(f"invalid config: sequential.method: '{name}' does not insert "
                            f"facts one at a time; methods that do: {', '.join(able) or 'none'}")
    return name


SEQUENTIAL_METHOD = _sequential_method()

SEQUENTIAL_RECORDS = expand("results/runs/sequential/{backbone}/seed{seed}.json",
                            backbone=[SEQUENTIAL_BACKBONE], seed=SEEDS)
SEQUENTIAL_FIGURES = multiext("reports/figures/sequential_retain", ".png", ".pdf")


rule run_sequential:
    input:
        corpus_marker(),
        lambda w: finetuned_path(w.backbone),
        [tuned_path()] if is_tuned(SEQUENTIAL_METHOD) else [],
    output:
        "results/runs/sequential/{backbone}/seed{seed}.json",
    params:
        **tracked_job(lambda w, output: job_arg({
            "method": SEQUENTIAL_METHOD,
            "backbone": w.backbone, "backbone_entry": backbone_entry(w.backbone),
            "backbone_path": finetuned_path(w.backbone), "tofu_dir": TOFU_DIR,
            "n_facts": int(SEQUENTIAL["n_facts"]), "eval_every": int(SEQUENTIAL["eval_every"]),
            "retain_eval_size": int(DATA["retain_eval_size"]),
            "retain_train_size": int(DATA["retain_train_size"]),
            "eval_seed": int(DATA["eval_seed"]), "seed": int(w.seed),
            "estimator": config["estimator"], "batch_size": int(EVAL["batch_size"]),
            "method_config": METHOD_CONFIG.get(SEQUENTIAL_METHOD, {}),
            "tuned_config": tuned_path() if is_tuned(SEQUENTIAL_METHOD) else None,
            "out": output[0], "threads": JOB_THREADS,
            "config_hash": config_hash(SEQUENTIAL, DATA, w.backbone)})),
    threads: JOB_THREADS
    resources:
        **rule_resources(config, "sequential", JOB_THREADS),
    log:
        "results/logs/sequential/{backbone}/seed{seed}.log",
    benchmark:
        "results/benchmarks/sequential/{backbone}/seed{seed}.tsv"
    shell:
        "{PYTHON} -m harness.jobs.sequential --job {params.job:q} > {log} 2>&1"


rule sequential_plot:
    input:
        SEQUENTIAL_RECORDS,
    output:
        png=report("reports/figures/sequential_retain.png", category="Sequential",
                   caption="../report/sequential.rst"),
        pdf="reports/figures/sequential_retain.pdf",
    resources:
        **light_resources(config),
    log:
        "results/logs/sequential_plot.log",
    benchmark:
        "results/benchmarks/sequential_plot.tsv"
    shell:
        "{PYTHON} -m harness.reports sequential --records {input} "
        "--out reports/figures/sequential_retain > {log} 2>&1"


rule sequential_curve:
    input:
        SEQUENTIAL_FIGURES,
