# The corpus: generated (synthetic), downloaded (tofu_hub) or given (tofu_dir: no rule),
# then prepared (rule prepare_corpus) into TOFU_DIR, the directory every job reads.

from harness.data.errors import DataError
from harness.data.prepare import check_split_files, required_splits

SYN = DATA["synthetic"]  # filled from schema.json (default {} and its keys' defaults)
REQUIRED_SPLITS = required_splits(DATA["forget_split"], DATA["retain_split"])
# Configs locuslab/TOFU has on the hub: no validation (derived by prepare_corpus) and no
# holdout split is fetched (nothing in the workflow reads one).
HUB_SPLITS = sorted(set(REQUIRED_SPLITS))

if DATA["source"] == "synthetic":
    SOURCE_INPUTS = [f"{SOURCE_DIR}/manifest.json"]
    FACTS_PER_AUTHOR = int(SYN["facts_per_author"])

    rule synthetic_corpus:
        output:
            f"{SOURCE_DIR}/manifest.json",
        params:
            authors=SYN["authors"],
            per_author=SYN["facts_per_author"],
            seed=SYN["seed"],
            answer_style=SYN["answer_style"],
        resources:
            **light_resources(config),
        log:
            "results/logs/synthetic_corpus.log",
        benchmark:
            "results/benchmarks/synthetic_corpus.tsv"
        shell:
            "{PYTHON} -m harness.data synth --out {SOURCE_DIR} --authors {params.authors} "
            "--facts-per-author {params.per_author} --seed {params.seed} "
            "--answer-style {params.answer_style} > {log} 2>&1"

elif DATA["source"] == "tofu_hub":
    SOURCE_INPUTS = [f"{SOURCE_DIR}/manifest.json"]
    FACTS_PER_AUTHOR = 20

    rule fetch_tofu:
        output:
            f"{SOURCE_DIR}/manifest.json",
        params:
            job=job_arg({"out": SOURCE_DIR, "splits": HUB_SPLITS}),
        resources:
            **light_resources(config),
        log:
            "results/logs/fetch_tofu.log",
        benchmark:
            "results/benchmarks/fetch_tofu.tsv"
        shell:
            "{PYTHON} -m harness.jobs.fetch_tofu --job {params.job:q} > {log} 2>&1"

else:  # tofu_dir: the files exist before the run, so a missing or empty one fails the plan
    FACTS_PER_AUTHOR = 20
    try:
        check_split_files(SOURCE_DIR, REQUIRED_SPLITS, optional=[VALIDATION_SPLIT])
    except (FileNotFoundError, DataError) as exc:
        raise WorkflowError(f"data.tofu_dir: {exc}") from None
    SOURCE_INPUTS = [f"{SOURCE_DIR}/{s}.json" for s in REQUIRED_SPLITS]
    if os.path.isfile(f"{SOURCE_DIR}/{VALIDATION_SPLIT}.json"):
        SOURCE_INPUTS.append(f"{SOURCE_DIR}/{VALIDATION_SPLIT}.json")


rule prepare_corpus:
    input:
        SOURCE_INPUTS,
    output:
        corpus_marker(),
    params:
        forget=DATA["forget_split"],
        retain=DATA["retain_split"],
        authors=f"--authors {int(SUBSET_AUTHORS)}" if SUBSET_AUTHORS is not None else "",
    resources:
        **light_resources(config),
    log:
        "results/logs/prepare_corpus.log",
    benchmark:
        "results/benchmarks/prepare_corpus.tsv"
    shell:
        "{PYTHON} -m harness.data prepare --source {SOURCE_DIR} --out {TOFU_DIR} "
        "--forget-split {params.forget} --retain-split {params.retain} "
        "--validation-split {VALIDATION_SPLIT} --validation-authors {VALIDATION_AUTHORS} "
        "--seed {SPLIT_SEED} --facts-per-author {FACTS_PER_AUTHOR} {params.authors} "
        "> {log} 2>&1"
