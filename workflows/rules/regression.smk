# Speed / memory regression check against reports/baseline_speedups.json.

REGRESSION = config.get("regression", {})


rule regression_check:
    input:
        runs="results/runs.csv",
        baseline=REGRESSION.get("baseline", "reports/baseline_speedups.json"),
    output:
        "results/regression.txt",
    params:
        tolerance=REGRESSION.get("tolerance", 0.15),
        baselines=" ".join(GRADIENT_BASELINES) or "none",
    log:
        "results/logs/regression_check.log",
    benchmark:
        "results/benchmarks/regression_check.tsv"
    shell:
        "{PYTHON} -m harness.regress {input.runs} --baseline {input.baseline} "
        "--tolerance {params.tolerance} --gradient-baselines {params.baselines} "
        "--out {output} 2>&1 | tee {log}; exit ${{PIPESTATUS[0]}}"
