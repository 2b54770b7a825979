"""Command line: `python -m harness.timerome {forget,tune,figure,apply} ...`.

forget: trace + edit the facts of a JSON-lines file, save the memory (safetensors) and a
        JSON report next to it (`<out>.report.json`). The retain statistics of the edit
        (key covariance, gate) come from `--retain` (JSON lines).
tune:   grid search on the validation split of a TOFU-format directory; writes the chosen
        point and the whole grid as JSON. The retain statistics come from `--calibration-n`
        retain facts held out of the `--retain-n` scored ones.

The method's settings are TimeROMEConfig's defaults (harness/methods/defaults/timerome.yaml:
the variant Table 1 runs), then a `--tuned` result's chosen point, then the flags given.
figure: trace facts with the "window" positions and draw the TIE heatmaps.
apply:  load a backbone, apply a saved edit memory and print (and optionally write) the
        full_mask log-probability of every fact's answer and their mean (`--compare` adds
        the unedited model's), or the generated answers (`--generate`).

The checkpoint (`--backbone-dir`, alias `--checkpoint`) says which adapter loads it: the
`backbone` entry of the workflow's `finetune_report.json`, else the record that
`save_pretrained` writes into `harness_content.json`; for `apply`, else the memory's. An
explicit `--adapter` / `--name` wins. A folder with no record needs `--adapter`.

Every argument, the facts file (and for `apply` the memory) is checked before the model
loads. Bad input (a missing or malformed file, a damaged checkpoint or memory, a non-finite
number, a memory of another backbone, a fact longer than the backbone's context) is one
`error: ...` line on stderr and exit status 2; anything else is a bug and keeps its
traceback. `main` raises those errors (for callers in Python); `console_main`, the entry
point of `python -m harness.timerome`, turns them into the error line.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from harness.artefacts import DamagedArtefact, read_json
from harness.atomic import write_json_atomic
from harness.backbones.base import Backbone, BackboneSpec
from harness.backbones.models.family import MissingConfigField, UnsupportedConfig
from harness.backbones.registry import adapter_class, adapter_names, load_backbone
from harness.backbones.snapshot import SnapshotError, SnapshotInfo, fingerprint, saved_backbone
from harness.data.errors import DataError
from harness.data.fact import Fact, SubjectSource
from harness.diffusion.batching import InputTooLong
from harness.timerome.sites import fact_of
from harness.timerome.config import POSITION_MODES, PRECONDITIONS, TARGETS, TimeROMEConfig
from harness.timerome.facts_io import read_facts
from harness.timerome.memory import IdentityMismatch
from harness.workflow_config import load_workflow_config

FINETUNE_REPORT = "finetune_report.json"  # harness.finetune.train.REPORT_FILE


class UsageError(ValueError):
    """A bad command-line argument (printed as one error line, exit status 2)."""


# Errors that are the input's fault: printed as `error: <message>`, exit 2.
INPUT_ERRORS: tuple[type[BaseException], ...] = (
    UsageError, DataError, DamagedArtefact, SnapshotError, IdentityMismatch, UnsupportedConfig,
    MissingConfigField, InputTooLong, FileNotFoundError)


# ---- argument types ------------------------------------------------------------------------
def finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


# ---- checks before the model loads ---------------------------------------------------------
def checkpoint_info(directory: Path) -> SnapshotInfo:
    """The checkpoint folder exists and its config and weights files are in place and whole
    (headers only: cheap); the full check runs when the model loads."""
    if not directory.is_dir():
        raise UsageError(f"--backbone-dir {directory}: not a folder (a checkpoint: config.json "
                         f"+ safetensors + tokenizer files)")
    return fingerprint(directory)


def checkpoint_record(directory: Path) -> tuple[dict[str, Any], str] | None:
    """(backbone record, the file it came from) of a checkpoint folder, or None."""
    report = directory / FINETUNE_REPORT
    if report.is_file():
        data = read_json(report)
        record = data.get("backbone") if isinstance(data, dict) else None
        if isinstance(record, dict) and record.get("adapter"):
            return record, str(report)
    record = saved_backbone(directory)
    if record and record.get("adapter"):
        return record, str(directory / "harness_content.json")
    return None


def backbone_spec(args: argparse.Namespace,
                  fallback: dict[str, Any] | None = None) -> BackboneSpec:
    """The spec that loads `args.backbone_dir`: explicit --adapter/--name, else what the
    checkpoint records, else `fallback` (e.g. the identity an edit memory records)."""
    directory: Path = args.backbone_dir
    found = checkpoint_record(directory)
    if found is not None:
        record, source = found
    else:
        record, source = dict(fallback or {}), "the edit memory"
    adapter = args.adapter or record.get("adapter")
    if not adapter:
        raise UsageError(f"{directory}: the checkpoint records no adapter (no '{FINETUNE_REPORT}' "
                         f"or 'harness_content.json' with a 'backbone' entry); pass --adapter, "
                         f"one of: {', '.join(adapter_names())}")
    try:
        adapter_class(adapter)
    except KeyError:
        raise UsageError(f"unknown adapter '{adapter}' (--adapter or {source}); registered: "
                         f"{', '.join(adapter_names())}") from None
    recorded = record if record.get("adapter") == adapter else {}
    options = recorded.get("options") or {}
    if not isinstance(options, dict):
        raise UsageError(f"{source}: the backbone entry's 'options' is not an object")
    return BackboneSpec(name=args.name or recorded.get("name") or adapter, adapter=adapter,
                        path=str(directory), hf_id=recorded.get("hf_id"),
                        revision=recorded.get("revision"),
                        dtype=recorded.get("dtype") or "float32", device=args.device,
                        options=dict(options))


# TimeROMEConfig keys that have a flag of the same name (forget, tune, figure).
CONFIG_FLAGS = ("alpha", "lam", "q", "seed", "target", "precondition", "gate", "positions",
                "tie_facts", "gate_span", "gate_own_floor")


def needs_retain(config: TimeROMEConfig) -> bool:
    """The edit needs retain facts: retain-covariance preconditioning, the key gate or the
    backbone's TIE profile (tie_facts 0)."""
    return config.precondition != "none" or config.gate or config.tie_facts == 0


