"""GPU (or CPU) smoke test of the six structural twins, end to end, without hub or network.

    python -m harness.smoke --device cuda --dtype bfloat16 --out results/smoke
    python -m harness.smoke --device cpu --dtype float32 --out /tmp/smoke --backbones llada-twin

For every twin it writes a small synthetic corpus (`harness.data.write_synthetic`) into a
temporary directory, builds a random twin for it with `adapter_class(adapter).initial(spec,
corpus_texts, seed)`, saves it with `save_pretrained` and loads it back with
`load_backbone(replace(spec, path=dir))` (the path real checkpoints take), then runs, each
phase timed and memory-measured by `harness.measure.Measurer` (CUDA: torch peak allocated,
reserved and NVML device memory; CPU: peak process RSS):

    build -> load -> score_before -> trace (TIE) -> edit (TimeROME: memory built and
    attached) -> score_after (forget / retain log-probs) -> generate (greedy)

Every number (phase times and peaks, log-probs, TIE at the traced subject positions, the
edit memory's tensors, ROUGE-L) must be finite. Before the twins, measurement checks run
(`run_measurement_checks`; CUDA-only ones are skipped with the reason on CPU): NVML and
torch agree on the device, fixed allocations give exact per-phase figures, a forced OOM in a
training step is classified `oom`, and the phase timers agree with CUDA events within 5%;
their results go to `<out>/measurement.json` and the summary. One JSON record per backbone
(`<out>/<backbone>.json`) and a markdown summary (`<out>/summary.md`) are written; every
backbone runs even after another fails. Exit status: 0 all passed; 1 a backbone or a
measurement check failed (the message names the backbone and the phase, or the check); 2 bad
arguments.
"""

from __future__ import annotations

import argparse
import gc
import math
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch

from harness.atomic import write_json_atomic, write_text_atomic

SCHEMA_VERSION = 1
DTYPES = ("float32", "bfloat16", "float16")
# TimeROME as the default config runs it (retain covariance + key gate, keys at every
# subject token); edit_flagged so that random twins (whose answers rarely depend on the
# subject) still get a memory with every fact in it.
EDIT_CONFIG: dict[str, Any] = {"precondition": "retain_cov", "gate": True,
                               "positions": "subject", "edit_flagged": True,
                               "tie_facts": None}  # every fact's TIE is checked


@dataclass(frozen=True)
class Twin:
    name: str
    adapter: str
    options: dict[str, Any] = field(default_factory=dict)


TWINS: tuple[Twin, ...] = (
    Twin("llada-twin", "llada-twin"),
    Twin("llada-twin-chat", "llada-twin", {"prompt_format": "chat"}),
    Twin("mmada-twin", "mmada-twin"),
    Twin("dream-twin", "dream-twin"),
    Twin("diffullama-twin", "diffullama-twin"),
    Twin("llada-moe-twin", "llada-moe-twin"),
)
TWINS_BY_NAME = {t.name: t for t in TWINS}


class SmokeFailure(RuntimeError):
    """A check failed inside a phase (the phase name is added by the runner)."""


def resolve_twins(names: Sequence[str] | None) -> list[Twin]:
    """Named twins; a name that is not one of TWINS is taken as an adapter key (so any
    registered adapter can be smoke-tested, and an unknown one fails in phase 'build')."""
    if not names:
        return list(TWINS)
    return [TWINS_BY_NAME.get(n, Twin(n, n)) for n in names]


# ---------------------------------------------------------------- finiteness checks
def _tensors(value: Any, where: str) -> Iterator[tuple[str, torch.Tensor]]:
    if isinstance(value, torch.Tensor):
        yield where, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _tensors(v, f"{where}[{k}]")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            yield from _tensors(v, f"{where}[{i}]")
    elif hasattr(value, "__dataclass_fields__"):
        for k in value.__dataclass_fields__:
            yield from _tensors(getattr(value, k), f"{where}.{k}")


def check_finite(value: Any, what: str) -> None:
    """Raise SmokeFailure if `value` (number, tensor, or a nest of them) is not finite."""
    if value is None:
        raise SmokeFailure(f"{what} is missing (None)")
    if isinstance(value, (int, float)):
        if not math.isfinite(float(value)):
            raise SmokeFailure(f"{what} is not finite: {value}")
        return
    for where, tensor in _tensors(value, what):
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise SmokeFailure(f"{where}: {bad} of {tensor.numel()} values are not finite")


