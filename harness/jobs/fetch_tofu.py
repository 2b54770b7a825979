"""Download the TOFU splits a config needs from the hub into a TOFU-format directory.

`python -m harness.jobs.fetch_tofu --job '{"out": DIR, "splits": [...]}'` (a FetchTofuJob).
Only run by the `fetch_tofu` rule when `data.source: tofu_hub` (never in the default run).
Exit status: 0 written; 2 bad job (a field named, or a split the hub does not have).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from harness.data import load_hub_split
from harness.data.hub import HUB_CONFIGS, HUB_REPO
from harness.data.prepare import fact_row
from harness.atomic import write_json_atomic
from harness.jobs.spec import EXIT_BAD_JOB, JobSpec, read_job


@dataclass
class FetchTofuJob(JobSpec):
    """One download job (rule fetch_tofu)."""

    out: str  # TOFU-format directory to write
    splits: list[str]  # hub configs to download (HUB_CONFIGS)


def main(argv: list[str] | None = None) -> int:
    args = read_job(FetchTofuJob, argv, "python -m harness.jobs.fetch_tofu", __doc__)
    missing = [s for s in args.splits if s not in HUB_CONFIGS]
    if missing:  # before any download: TOFU has no validation/holdout config on the hub
        print(f"error: {HUB_REPO} has no config(s) {', '.join(missing)} on the hub; "
              f"known: {', '.join(HUB_CONFIGS)}", file=sys.stderr)
        return EXIT_BAD_JOB
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    counts = {}
    for split in args.splits:
        facts = load_hub_split(split)
        text = "".join(json.dumps(fact_row(f, with_ids=False), ensure_ascii=False) + "\n" for f in facts)
        tmp = out / f".{split}.json.tmp"
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(out / f"{split}.json")
        counts[split] = len(facts)
    write_json_atomic(out / "manifest.json", {"source": "hf://locuslab/TOFU", "counts": counts})
    return 0


if __name__ == "__main__":
    sys.exit(main())
