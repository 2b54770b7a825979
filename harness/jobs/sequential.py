"""Sequential insertion: the last `n_facts` records of `full` edited in one at a time.

After each insertion (every `eval_every`), the retain sample and the facts inserted so far
are scored; the record's `curve` holds one point per evaluation:
{n_inserted, insert_s, retain_delta, forget_delta} (mean nats per sample vs unedited).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import torch

from harness.backbones.registry import load_backbone
from harness.jobs.metrics import mean_logp
from harness.jobs.run_method import tuned_method_config
from harness.jobs.selection import DEFAULT_RETAIN_TRAIN_SIZE, last_n_selection
from harness.jobs.spec import backbone_spec, job_argument, parse_job, set_threads
from harness.measure import Measurer, fingerprint
from harness.results.store import write_record


def run(job: dict[str, Any]) -> dict[str, Any]:
    from harness.timerome.config import TimeROMEConfig
    from harness.timerome.editor import TimeROMEEditor

    start = time.perf_counter()
    set_threads(job.get("threads", 1))
    n = int(job["n_facts"])
    every = int(job.get("eval_every", 1))
    estimator = job.get("estimator", "full_mask")
    seed = int(job.get("seed", 0))
    sel = last_n_selection(job["tofu_dir"], n, n, int(job["retain_eval_size"]),
                           int(job.get("eval_seed", 0)),
                           int(job.get("retain_train_size", DEFAULT_RETAIN_TRAIN_SIZE)))
    spec = backbone_spec(job["backbone"], job["backbone_entry"], job["backbone_path"])
    method_config, note = tuned_method_config(job.get("method_config", {}), job.get("tuned_config"))
    config = TimeROMEConfig.from_dict({**method_config, "seed": seed})
    measurer = Measurer(torch.device(spec.device))
    try:
        with measurer.phase("load", "load"):
            backbone = load_backbone(spec)
        with measurer.phase("score_before", "inference"):
            forget_before = [mean_logp(backbone, [f], estimator, 32, seed) for f in sel.forget]
            retain_before = mean_logp(backbone, sel.retain_eval, estimator, 32, seed)
        editor = TimeROMEEditor(backbone, config, retain=sel.retain_train)
        curve: list[dict[str, Any]] = []
        insert_total = 0.0
        for i, fact in enumerate(sel.forget, 1):
            t0 = time.perf_counter()
            with measurer.phase("edit", "edit"):
                editor.insert(fact)
            insert_s = time.perf_counter() - t0
            insert_total += insert_s
            if i % every == 0 or i == n:
                with measurer.phase("score_after", "eval"):
                    retain_now = mean_logp(backbone, sel.retain_eval, estimator, 32, seed)
                    forget_now = mean_logp(backbone, sel.forget[:i], estimator, 32, seed)
                curve.append({"n_inserted": i, "insert_s": insert_s,
                              "retain_logp": retain_now,
                              "retain_delta": retain_now - retain_before,
                              "forget_delta": forget_now - sum(forget_before[:i]) / i})
    finally:
        measurer.close()
    memory = measurer.summary()
    fp = fingerprint(spec.device, job.get("config_hash", ""), measurer.driver)
    last = curve[-1]
    return {
        "schema_version": 1, "status": "ok", "experiment": "sequential",
        "backbone": job["backbone"], "method": "timerome", "split": sel.split, "n_facts": n,
        "seed": seed, "estimator": estimator, "n_retain_eval": len(sel.retain_eval),
        "forget_logp_before": sum(forget_before) / n,
        "forget_logp_after": sum(forget_before) / n + last["forget_delta"],
        "retain_logp_before": retain_before, "retain_logp_after": last["retain_logp"],
        "forget_rougeL_after": None, "retain_rougeL_after": None,
        "forget_quality": None, "model_utility": None,
        "wall_clock_s": insert_total, "job_wall_s": time.perf_counter() - start,
        "phase_seconds": measurer.seconds(), "method_phase_seconds": {},
        "peak_mem_bytes": memory.peak_mem_bytes,
        "inference_mem_bytes": memory.inference_mem_bytes,
        "extra_mem_bytes": memory.extra_mem_bytes, "model_mem_bytes": memory.model_mem_bytes,
        "nvml_peak_bytes": memory.nvml_peak_bytes, "memory_source": memory.memory_source,
        "converged": True, "collapsed": False, "collapse_reason": None, "steps": None,
        "device": fp["device"], "device_class": fp["device_class"],
        "git_commit": fp["git_commit"], "subject_source": sel.subject_source(),
        "fingerprint": fp, "method_config": config.to_dict(),
        "details": {"notes": {"tuning": note}} if note else {}, "curve": curve, "error": None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.jobs.sequential", description=__doc__)
    job_argument(parser)
    job = parse_job(parser.parse_args(argv).job)
    record = run(job)
    write_record(job["out"], record)
    print(json.dumps({"n_facts": record["n_facts"], "retain_delta":
                      record["retain_logp_after"] - record["retain_logp_before"],
                      "wall_clock_s": record["wall_clock_s"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