# ---------------------------------------------------------------- corpus
@dataclass
class SmokeData:
    texts: list[str]
    forget: list[Any]
    retain_train: list[Any]
    retain_eval: list[Any]


def make_corpus(directory: Path, authors: int, facts_per_author: int, n_forget: int,
                n_retain: int, seed: int) -> SmokeData:
    """Synthetic TOFU-format corpus (the `python -m harness.data synth` writer) and the facts
    the smoke uses: the first `n_forget` of forget10, disjoint retain sets from retain90."""
    from harness.data import load_corpus, write_synthetic
    from harness.finetune.train import corpus_texts

    tofu_dir = write_synthetic(directory, authors, facts_per_author, seed)
    corpus = load_corpus(tofu_dir)
    forget = corpus["forget10"][:n_forget]
    retain = corpus["retain90"]
    if len(forget) < 1 or len(retain) < 2 * n_retain:
        raise SmokeFailure(f"synthetic corpus of {authors} authors is too small for "
                           f"{n_forget} forget and 2 x {n_retain} retain facts")
    return SmokeData(corpus_texts(corpus), list(forget), list(retain[:n_retain]),
                     list(retain[n_retain:2 * n_retain]))


# ---------------------------------------------------------------- one backbone
@dataclass
class SmokeOptions:
    device: str
    dtype: str
    size: str = "tiny"
    vocab_size: int = 1024
    seed: int = 0
    batch_size: int = 16


