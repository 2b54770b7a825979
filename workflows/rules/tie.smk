# Temporal Indirect Effect heatmaps (harness/timerome/figure.py) on the forget facts, one
# per backbone, each with a JSON summary next to it (harness/jobs/tie.py: corruption
# effect, chosen TIE, median |TIE|, their ratio, flagged fraction, issue 13's bars).
#
# `tie.backbones`: a list of configured backbones, or "all" = every backbone in `backbones`,
# in config order.


TIE_FIGURES = expand("reports/figures/tie_{backbone}.{ext}", backbone=TIE_BACKBONES,
                     ext=["png", "pdf", "json"])


rule tie_heatmap:
    input:
        corpus_marker(),
        lambda w: finetuned_path(w.backbone),
    output:
        png=report("reports/figures/tie_{backbone}.png", category="TIE",
                   subcategory="{backbone}", labels={"backbone": "{backbone}"},
                   caption="../report/tie.rst"),
        pdf="reports/figures/tie_{backbone}.pdf",
        summary="reports/figures/tie_{backbone}.json",
    params:
        **tracked_job(lambda w, output: job_arg({
            "backbone": w.backbone, "backbone_entry": backbone_entry(w.backbone),
            "backbone_path": finetuned_path(w.backbone), "tofu_dir": TOFU_DIR,
            "forget_split": DATA["forget_split"], "n_facts": int(TIE["n_facts"]),
            "method_config": METHOD_CONFIG.get(TUNED_METHOD, {}),
            "out": output.png[: -len(".png")], "threads": JOB_THREADS})),
    threads: JOB_THREADS
    resources:
        **rule_resources(config, "tie", JOB_THREADS),
    log:
        "results/logs/tie/{backbone}.log",
    benchmark:
        "results/benchmarks/tie/{backbone}.tsv"
    shell:
        "{PYTHON} -m harness.jobs.tie --job {params.job:q} > {log} 2>&1"


rule tie_figure:
    input:
        TIE_FIGURES,
