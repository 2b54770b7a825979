"""Optional loader of TOFU splits from the Hugging Face hub (`locuslab/TOFU`)."""

from __future__ import annotations

from harness.data.fact import Fact
from harness.data.reader import build_facts
from harness.data.records import validate_records
from harness.data.splits import TOFU_FACTS_PER_AUTHOR, split_kind

HUB_REPO = "locuslab/TOFU"
# Configs of locuslab/TOFU on the hub (its dataset card). TOFU has no `validation` config:
# the workflow derives that split from retain authors (harness.data.prepare).
HUB_CONFIGS: tuple[str, ...] = (
    "full", "forget01", "forget05", "forget10", "retain90", "retain95", "retain99",
    "forget01_perturbed", "forget05_perturbed", "forget10_perturbed", "retain_perturbed",
    "real_authors_perturbed", "world_facts_perturbed",
)


def load_hub_split(
    name: str, cache_dir: str | None = None, facts_per_author: int = TOFU_FACTS_PER_AUTHOR
) -> list[Fact]:
    """Download one TOFU config and convert it through the local reader's validation path.

    Row i is reported as line i+1 of `hf://locuslab/TOFU/<name>`. Author ids of rows
    without `author_id` assume the real TOFU layout (4000 records in `full`).
    """
    kind = split_kind(name)
    if name not in HUB_CONFIGS:
        raise ValueError(f"{HUB_REPO} has no config {name!r} on the hub (it has: "
                         f"{', '.join(HUB_CONFIGS)})")
    import datasets  # lazy: only needed when the hub is actually used

    ds = datasets.load_dataset(HUB_REPO, name, cache_dir=cache_dir)
    if isinstance(ds, datasets.DatasetDict):
        if "train" in ds:
            ds = ds["train"]
        elif len(ds) == 1:
            ds = next(iter(ds.values()))
        else:
            raise ValueError(f"{HUB_REPO}/{name}: expected one split, got {list(ds)}")
    path = f"hf://{HUB_REPO}/{name}"
    records = validate_records(((i + 1, dict(row)) for i, row in enumerate(ds)), kind, path)
    return build_facts({name: records}, facts_per_author=facts_per_author)[name]
