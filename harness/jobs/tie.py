"""TIE heatmap of one backbone: trace the first `n_facts` forget facts (positions in a
window around the subject end) and draw `harness.timerome.figure.tie_figure`."""

from __future__ import annotations

import argparse
import json
import sys

from harness.data import load_split
from harness.jobs.spec import job_argument, job_backbone, parse_job


def main(argv: list[str] | None = None) -> int:
    from harness.timerome.config import TimeROMEConfig
    from harness.timerome.editor import TimeROMEEditor
    from harness.timerome.figure import tie_figure

    parser = argparse.ArgumentParser(prog="python -m harness.jobs.tie", description=__doc__)
    job_argument(parser)
    job = parse_job(parser.parse_args(argv).job)
    backbone = job_backbone(job)
    facts = load_split(job["tofu_dir"], job["forget_split"])[: int(job["n_facts"])]
    config = TimeROMEConfig.from_dict({**job.get("method_config", {}), "positions": "window"})
    _, trace = TimeROMEEditor(backbone, config).trace(facts)
    paths = tie_figure(trace, job["out"], title=f"{job['backbone']}: TIE over {len(facts)} "
                                                f"{job['forget_split']} facts")
    print(json.dumps([str(p) for p in paths]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