def run_backbone(twin: Twin, data: SmokeData, opts: SmokeOptions, workdir: Path
                 ) -> dict[str, Any]:
    """Run every phase on one twin; return its record (status 'ok' or 'failed')."""
    from harness.backbones.base import BackboneSpec
    from harness.backbones.registry import adapter_class, load_backbone
    from harness.diffusion.sampling import sample_answers
    from harness.evaluation.rouge import rouge_l_recall
    from harness.evaluation.mean_scores import mean_logp
    from harness.measure import Measurer, fingerprint, summary_dict
    from harness.methods import EditRequest, get_method
    from harness.timerome.config import TimeROMEConfig
    from harness.timerome.editor import TimeROMEEditor

    options = {"size": opts.size, "vocab_size": opts.vocab_size, **twin.options}
    spec = BackboneSpec(name=twin.name, adapter=twin.adapter, dtype=opts.dtype,
                        device=opts.device, options=options)
    metrics: dict[str, Any] = {}
    status, failed_phase, error, tb = "ok", None, None, None
    current = "setup"
    start = time.perf_counter()
    measurer = Measurer(torch.device(opts.device))
    backbone = built = outcome = None
    try:
        def phase(name: str, kind: str):
            nonlocal current
            current = name
            return measurer.phase(name, kind)

        torch.manual_seed(opts.seed)
        with phase("build", "other"):
            built = adapter_class(twin.adapter).initial(spec, data.texts, opts.seed)
            checkpoint = workdir / twin.name
            built.save_pretrained(str(checkpoint))
            metrics["n_params"] = sum(p.numel() for p in built.model.parameters())
        del built  # the load phase measures the reloaded model alone
        gc.collect()
        with phase("load", "load"):
            backbone = load_backbone(replace(spec, path=str(checkpoint)))
            if str(backbone.dtype).removeprefix("torch.") != opts.dtype:
                raise SmokeFailure(f"loaded dtype {backbone.dtype}, asked for {opts.dtype}")
            if backbone.device.type != torch.device(opts.device).type:
                raise SmokeFailure(f"loaded on {backbone.device}, asked for {opts.device}")
            metrics["num_layers"] = backbone.num_layers
        with phase("score_before", "inference"):
            for split, facts in (("forget", data.forget), ("retain", data.retain_eval)):
                value = mean_logp(backbone, facts, "full_mask", opts.batch_size, opts.seed)
                check_finite(value, f"{split} log-prob before the edit")
                metrics[f"{split}_logp_before"] = value
        config = TimeROMEConfig.from_dict({**EDIT_CONFIG, "seed": opts.seed})
        with phase("trace", "edit"):
            _, trace = TimeROMEEditor(backbone, config).trace(data.forget)
            check_finite(trace.clean_logp, "trace.clean_logp")
            check_finite(trace.corrupt_logp, "trace.corrupt_logp")
            traced = trace.tie.permute(0, 2, 1)[trace.scored]  # [positions traced, L]
            if traced.numel() == 0:
                raise SmokeFailure("TIE traced no position")
            check_finite(traced, "TIE at the traced positions")
            check_finite(trace.max_tie[trace.traced], "max TIE")
            metrics["tie_max"] = float(trace.max_tie[trace.traced].max())
            metrics["trace_forwards"] = int(trace.forwards)
        with phase("edit", "edit"):
            method = get_method("timerome", EDIT_CONFIG)
            outcome = method.apply(EditRequest(backbone=backbone, forget=data.forget,
                                               retain=data.retain_train, config=EDIT_CONFIG,
                                               seed=opts.seed))
            memory = getattr(outcome.undo, "__self__", None)
            memory = getattr(memory, "memory", None)
            n_edited = int(outcome.details.get("n_edited", 0))
            if n_edited != len(data.forget):
                raise SmokeFailure(f"edited {n_edited} of {len(data.forget)} facts")
            if memory is None or not memory.attached or memory.n_facts != n_edited:
                raise SmokeFailure("the edit memory is not attached with every fact")
            check_finite(memory.factors, "edit memory factors")
            check_finite(memory.metrics, "edit memory retain covariance")
            check_finite([float(t) for taus in memory.gate_tau.values() for t in taus],
                         "edit memory gate thresholds")
            metrics["n_edited"] = n_edited
            metrics["edit_layers"] = sorted(int(layer) for layer in memory.factors)
        edited = outcome.backbone
        with phase("score_after", "eval"):
            for split, facts in (("forget", data.forget), ("retain", data.retain_eval)):
                value = mean_logp(edited, facts, "full_mask", opts.batch_size, opts.seed)
                check_finite(value, f"{split} log-prob after the edit")
                metrics[f"{split}_logp_after"] = value
            metrics["forget_drop"] = metrics["forget_logp_before"] - metrics["forget_logp_after"]
            metrics["retain_drop"] = metrics["retain_logp_before"] - metrics["retain_logp_after"]
        with phase("generate", "eval"):
            gen = sample_answers(edited, data.forget, temperature=0.0, seed=opts.seed,
                                 batch_size=opts.batch_size)
            vocab = len(edited.tokenizer)
            for ids in gen.token_ids:
                if not ids or min(ids) < 0 or max(ids) >= vocab:
                    raise SmokeFailure(f"generated ids outside the vocabulary ({vocab})")
            rouge = rouge_l_recall(gen.texts, [f.answer for f in data.forget])
            metrics["forget_rougeL_after"] = float(sum(rouge) / len(rouge))
            check_finite(metrics["forget_rougeL_after"], "ROUGE-L of the generations")
            metrics["generated_tokens"] = sum(len(ids) for ids in gen.token_ids)
            metrics["example"] = {"question": data.forget[0].question,
                                  "generated": gen.texts[0]}
    except Exception as exc:  # noqa: BLE001 - every failure is recorded and reported
        status, failed_phase = "failed", current
        error = f"{type(exc).__name__}: {exc}"[:2000]
        tb = traceback.format_exc(limit=8)[-4000:]
    finally:
        measurer.close()
    phases = [asdict(p) for p in measurer.phases]
    if status == "ok":
        try:
            for p in phases:
                check_finite(p["seconds"], f"phase {p['name']} seconds")
                check_finite(p["peak_bytes"], f"phase {p['name']} peak_bytes")
                if p["seconds"] < 0 or p["peak_bytes"] <= 0:
                    raise SmokeFailure(f"phase {p['name']}: implausible measurement {p}")
        except SmokeFailure as exc:
            status, failed_phase, error = "failed", "measure", f"SmokeFailure: {exc}"
    try:
        fp = fingerprint(opts.device, "smoke", measurer.driver)
    except Exception as exc:  # noqa: BLE001 - the record still says what failed
        fp = {"device": opts.device, "error": f"{type(exc).__name__}: {exc}"}
    if outcome is not None and getattr(outcome, "undo", None):
        outcome.undo()
    del backbone, outcome
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return {
        "schema_version": SCHEMA_VERSION, "kind": "smoke", "backbone": twin.name,
        "adapter": twin.adapter, "options": options, "device": opts.device,
        "dtype": opts.dtype, "status": status, "failed_phase": failed_phase, "error": error,
        "traceback": tb, "total_seconds": time.perf_counter() - start, "phases": phases,
        "memory": summary_dict(measurer.summary()), "metrics": metrics, "fingerprint": fp,
    }