def timerome_config(args: argparse.Namespace) -> TimeROMEConfig:
    config = TimeROMEConfig()
    tuned = getattr(args, "tuned", None)
    if tuned:
        from harness.timerome.tuning import read_tuned_config

        if not Path(tuned).is_file():
            raise UsageError(f"--tuned {tuned}: file not found")
        try:
            config = read_tuned_config(tuned)
        except (ValueError, KeyError, TypeError) as exc:
            raise UsageError(f"--tuned {tuned}: not a tuning result ({exc})") from None
    overrides = {k: getattr(args, k) for k in CONFIG_FLAGS if getattr(args, k, None) is not None}
    try:
        return config.with_overrides(**overrides)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def retain_facts(path: Path | None, config: TimeROMEConfig) -> list[Fact]:
    """The facts of `--retain` when the edit uses retain statistics (else none)."""
    if not needs_retain(config):
        return []
    if path is None:
        raise UsageError("--retain FILE is needed: the edit uses retain facts (precondition "
                         f"'{config.precondition}', gate {str(config.gate).lower()}, "
                         f"tie_facts {config.tie_facts}); or pass --precondition none "
                         "--no-gate --tie-facts N (N > 0: the TIE of N facts of the edit)")
    return read_any_facts(path)


def output_path(path: Path, flag: str = "--out") -> Path:
    if path.is_dir():
        raise UsageError(f"{flag} {path}: is a folder; give a file path")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UsageError(f"{flag} {path}: {parent} is not a folder")
            break
    return path


