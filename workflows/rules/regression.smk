# Speed / memory regression check against the baseline file (config regression.baseline).
#
# Repeats are the config's seeds: every checked entry is the median over its seeds, and
# regression.repeats (1 by default, 3 on the GPU configs) says how many it must have.
# harness.regress exits 0 ok, 1 regression, 2 bad input, 3 bug, 4 no baseline (the current
# values were recorded as the baseline of their environment). The job fails on 1, 2 and 3;
# on 4 it succeeds (a first night on a new GPU, driver, torch, CUDA or dtype is not a
# failure). results/regression.txt ends with `outcome: <outcome> (exit N)` in every case
# (the nightly reads it; --keep-incomplete keeps it when the job fails).

REGRESSION = config["regression"]

if len(SEEDS) < int(REGRESSION["repeats"]):
    raise WorkflowError(
        f"invalid config at 'regression.repeats': {REGRESSION['repeats']} repeats asked, but "
        f"'seeds' has {len(SEEDS)} ({', '.join(map(str, SEEDS))}); the repeats are the seeds")


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
        repeats=int(REGRESSION["repeats"]),
        baselines=" ".join(GRADIENT_BASELINES) or "none",
    resources:
        **light_resources(config),
    log:
        "results/logs/regression_check.log",
    benchmark:
        "results/benchmarks/regression_check.tsv"
    # snakemake's bash runs with -e and pipefail: the check's status is caught, not exited on
    shell:
        "{PYTHON} -m harness.regress {input.records} --baseline {input.baseline} "
        "--tolerance {params.tolerance} --repeats {params.repeats} "
        "--gradient-baselines {params.baselines} --out {output} 2>&1 | tee {log} "
        "|| status=${{PIPESTATUS[0]}}; "
        "if [ ${{status:-0}} -eq 4 ]; then status=0; fi; exit ${{status:-0}}"
