"""`Record`: one job's result, the typed form of `record.schema.json` (one field per schema
property; a test checks that names, required fields and types agree).

Jobs build a Record and write `record.to_dict()` (harness.results.store validates it against
the schema); readers get a Record back with `Record.from_dict`, so values keep their JSON
types (booleans stay booleans) on the way to every table.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping

SCHEMA_VERSION = 1


@dataclass
class Record:
    # identity
    schema_version: int
    status: str  # ok | oom | not_applicable
    experiment: str  # table1 | scaling | sequential | tuning
    backbone: str
    method: str
    split: str  # label of the forget set ("forget01", "full[-10:]")
    n_facts: int
    seed: int
    estimator: str  # full_mask | elbo
    # scores: mean nats per sample; ROUGE-L recall; TOFU forget quality and model utility
    forget_logp_before: float | None
    forget_logp_after: float | None
    retain_logp_before: float | None
    retain_logp_after: float | None
    forget_rougeL_after: float | None
    retain_rougeL_after: float | None
    forget_quality: float | None
    model_utility: float | None
    # cost
    wall_clock_s: float | None  # the edit's wall-clock
    job_wall_s: float
    phase_seconds: dict[str, float]
    peak_mem_bytes: int | None
    inference_mem_bytes: int | None
    extra_mem_bytes: int | None
    model_mem_bytes: int | None
    memory_source: str  # cuda_allocated | cpu_rss
    # the method's run
    converged: bool | None
    collapsed: bool | None
    steps: int | None
    # where it ran
    device: str
    device_class: str
    git_commit: str
    subject_source: dict[str, int]
    fingerprint: dict[str, Any]
    # optional in the schema
    n_retain_eval: int | None = None
    forget_rougeL_before: float | None = None
    method_phase_seconds: dict[str, float] | None = None
    nvml_peak_bytes: int | None = None
    collapse_reason: str | None = None
    weights: dict[str, Any] | None = None
    method_config: dict[str, Any] | None = None
    details: dict[str, Any] | None = None
    curve: list[dict[str, Any]] | None = None  # sequential insertion: one point per evaluation
    # compute of the edit (harness/compute.py; docs/measurements/compute_accounting.md)
    edit_forward_tokens: int | None = None  # token positions forwarded (rows x width)
    edit_backward_tokens: int | None = None  # of those, backpropagated
    edit_flops: float | None = None  # analytic forward + backward FLOPs
    optimizer_state_bytes: int | None = None  # largest optimizer state held (0: none)
    # one-time per-backbone statistics the edit loaded (harness/backbone_statistics.py)
    statistics_s: float | None = None  # their wall-clock seconds, outside the edit time
    # GPU measurement (docs/gpu.md): the precision policy the run used, per-phase memory
    # figures, and the device's identity as NVML and torch saw it
    precision: dict[str, Any] | None = None
    phase_memory: dict[str, Any] | None = None
    device_identity: dict[str, Any] | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON object written to the results store: every field, except an optional one
        left at None whose schema type has no null (it is left out)."""
        data = asdict(self)
        return {k: v for k, v in data.items() if not (v is None and k in OMITTED_WHEN_NONE)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Record":
        """A Record from a validated record object (harness.results.store.read_record)."""
        return cls(**{f.name: data.get(f.name) for f in fields(cls)})


# Optional fields whose schema type admits no null (tests check this against the schema).
OMITTED_WHEN_NONE = frozenset({"n_retain_eval", "method_phase_seconds", "method_config",
                               "details", "curve", "edit_forward_tokens",
                               "edit_backward_tokens", "edit_flops", "optimizer_state_bytes",
                               "statistics_s", "precision", "phase_memory",
                               "device_identity"})
