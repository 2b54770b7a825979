# Speed / memory regression check against reports/baseline_speedups.json.

REGRESSION = config["regression"]


rule regression_check:
    input:
        records=ALL_RECORDS,
        baseline=REGRESSION["baseline"],
        # not read by the check (it reads the records): the nightly keeps this CSV of the
        # same records next to the check's report
        runs="results/runs.csv",
    output:
        "results/regression.txt",
    params:
        tolerance=REGRESSION["tolerance"],
        baselines=" ".join(GRADIENT_BASELINES) or "none",
    resources:
        **light_resources(config),
    log:
        "results/logs/regression_check.log",
    benchmark:
        "results/benchmarks/regression_check.tsv"
    shell:
        "{PYTHON} -m harness.regress {input.records} --baseline {input.baseline} "
        "--tolerance {params.tolerance} --gradient-baselines {params.baselines} "
        "--out {output} 2>&1 | tee {log}; exit ${{PIPESTATUS[0]}}"