# ---------------------------------------------------------------- measurement checks
# Each check would catch one defect of issue 19 (docs/measurements/gpu_memory.md): a phase
# that inherits the previous phase's cache or peak, NVML reading another device, an OOM
# taken for something else, timers that stop before the kernels do. The CUDA-only ones are
# "skipped" with the reason on CPU; a failed check fails the smoke (exit 1).
FIXED_HOLD_BYTES = 64 * 2**20  # multiples of the allocator's 2 MiB rounding: exact figures
FIXED_TEMP_BYTES = 256 * 2**20
TIMING_TOLERANCE = 0.05
TIMING_TARGET_S = 0.5


@dataclass
class CheckResult:
    name: str
    status: str  # "passed" | "failed" | "skipped"
    detail: dict[str, Any] = field(default_factory=dict)
    reason: str | None = None  # why it failed or was skipped


def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise SmokeFailure(message)


def check_device_identity(device: torch.device) -> dict[str, Any]:
    """NVML and torch agree on the device: found by torch's UUID, same name and total
    memory (resolve_identity raises when not), and NVML answered at all."""
    from harness.measure import Measurer

    with Measurer(device) as m:
        identity = m.identity
    _expect(identity is not None, "no device identity on CUDA")
    _expect(identity.nvml_error is None, f"NVML failed: {identity.nvml_error}")
    _expect(identity.uuid.endswith(identity.torch_uuid.removeprefix("GPU-")
                                   .removeprefix("MIG-")),
            f"NVML uuid {identity.uuid} is not torch's {identity.torch_uuid}")
    return {**identity.to_dict(), "nvml_memory_version": m.nvml_memory_version}


def check_fixed_allocations(device: torch.device) -> dict[str, Any]:
    """A tensor of known size allocated in a phase shows as exactly that size in the
    phase's allocated peak delta; a freed temporary leaves no allocated delta, and the next
    phase starts without its cache (empty_cache at the boundary)."""
    from harness.measure import Measurer

    with Measurer(device) as m:
        with m.phase("hold", "other"):
            held = torch.empty(FIXED_HOLD_BYTES, dtype=torch.uint8, device=device)
        with m.phase("temporary", "other"):
            temp = torch.ones(FIXED_TEMP_BYTES, dtype=torch.uint8, device=device)
            time.sleep(0.05)  # ten NVML sampling intervals with the tensor alive
            del temp
        with m.phase("after", "other"):
            pass
        rows = {p["name"]: p for p in m.phase_memory()["phases"]}
    del held
    hold, temp_row, after = rows["hold"], rows["temporary"], rows["after"]
    _expect(hold["allocated_peak_delta_bytes"] == FIXED_HOLD_BYTES,
            f"hold: allocated peak delta {hold['allocated_peak_delta_bytes']} != "
            f"{FIXED_HOLD_BYTES}")
    _expect(hold["allocated_end_delta_bytes"] == FIXED_HOLD_BYTES,
            f"hold: allocated end delta {hold['allocated_end_delta_bytes']}")
    _expect(temp_row["allocated_peak_delta_bytes"] == FIXED_TEMP_BYTES,
            f"temporary: allocated peak delta {temp_row['allocated_peak_delta_bytes']} != "
            f"{FIXED_TEMP_BYTES}")
    _expect(temp_row["allocated_end_delta_bytes"] == 0,
            f"temporary: allocated end delta {temp_row['allocated_end_delta_bytes']} != 0")
    _expect(temp_row["reserved_peak_delta_bytes"] >= FIXED_TEMP_BYTES,
            f"temporary: reserved peak delta {temp_row['reserved_peak_delta_bytes']}")
    cached = after["reserved_start_bytes"] - after["allocated_start_bytes"]
    _expect(cached < FIXED_TEMP_BYTES,
            f"after: starts with {cached} bytes cached (the temporary's cache was not emptied)")
    nvml_delta = temp_row["nvml_used_peak_delta_bytes"]
    _expect(nvml_delta is not None, f"no NVML figure: {m.nvml_error}")
    _expect(nvml_delta >= 0.9 * FIXED_TEMP_BYTES,
            f"temporary: NVML used peak delta {nvml_delta} < 90% of {FIXED_TEMP_BYTES}")
    return {"phases": list(rows.values())}


