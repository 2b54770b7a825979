# Fine-tuned backbones and retain-only models: rule outputs, cached across runs.

import shutil
from pathlib import Path

from harness.artefacts import (CONTENT_FILE, VERIFY_ENV, VERIFY_HASH_MAX_BYTES, DamagedArtefact,
                               verify_manifest)


def set_aside_damaged_checkpoints(backbones, kinds=("finetuned", "retain")):
    """A checkpoint this workflow wrote that no longer matches its content manifest (a file
    edited or truncated since) is moved to `<kind>.damaged` when the DAG is planned, so
    Snakemake sees the output missing and reruns its fine-tune. Files above
    VERIFY_HASH_MAX_BYTES are checked by size only; HARNESS_VERIFY_CONTENT=off skips this."""
    if os.environ.get(VERIFY_ENV, "").strip().lower() == "off":
        return
    for backbone in backbones:
        for kind in kinds:
            folder = Path("models") / backbone / kind
            if not (folder / CONTENT_FILE).is_file():
                continue
            try:
                verify_manifest(folder, VERIFY_HASH_MAX_BYTES)
            except DamagedArtefact as exc:
                aside = folder.with_name(f"{kind}.damaged")
                shutil.rmtree(aside, ignore_errors=True)
                os.replace(folder, aside)
                print(f"checkpoint {folder} is damaged ({exc}); moved to {aside}: its "
                      f"fine-tune reruns", file=sys.stderr)


set_aside_damaged_checkpoints(BACKBONES)


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
        **tracked_job(lambda w, output: finetune_job(w, output, [])),
    threads: FT_THREADS
    resources:
        **rule_resources(config, "finetune", FT_THREADS),
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
        **tracked_job(lambda w, output: finetune_job(w, output, [DATA["forget_split"]])),
    threads: FT_THREADS
    resources:
        **rule_resources(config, "finetune", FT_THREADS),
    log:
        "results/logs/retain/{backbone}.log",
    benchmark:
        "results/benchmarks/retain/{backbone}.tsv"
    shell:
        "{PYTHON} -m harness.jobs.finetune_backbone --job {params.job:q} > {log} 2>&1"
