"""The edited model of a Table 1 job, made again exactly as harness.jobs.run_method makes it.

A job that measures an edited model in other ways (harness/jobs/robustness.py) needs the
very model Table 1 scored: the same `MethodJob` (backbone checkpoint, method, method
config at the tuning job's chosen point, matched forget-drop target read from the
TimeROME-DLM record for the gradient baselines, per-backbone statistics file, facts, seed)
and the same steps in the same order: threads and the global torch seed set first, facts
selected, backbone loaded, statistics loaded and checked, the method applied. The pieces
are run_method's own functions (`tuned_method_config`, `matched_target`, `select`,
`load_statistics`), so a change to how Table 1 builds its edit changes this too. Table 1's
scoring before the edit draws no global random numbers, so skipping it leaves the edit
unchanged; the robustness job checks this on every run (the forget log-prob it scores on
the re-made model against the Table 1 record's `forget_logp_after`).

`MethodNotApplicable` (and an out-of-memory error) propagate: the caller records them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch

from harness.backbone_statistics import BackboneStatistics
from harness.backbones.base import Backbone
from harness.backbones.registry import load_backbone
from harness.jobs.run_method import load_statistics, matched_target, select, tuned_method_config
from harness.jobs.selection import FactSelection
from harness.jobs.spec import MethodJob, set_threads
from harness.methods import EditRequest, MethodOutcome, get_method


@dataclass
class EditedModel:
    """A Table 1 job's edited model and what it was made from."""

    backbone: Backbone  # the edited model (MethodOutcome.backbone)
    selection: FactSelection  # forget, retain-train and scored retain facts of the job
    method_config: dict[str, Any]  # the config the method ran with (tuned point applied)
    outcome: MethodOutcome
    edit_seconds: float  # wall-clock of `Method.apply` (with the harness's bookkeeping)
    notes: dict[str, str] = field(default_factory=dict)  # tuning / target / statistics


def edited_model(job: MethodJob) -> EditedModel:
    """Make `job`'s edited model as Table 1's job does (module docstring)."""
    set_threads(job.threads)
    torch.manual_seed(job.seed)
    selection = select(job)
    spec = job.spec()
    method_config, tuning_note = tuned_method_config(job, len(selection.forget))
    target_drop, target_note = matched_target(job)
    method = get_method(job.method, method_config)
    backbone = load_backbone(spec)
    statistics: BackboneStatistics | None = load_statistics(
        job, backbone.identity()["weights_fingerprint"], selection.retain_train)
    request = EditRequest(backbone=backbone, forget=selection.forget,
                          retain=selection.retain_train, config=method_config, seed=job.seed,
                          target_forget_drop=target_drop,
                          statistics=statistics.tensors if statistics else None)
    start = time.perf_counter()
    outcome = method.apply(request)
    seconds = time.perf_counter() - start
    notes = {key: note for key, note in (("tuning", tuning_note), ("target", target_note),
                                         ("statistics", job.statistics)) if note}
    return EditedModel(outcome.backbone, selection, method_config, outcome, seconds, notes)