class _OomInBackward(torch.autograd.Function):
    """Identity forward whose backward raises a real torch.OutOfMemoryError (CPU check)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        return x.clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 80.00 GiB "
                                     "(raised by the smoke's training step)")


def _training_step(device: torch.device, oom_bytes: int | None) -> None:
    """One forward / backward / AdamW step; the backward allocates `oom_bytes` (more than
    the device has) or, with None, raises torch.OutOfMemoryError itself."""
    layer = torch.nn.Linear(64, 64, device=device)
    optimizer = torch.optim.AdamW(layer.parameters(), lr=1e-5)
    out = layer(torch.randn(8, 64, device=device))
    if oom_bytes is None:
        out = _OomInBackward.apply(out)
    else:
        def grab(grad: torch.Tensor) -> torch.Tensor:
            torch.empty(oom_bytes, dtype=torch.uint8, device=device)
            return grad
        out.register_hook(grab)
    out.square().mean().backward()
    optimizer.step()


def check_forced_oom(device: torch.device) -> dict[str, Any]:
    """An OOM inside a training step is classified `oom` by the harness's classifier
    (harness.measure.is_oom, which run_method's OOM branch uses), the phase is still
    recorded, and after empty_cache the memory is back to where the step began. On CPU
    the step raises a real torch.OutOfMemoryError from its backward; on CUDA it allocates
    twice the device's memory."""
    from harness.measure import Measurer, is_oom

    on_cuda = device.type == "cuda"
    oom_bytes = 2 * torch.cuda.get_device_properties(device).total_memory if on_cuda else None
    with Measurer(device) as m:
        before = torch.cuda.memory_allocated(device) if on_cuda else None
        status, error = "ok", None
        try:
            with m.phase("train_step", "edit"):
                _training_step(device, oom_bytes)
        except BaseException as exc:  # noqa: BLE001 - classified as run_method does
            if not is_oom(exc):
                raise SmokeFailure(f"the forced OOM was not classified as oom: "
                                   f"{type(exc).__name__}: {exc}") from exc
            status, error = "oom", f"{type(exc).__name__}: {str(exc)[:200]}"
        if on_cuda:
            gc.collect()
            torch.cuda.empty_cache()
    _expect(status == "oom", "the training step did not run out of memory")
    _expect([p.name for p in m.phases] == ["train_step"], "the OOM phase was not recorded")
    detail: dict[str, Any] = {"status": status, "error": error, "oom_bytes": oom_bytes}
    if on_cuda:
        after = torch.cuda.memory_allocated(device)
        detail.update(allocated_before=before, allocated_after=after)
        _expect(after <= before, f"allocated {after} after the OOM > {before} before it")
    return detail


def check_timing_against_events(device: torch.device) -> dict[str, Any]:
    """The Measurer's phase seconds and `timed` agree with CUDA events within 5% on a
    matmul loop of about half a second (a timer that does not synchronise reads the launch
    time only, far below the events' time)."""
    from harness.measure import Measurer, timed

    a = torch.randn(4096, 4096, device=device)
    b = torch.randn(4096, 4096, device=device)
    torch.cuda.synchronize(device)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(10):
        a @ b
    end.record()
    end.synchronize()
    iterations = max(10, min(5000, int(TIMING_TARGET_S / (start.elapsed_time(end) / 1e4))))

    def loop() -> tuple[torch.cuda.Event, torch.cuda.Event]:
        first, last = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        first.record()
        for _ in range(iterations):
            a @ b
        last.record()
        return first, last

    with Measurer(device) as m:
        with m.phase("matmul", "other"):
            events = loop()
    events[1].synchronize()
    event_s, measurer_s = events[0].elapsed_time(events[1]) / 1e3, m.phases[0].seconds
    phases: dict[str, float] = {}
    with timed(phases, "matmul", device):
        events = loop()
    events[1].synchronize()
    timed_event_s = events[0].elapsed_time(events[1]) / 1e3
    detail = {"iterations": iterations, "event_s": event_s, "measurer_s": measurer_s,
              "timed_event_s": timed_event_s, "timed_s": phases["matmul"]}
    for what, ours, ref in (("Measurer", measurer_s, event_s),
                            ("timed", phases["matmul"], timed_event_s)):
        _expect(abs(ours - ref) <= TIMING_TOLERANCE * ref,
                f"{what}: {ours:.4f} s against CUDA events' {ref:.4f} s (> 5% apart)")
    return detail


MEASUREMENT_CHECKS = (  # (name, check, runs on CPU too)
    ("device_identity", check_device_identity, False),
    ("fixed_allocations", check_fixed_allocations, False),
    ("forced_oom", check_forced_oom, True),
    ("timing_vs_cuda_events", check_timing_against_events, False),
)


def run_measurement_checks(device: torch.device) -> list[CheckResult]:
    """Every measurement check on `device`; CUDA-only ones skipped (with why) on CPU."""
    results = []
    for name, check, on_cpu in MEASUREMENT_CHECKS:
        if device.type != "cuda" and not on_cpu:
            results.append(CheckResult(name, "skipped", reason=f"CUDA only; device is {device}"))
            continue
        try:
            results.append(CheckResult(name, "passed", check(device)))
        except Exception as exc:  # noqa: BLE001 - every check runs; failures are reported
            results.append(CheckResult(name, "failed", reason=f"{type(exc).__name__}: {exc}"))
        finally:
            gc.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()
    return results


def measurement_markdown(results: Sequence[CheckResult]) -> str:
    lines = ["", "## Measurement checks", "", "| check | status | note |", "|---|---|---|"]
    for r in results:
        lines.append(f"| {r.name} | {r.status} | {r.reason or ''} |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- summary
def _mib(value: Any) -> str:
    return "--" if value is None else f"{value / 2**20:.0f}"


def summary_markdown(records: Sequence[dict[str, Any]], seconds: float) -> str:
    phase_names = ["build", "load", "score_before", "trace", "edit", "score_after", "generate"]
    first = records[0] if records else {}
    fp = first.get("fingerprint", {})
    mem_note = ("torch peak allocated MiB" if first.get("device", "cpu").startswith("cuda")
                else "peak process RSS MiB")
    lines = [f"# Smoke: {len(records)} backbone(s) on {fp.get('device_name', first.get('device'))}"
             f" ({first.get('dtype')}), {seconds:.1f} s", "",
             f"Per phase: seconds / {mem_note}. torch {fp.get('torch')}, commit "
             f"{fp.get('git_commit')}.", "",
             "| backbone | status | " + " | ".join(phase_names)
             + " | forget drop | retain drop | total s |",
             "|---|---|" + "---|" * len(phase_names) + "---|---|---|"]
    for rec in records:
        by_name = {p["name"]: p for p in rec["phases"]}
        cells = []
        for name in phase_names:
            p = by_name.get(name)
            cells.append("--" if p is None else f"{p['seconds']:.2f} / {_mib(p['peak_bytes'])}")
        m = rec["metrics"]
        status = rec["status"] if rec["status"] == "ok" else f"FAILED in {rec['failed_phase']}"
        drop = lambda k: "--" if m.get(k) is None else f"{m[k]:+.3f}"  # noqa: E731
        lines.append(f"| {rec['backbone']} | {status} | " + " | ".join(cells)
                     + f" | {drop('forget_drop')} | {drop('retain_drop')} | "
                     f"{rec['total_seconds']:.1f} |")
    failed = [r for r in records if r["status"] != "ok"]
    lines.append("")
    for rec in failed:
        lines.append(f"- **{rec['backbone']}** failed in phase `{rec['failed_phase']}`: "
                     f"{rec['error']}")
    lines.append(f"{len(records) - len(failed)} of {len(records)} passed.")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m harness.smoke", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda", help="cpu | cuda | cuda:N (default cuda)")
    p.add_argument("--dtype", default="bfloat16", choices=DTYPES)
    p.add_argument("--out", required=True, type=Path, help="directory for the records")
    p.add_argument("--backbones", nargs="+", metavar="NAME",
                   help=f"twins to run (default all: {', '.join(TWINS_BY_NAME)}); any other "
                        "name is taken as an adapter key")
    p.add_argument("--size", default="tiny", help="twin size option (default tiny)")
    p.add_argument("--vocab-size", type=int, default=1024)
    p.add_argument("--authors", type=int, default=20, help="synthetic corpus authors")
    p.add_argument("--facts-per-author", type=int, default=10)
    p.add_argument("--n-forget", type=int, default=4, help="forget facts traced and edited")
    p.add_argument("--n-retain", type=int, default=16,
                   help="retain facts for the edit's statistics (and as many scored)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--measurement-only", action="store_true",
                   help="run the measurement checks only (identity, fixed allocations, forced "
                        "OOM, timing against CUDA events), not the twins")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        device = torch.device(args.device)
    except RuntimeError as exc:
        print(f"smoke: bad --device: {exc}", file=sys.stderr)
        return 2
    if device.type == "cuda" and not torch.cuda.is_available():
        print(f"smoke: --device {args.device} but torch sees no CUDA device "
              f"(torch {torch.__version__}, cuda {torch.version.cuda})", file=sys.stderr)
        return 2
    if min(args.authors, args.facts_per_author, args.n_forget, args.n_retain) < 1:
        print("smoke: --authors, --facts-per-author, --n-forget, --n-retain must be >= 1",
              file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    opts = SmokeOptions(args.device, args.dtype, args.size, args.vocab_size, args.seed)
    twins = resolve_twins(args.backbones)
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    checks = run_measurement_checks(device)
    write_json_atomic(args.out / "measurement.json",
                      {"schema_version": SCHEMA_VERSION, "device": args.device,
                       "checks": [asdict(c) for c in checks]}, allow_nan=False)
    for check in checks:
        note = f": {check.reason}" if check.reason else ""
        print(f"smoke: measurement check {check.name}: {check.status}{note}", flush=True)
    if args.measurement_only:
        write_text_atomic(args.out / "summary.md", measurement_markdown(checks))
        return 1 if any(c.status == "failed" for c in checks) else 0
    records = []
    with tempfile.TemporaryDirectory(prefix="timerome-smoke-") as tmp:
        try:
            data = make_corpus(Path(tmp) / "corpus", args.authors, args.facts_per_author,
                               args.n_forget, args.n_retain, args.seed)
        except Exception as exc:  # noqa: BLE001
            print(f"smoke: FAILED before any backbone, in phase 'corpus': "
                  f"{type(exc).__name__}: {exc}", file=sys.stderr)
            return 1
        for twin in twins:
            record = run_backbone(twin, data, opts, Path(tmp) / "models")
            records.append(record)
            write_json_atomic(args.out / f"{twin.name}.json", record, allow_nan=False)
            where = "ok" if record["status"] == "ok" else \
                f"FAILED in phase '{record['failed_phase']}': {record['error']}"
            print(f"smoke: {twin.name}: {where} ({record['total_seconds']:.1f} s)", flush=True)
    seconds = time.perf_counter() - start
    text = summary_markdown(records, seconds) + measurement_markdown(checks)
    write_text_atomic(args.out / "summary.md", text)
    print(text, end="")
    failed = [r for r in records if r["status"] != "ok"]
    for rec in failed:
        print(f"smoke: FAILED {rec['backbone']} (adapter {rec['adapter']}) in phase "
              f"'{rec['failed_phase']}': {rec['error']}", file=sys.stderr)
    failed_checks = [c for c in checks if c.status == "failed"]
    for check in failed_checks:
        print(f"smoke: FAILED measurement check {check.name}: {check.reason}", file=sys.stderr)
    return 1 if failed or failed_checks else 0


if __name__ == "__main__":
    sys.exit(main())
