"""TIE heatmap of one backbone: trace the first `n_facts` forget facts (positions in a
window around the subject end), draw `harness.timerome.figure.tie_figure` and write
`<out>.json` next to the figure: `harness.timerome.tie_summary.summarize_trace(trace)`
(corruption effect, chosen TIE, median |TIE|, their ratio, flagged fraction, the issue-13
bars and whether each is met) plus the backbone name, the trace's levels and offsets and
the per-fact `trace.summary()`. The JSON is strict (no NaN/Infinity) and written atomically.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.atomic import write_json_atomic
from harness.data import load_split
from harness.evaluation.finite import json_safe
from harness.jobs.spec import BackboneJob, read_job

FIGURE_WINDOW = (4, 4)  # the heatmap's prompt tokens before / after the subject end


@dataclass
class TieJob(BackboneJob):
    """One TIE heatmap job (rule tie_heatmap)."""

    tofu_dir: str
    forget_split: str
    n_facts: int  # the first n records of the forget split are traced
    method_config: dict[str, Any]  # TimeROME-DLM's config (tracing options)
    out: str  # output stem: <out>.png, <out>.pdf, <out>.json


def tie_record(trace, backbone: str, forget_split: str, seconds: float | None = None) -> dict:
    """The JSON summary of one backbone's trace (strict JSON: non-finite floats -> null)."""
    from harness.timerome.tie_summary import summarize_trace

    record = {"backbone": backbone, "forget_split": forget_split,
              **summarize_trace(trace).as_record(),
              "levels": [float(t) for t in trace.times],
              "offsets": [int(o) for o in trace.offsets],
              "facts": trace.summary(), "trace_seconds": float(trace.seconds),
              "forwards": int(trace.forwards)}
    if seconds is not None:
        record["wall_clock_s"] = float(seconds)
    return json_safe(record)


def figure_caption(summary: dict) -> str:
    """One line of the summary numbers drawn under the figure."""
    ratio = summary["located_ratio"]
    ratio_text = "n/a" if ratio is None else f"{ratio:.2f}"
    return (f"corruption effect {summary['corruption_effect']:.2f} nats/token; "
            f"chosen TIE {summary['chosen_tie']:.3f} / median |TIE| "
            f"{summary['median_abs_tie']:.3g} = ratio {ratio_text}; "
            f"flagged {summary['flagged_fraction']:.0%} of {summary['n_facts']} facts")


def main(argv: list[str] | None = None) -> int:
    from harness.timerome.config import TimeROMEConfig
    from harness.timerome.editor import TimeROMEEditor
    from harness.timerome.figure import tie_figure

    job = read_job(TieJob, argv, "python -m harness.jobs.tie", __doc__)
    start = time.perf_counter()
    backbone = job.load()
    facts = load_split(job.tofu_dir, job.forget_split)[: job.n_facts]
    # the figure shows every fact's TIE: restored runs for all of them (tie_facts null)
    config = TimeROMEConfig.from_dict({**job.method_config, "positions": "window",
                                       "window": list(FIGURE_WINDOW), "tie_facts": None})
    _, trace = TimeROMEEditor(backbone, config).trace(facts)
    record = tie_record(trace, job.backbone, job.forget_split)
    paths = tie_figure(trace, job.out, title=f"{job.backbone}: TIE over {len(facts)} "
                                             f"{job.forget_split} facts",
                       caption=figure_caption(record))
    record["wall_clock_s"] = time.perf_counter() - start
    json_path = Path(job.out).with_suffix(".json")
    write_json_atomic(json_path, record, allow_nan=False)
    print(json.dumps([str(p) for p in [*paths, json_path]]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
