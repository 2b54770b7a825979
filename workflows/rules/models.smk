# Fine-tuned backbones and retain-only models: rule outputs, cached across runs.


# Keys that do not change the trained weights (toggling them must not retrain the model).
NOT_TRAINING_KEYS = ("retain_model", "retain_checkpoint", "checkpoint")


def finetune_job(wildcards, output, exclude):
    entry = {k: v for k, v in backbone_entry(wildcards.backbone).items()
             if k not in NOT_TRAINING_KEYS}
    return job_arg({"backbone": wildcards.backbone, "backbone_entry": entry,
                    "tofu_dir": TOFU_DIR, "out": str(output[0]),
                    "exclude_splits": exclude, "threads": FT_THREADS})


rule finetune_backbone:
    input:
        corpus_marker(),
    output:
        directory("models/{backbone}/finetuned"),
    params:
        job=lambda w, output: finetune_job(w, output, []),
    threads: FT_THREADS
    log:
        "results/logs/finetune/{backbone}.log",
    benchmark:
        "results/benchmarks/finetune/{backbone}.tsv"
    shell:
        "{PYTHON} -m harness.jobs.finetune_backbone --job {params.job:q} > {log} 2>&1"


rule retain_model:
    input:
        corpus_marker(),
    output:
        directory("models/{backbone}/retain"),
    params:
        job=lambda w, output: finetune_job(w, output, [DATA["forget_split"]]),
    threads: FT_THREADS
    log:
        "results/logs/retain/{backbone}.log",
    benchmark:
        "results/benchmarks/retain/{backbone}.tsv"
    shell:
        "{PYTHON} -m harness.jobs.finetune_backbone --job {params.job:q} > {log} 2>&1"
