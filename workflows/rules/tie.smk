# Temporal Indirect Effect heatmaps (harness/timerome/figure.py) on the forget facts.

TIE_FIGURES = expand("reports/figures/tie_{backbone}.{ext}", backbone=TIE_BACKBONES,
                     ext=["png", "pdf"])


rule tie_heatmap:
    input:
        corpus_marker(),
        lambda w: finetuned_path(w.backbone),
    output:
        png=report("reports/figures/tie_{backbone}.png", category="TIE",
                   caption="../report/tie.rst"),
        pdf="reports/figures/tie_{backbone}.pdf",
    params:
        job=lambda w, output: job_arg({
            "backbone": w.backbone, "backbone_entry": backbone_entry(w.backbone),
            "backbone_path": finetuned_path(w.backbone), "tofu_dir": TOFU_DIR,
            "forget_split": DATA["forget_split"], "n_facts": int(TIE.get("n_facts", 4)),
            "method_config": config.get("method_config", {}).get("timerome", {}),
            "out": output.png[: -len(".png")], "threads": JOB_THREADS}),
    threads: JOB_THREADS
    log:
        "results/logs/tie/{backbone}.log",
    benchmark:
        "results/benchmarks/tie/{backbone}.tsv"
    shell:
        "{PYTHON} -m harness.jobs.tie --job {params.job:q} > {log} 2>&1"


rule tie_figure:
    input:
        TIE_FIGURES,
