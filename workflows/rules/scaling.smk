# Scaling with the number of forgotten facts: forget = the last n records of `full`.

SCALING_RECORDS = expand(
    "results/runs/scaling/{backbone}/{method}/n{n_facts}/seed{seed}.json",
    backbone=[SCALING_BACKBONE], method=SCALING_METHODS, n_facts=FACT_COUNTS, seed=SEEDS)
SCALING_FIGURE_NAMES = ["scaling_wallclock", "scaling_memory", "scaling_delta"]
SCALING_RUNS_CSV = "results/scaling.csv"  # the runs frame of SCALING_RECORDS, for people to read
# What the scaling experiment publishes: its figures and the runs CSV of its records.
SCALING_FIGURES = expand("reports/figures/{name}.{ext}", name=SCALING_FIGURE_NAMES,
                         ext=["png", "pdf"]) + [SCALING_RUNS_CSV]


rule run_scaling:
    input:
        corpus_marker(),
        lambda w: model_inputs(w.backbone, with_retain=False),
        tuned_input,
        matched_input("scaling"),
        statistics_input("scaling"),
    output:
        "results/runs/scaling/{backbone}/{method}/n{n_facts}/seed{seed}.json",
    params:
        **tracked_job(lambda w, output: method_job(w, "scaling", output[0], n_facts=int(w.n_facts))),
    threads: JOB_THREADS
    resources:
        **rule_resources(config, "edit", JOB_THREADS),
    log:
        "results/logs/scaling/{backbone}/{method}/n{n_facts}/seed{seed}.log",
    benchmark:
        "results/benchmarks/scaling/{backbone}/{method}/n{n_facts}/seed{seed}.tsv"
    shell:
        "{PYTHON} -m harness.jobs.run_method --job {params.job:q} > {log} 2>&1"


rule aggregate_scaling:
    input:
        SCALING_RECORDS,
    output:
        SCALING_RUNS_CSV,
    resources:
        **light_resources(config),
    log:
        "results/logs/aggregate_scaling.log",
    benchmark:
        "results/benchmarks/aggregate_scaling.tsv"
    shell:
        "{PYTHON} -m harness.results.aggregate --out {output} {input} > {log} 2>&1"


rule scaling_plots:
    input:
        SCALING_RECORDS,
    output:
        report(expand("reports/figures/{name}.png", name=SCALING_FIGURE_NAMES),
               category="Scaling", caption="../report/scaling.rst"),
        expand("reports/figures/{name}.pdf", name=SCALING_FIGURE_NAMES),
    resources:
        **light_resources(config),
    log:
        "results/logs/scaling_plots.log",
    benchmark:
        "results/benchmarks/scaling_plots.tsv"
    shell:
        "{PYTHON} -m harness.reports scaling --records {input} --out reports/figures > {log} 2>&1"


rule scaling_figures:
    input:
        SCALING_FIGURES,