def read_any_facts(path: Path) -> list[Fact]:
    """Facts of a JSON-lines file for `apply`: `subject` optional (scoring needs none)."""
    from harness.data.reader import read_split_file

    if not path.is_file():
        raise FileNotFoundError(f"facts file not found: {path}")
    records = read_split_file(path, "forget01")
    if not records:
        raise DataError(str(path), None, None, "no records")
    return [Fact(question=rec.question, answer=rec.answer, subject=rec.subject,
                 subject_source=(SubjectSource.GIVEN if rec.subject is not None
                                 else SubjectSource.FALLBACK_LAST_TOKEN),
                 author_id=rec.author_id if rec.author_id is not None else -1,
                 split=path.stem, index=index) for index, rec in enumerate(records)]


def check_memory_identity(recorded: dict[str, Any], spec: BackboneSpec, info: SnapshotInfo,
                          memory: Path) -> None:
    """What can be compared without loading the model: the spec's identity and the
    checkpoint's config / index digests (the weights are compared when the memory attaches)."""
    actual: dict[str, Any] = {**spec.identity(), "snapshot_revision": info.revision,
                              "config_sha256": info.config_sha256,
                              "index_sha256": info.index_sha256}
    differs = [k for k, v in actual.items() if k in recorded and recorded[k] != v]
    differs += [k for k in spec.identity() if k not in recorded]
    if differs:
        raise IdentityMismatch(
            f"edit memory {memory} was built for backbone {json.dumps(recorded, sort_keys=True)} "
            f"but the given backbone is {json.dumps(actual, sort_keys=True)} (differs in "
            f"{', '.join(sorted(set(differs)))})")


# ---- commands ------------------------------------------------------------------------------
def _load(spec: BackboneSpec) -> Backbone:
    return load_backbone(spec)


def cmd_forget(args: argparse.Namespace) -> int:
    from harness.timerome.editor import TimeROMEEditor

    facts = read_facts(args.facts)
    config = timerome_config(args)
    out = output_path(args.out)
    checkpoint_info(args.backbone_dir)
    spec = backbone_spec(args)
    retain = retain_facts(args.retain, config)
    backbone = _load(spec)
    editor = TimeROMEEditor(backbone, config, retain=retain)
    _, report = editor.edit(facts)
    editor.memory.save(out)
    report_path = Path(str(out) + ".report.json")
    write_json_atomic(report_path, report.to_dict())
    print(json.dumps({"memory": str(out), "report": str(report_path),
                      "edited": report.n_edited, "flagged": len(report.flagged),
                      "phase_seconds": report.phase_seconds}))
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    from harness.data import load_corpus
    from harness.jobs.selection import tuning_retain
    from harness.timerome.tuning import tune, write_tuning

    if not args.tofu_dir.is_dir():
        raise UsageError(f"--tofu-dir {args.tofu_dir}: not a folder (a TOFU-format corpus)")
    config = timerome_config(args)
    out = output_path(args.out)
    if needs_retain(config) and args.calibration_n is None:
        raise UsageError("--calibration-n N is needed: the edit uses retain statistics "
                         f"(precondition '{config.precondition}', gate "
                         f"{str(config.gate).lower()}) from retain facts held out of the "
                         "scored ones; or pass --precondition none --no-gate")
    validation = load_corpus(args.tofu_dir, ["validation"])["validation"]
    # The tune job's samples: disjoint from each other and from the retain facts Table 1
    # scores (same pool, permutation and seed as harness.jobs.selection.split_selection).
    try:
        retain, calibration = tuning_retain(str(args.tofu_dir), args.forget_split,
                                            args.retain_split, args.retain_n, args.eval_seed,
                                            args.calibration_n or 0)
    except ValueError as exc:  # a pool too small for --retain-n (DataError is reported as is)
        if isinstance(exc, DataError):
            raise
        raise UsageError(f"--retain-n {args.retain_n}: {exc}") from None
    checkpoint_info(args.backbone_dir)
    backbone = _load(backbone_spec(args))
    result = tune(backbone, validation, retain, config,
                  calibration=calibration if needs_retain(config) else None)
    write_tuning(result, out)
    print(json.dumps({"out": str(out), "chosen": result.to_dict()["chosen"],
                      "seconds": result.seconds, "grid_edge": result.grid_edge}))
    if result.edge_warning():
        print(result.edge_warning(), file=sys.stderr)
    return 0 if result.chosen is not None else 1


