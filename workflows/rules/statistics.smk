# Per-backbone statistics computed once (harness/backbone_statistics.py): one job per
# backbone, experiment and seed computes the statistics of every method of the experiment
# that declares them (the registry's MethodInfo.backbone_statistics), loading the model
# once; every edit job of that backbone and method loads its file (common.smk
# statistics_input) instead of computing them inside its timed edit.


def statistics_job(wildcards, experiment, methods, output):
    """The StatisticsJob: each method's MethodJob as its edit jobs get it (same retain
    facts, seed and config), `out` its statistics file."""
    n_facts = FACT_COUNTS[-1] if experiment == "scaling" else None
    jobs = [json.loads(method_job(SimpleNamespace(backbone=wildcards.backbone,
                                                  seed=wildcards.seed, method=method),
                                  experiment, path, n_facts=n_facts, statistics=False))
            for method, path in zip(methods, output)]
    return job_arg({"methods": jobs})


for _experiment, _methods in STATISTICS_METHODS.items():
    if not _methods:
        continue

    rule:
        name:
            f"backbone_statistics_{_experiment}"
        input:
            corpus_marker(),
            lambda w: finetuned_path(w.backbone),
        output:
            [f"results/statistics/{_experiment}/{{backbone}}/{method}/seed{{seed}}.safetensors"
             for method in _methods],
        params:
            **tracked_job(lambda w, output, experiment=_experiment, methods=_methods: statistics_job(
                w, experiment, methods, output)),
        threads: JOB_THREADS
        resources:
            **rule_resources(config, "statistics", JOB_THREADS),
        log:
            f"results/logs/statistics/{_experiment}/{{backbone}}/seed{{seed}}.log",
        benchmark:
            f"results/benchmarks/statistics/{_experiment}/{{backbone}}/seed{{seed}}.tsv"
        shell:
            "{PYTHON} -m harness.jobs.backbone_statistics --job {params.job:q} > {log} 2>&1"
