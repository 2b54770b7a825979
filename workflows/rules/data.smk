# The corpus: generated (synthetic), downloaded (tofu_hub) or given (tofu_dir: no rule).

SYN = DATA.get("synthetic", {})
HUB_SPLITS = sorted({"full", DATA["forget_split"], DATA["retain_split"],
                     DATA["forget_split"] + "_perturbed", "retain_perturbed",
                     DATA.get("validation_split", "validation"), "real_authors_perturbed",
                     "world_facts_perturbed", "holdout" + DATA["forget_split"][-2:]})

if DATA["source"] == "synthetic":

    rule synthetic_corpus:
        output:
            f"{TOFU_DIR}/manifest.json",
        params:
            authors=SYN.get("authors", 100),
            per_author=SYN.get("facts_per_author", 10),
            seed=SYN.get("seed", 0),
        log:
            "results/logs/synthetic_corpus.log",
        benchmark:
            "results/benchmarks/synthetic_corpus.tsv"
        shell:
            "{PYTHON} -m harness.data synth --out {TOFU_DIR} --authors {params.authors} "
            "--facts-per-author {params.per_author} --seed {params.seed} > {log} 2>&1"

elif DATA["source"] == "tofu_hub":

    rule fetch_tofu:
        output:
            f"{TOFU_DIR}/manifest.json",
        params:
            splits=" ".join(HUB_SPLITS),
        log:
            "results/logs/fetch_tofu.log",
        benchmark:
            "results/benchmarks/fetch_tofu.tsv"
        shell:
            "{PYTHON} -m harness.jobs.fetch_tofu --out {TOFU_DIR} --splits {params.splits} "
            "> {log} 2>&1"