def cmd_figure(args: argparse.Namespace) -> int:
    from harness.timerome.figure import tie_figure
    from harness.timerome.tracing import trace_facts

    facts = read_facts(args.facts)
    config = timerome_config(args).with_overrides(positions="window", tie_facts=None)
    output_path(args.out)
    checkpoint_info(args.backbone_dir)
    backbone = _load(backbone_spec(args))
    trace = trace_facts(backbone, facts, config)
    paths = tie_figure(trace, args.out, title=f"TIE, {backbone.name}")
    print(json.dumps({"figures": [str(p) for p in paths]}))
    return 0


def cmd_apply(args: argparse.Namespace) -> int:
    from harness.diffusion.sampling import sample_answers
    from harness.evaluation.answer_logprob import score_facts
    from harness.timerome.memory import EditMemory

    facts = read_any_facts(args.facts)
    out = output_path(args.out) if args.out is not None else None
    meta, _ = EditMemory.read(args.memory)
    info = checkpoint_info(args.backbone_dir)
    spec = backbone_spec(args, fallback=meta["identity"])
    check_memory_identity(meta["identity"], spec, info, args.memory)
    backbone = _load(spec)
    result: dict[str, Any] = {"backbone": backbone.name, "checkpoint": str(args.backbone_dir),
                              "memory": str(args.memory), "n_facts": len(facts),
                              "memory_facts": len({fact_of(name) for names in meta["facts"].values()
                                                   for name in names})}
    rows = [{"key": f.key, "question": f.question, "answer": f.answer} for f in facts]
    unedited = None
    if args.compare and not args.generate:
        unedited = score_facts(backbone, facts, batch_size=args.batch_size).logp.tolist()
    memory = EditMemory.load(args.memory, backbone)
    try:
        if args.generate:
            generation = sample_answers(backbone, facts, batch_size=args.batch_size)
            for row, text in zip(rows, generation.texts):
                row["generated"] = text
        else:
            scores = score_facts(backbone, facts, batch_size=args.batch_size)
            result["estimator"] = scores.estimator
            for row, logp, n in zip(rows, scores.logp.tolist(), scores.n_tokens.tolist()):
                row.update({"logp": logp, "answer_tokens": n})
            result["mean_logp"] = sum(r["logp"] for r in rows) / len(rows)
            if unedited is not None:
                for row, logp in zip(rows, unedited):
                    row["logp_unedited"] = logp
                result["mean_logp_unedited"] = sum(unedited) / len(unedited)
    finally:
        memory.detach()
    result["facts"] = rows
    if out is not None:
        write_json_atomic(out, result)
    print(json.dumps(result))
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "forget": cmd_forget, "tune": cmd_tune, "figure": cmd_figure, "apply": cmd_apply}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m harness.timerome",
        description="TimeROME-DLM. Defaults: harness/methods/defaults/timerome.yaml, the "
                    "variant Table 1 runs; --tuned and the flags override them.")
    sub = parser.add_subparsers(dest="command", required=True)

    def backbone_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--backbone-dir", "--checkpoint", dest="backbone_dir", required=True,
                       type=Path, help="checkpoint folder (config.json, safetensors, tokenizer)")
        p.add_argument("--adapter", default=None,
                       help="backbone adapter (default: the one the checkpoint records; "
                            f"registered: {', '.join(adapter_names())})")
        p.add_argument("--name", default=None,
                       help="backbone name (default: the recorded one, else the adapter key)")
        p.add_argument("--device", default="cpu")

    def common(p: argparse.ArgumentParser) -> None:
        backbone_args(p)
        p.add_argument("--tuned", type=Path, help="tuning JSON whose chosen point to use")
        p.add_argument("--alpha", type=finite_float)
        p.add_argument("--lam", type=finite_float)
        p.add_argument("--q", type=finite_float)
        p.add_argument("--seed", type=int)
        p.add_argument("--target", choices=TARGETS)
        p.add_argument("--precondition", choices=PRECONDITIONS)
        p.add_argument("--gate", action=argparse.BooleanOptionalAction, default=None,
                       help="the per-fact key gate (--no-gate: off)")
        p.add_argument("--gate-span", dest="gate_span", action=argparse.BooleanOptionalAction,
                       default=None, help="a fact's subject-token columns open only together")
        p.add_argument("--gate-own-floor", dest="gate_own_floor",
                       action=argparse.BooleanOptionalAction, default=None,
                       help="thresholds at most the fact's own least similarity over the levels")
        p.add_argument("--tie-facts", dest="tie_facts", type=int,
                       help="restored runs for at most this many facts (0: the layer of the "
                            "backbone's TIE profile, traced on --retain facts)")
        p.add_argument("--positions", choices=POSITION_MODES,
                       help="candidate positions of tracing (figure: always window)")

    forget = sub.add_parser("forget", help="edit facts and save the memory")
    common(forget)
    forget.add_argument("--facts", required=True, type=Path)
    forget.add_argument("--out", required=True, type=Path)
    forget.add_argument("--retain", type=Path,
                        help="JSON lines of retain facts (question, answer) for the edit's "
                             "retain statistics (needed unless --precondition none --no-gate)")
    tune_p = sub.add_parser("tune", help="grid search on the validation split")
    common(tune_p)
    tune_p.add_argument("--tofu-dir", required=True, type=Path)
    data = load_workflow_config()["data"]  # the workflow's defaults (schema / default.yaml)
    tune_p.add_argument("--forget-split", default=data["forget_split"],
                        help="its authors never enter a retain sample (default: the "
                             "workflow's data.forget_split)")
    tune_p.add_argument("--retain-split", default=data["retain_split"],
                        help="the retain pool (default: the workflow's data.retain_split)")
    tune_p.add_argument("--retain-n", type=positive_int, default=data["retain_eval_size"],
                        help="retain facts whose log-prob drop must stay under the bar "
                             "(default: the workflow's data.retain_eval_size)")
    tune_p.add_argument("--eval-seed", type=int, default=data["eval_seed"],
                        help="seed of the retain samples, as the workflow's data.eval_seed "
                             "(Table 1's scored retain facts are never used)")
    tune_p.add_argument("--calibration-n", type=positive_int,
                        help="further retain facts (disjoint) for the edit's retain covariance "
                             "and gate (needed unless --precondition none --no-gate; the "
                             "workflow uses data.retain_train_size)")
    tune_p.add_argument("--out", required=True, type=Path)
    fig = sub.add_parser("figure", help="TIE heatmaps (PNG + PDF)")
    common(fig)
    fig.add_argument("--facts", required=True, type=Path)
    fig.add_argument("--out", required=True, type=Path, help="output prefix")
    apply_p = sub.add_parser("apply", help="apply a saved edit memory; score or generate")
    backbone_args(apply_p)
    apply_p.add_argument("--memory", required=True, type=Path, help="saved edit memory")
    apply_p.add_argument("--facts", required=True, type=Path,
                         help="JSON lines: question, answer (subject optional)")
    apply_p.add_argument("--generate", action="store_true",
                         help="generate answers instead of scoring the given ones")
    apply_p.add_argument("--compare", action="store_true",
                         help="also score without the memory (logp_unedited)")
    apply_p.add_argument("--batch-size", type=positive_int, default=32)
    apply_p.add_argument("--out", type=Path, help="also write the result JSON here")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run a command; bad input raises its named error (see `console_main`)."""
    args = build_parser().parse_args(argv)
    return COMMANDS[args.command](args)


def console_main(argv: Sequence[str] | None = None) -> int:
    """`main` with bad input reported as one `error: ...` line and exit status 2."""
    try:
        return main(argv)
    except INPUT_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(console_main())
