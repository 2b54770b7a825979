# All records in one CSV (for people and the nightly to keep; no rule reads it back: every
# table and the regression check read the records), and the HTML report (`snakemake --report`).

ALL_RECORDS = TABLE1_RECORDS + SCALING_RECORDS + SEQUENTIAL_RECORDS


rule aggregate_runs:
    input:
        ALL_RECORDS,
    output:
        "results/runs.csv",
    resources:
        **light_resources(config),
    log:
        "results/logs/aggregate_runs.log",
    benchmark:
        "results/benchmarks/aggregate_runs.tsv"
    shell:
        "{PYTHON} -m harness.results.aggregate --out {output} {input} > {log} 2>&1"


rule report:
    input:
        TABLE1_REPORTS,
        TRANSFER_REPORTS,
        SCALING_FIGURES,
        SEQUENTIAL_FIGURES,
        TIE_FIGURES,
    output:
        "reports/report.html",
    resources:
        **light_resources(config),
    log:
        "results/logs/report.log",
    benchmark:
        "results/benchmarks/report.tsv"
    run:
        import yaml

        resolved = "results/config.resolved.yaml"
        with open(resolved, "w") as handle:
            yaml.safe_dump(json.loads(json.dumps(config)), handle, sort_keys=False)
        shell("{PYTHON} -m snakemake --nolock --cores 1 --snakefile {workflow.main_snakefile} "
              "--configfile {resolved} --report {output} > {log} 2>&1")
