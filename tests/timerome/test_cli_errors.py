"""`python -m harness.timerome`: bad input is one `error:` line and exit 2 (tracebacks only
for real bugs), every argument is checked before the model loads, the adapter of a
checkpoint the workflow wrote is read from the checkpoint, and `apply` loads a saved edit
memory onto a backbone and scores or generates a facts file."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from harness.artefacts import CONTENT_FILE
from harness.backbones.base import BackboneSpec
from harness.backbones.registry import load_backbone
from harness.data import write_synthetic
from harness.evaluation.answer_logprob import score_facts
from harness.jobs.selection import split_selection
from harness.timerome import cli
from harness.timerome.config import TimeROMEConfig
from harness.timerome.memory import EditMemory
from harness.workflow_config import load_workflow_config

ROOT = Path(__file__).resolve().parents[2]
# The tiny models' facts barely depend on the last subject token: edit at every subject
# token and edit flagged facts too, so that the memory holds every fact; no retain
# statistics (so `forget` needs no --retain).
EDIT_ALL = TimeROMEConfig(alpha=4.0, target="suppress", times=(1.0, 0.5), noise_samples=2,
                          positions="subject", edit_flagged=True, precondition="none",
                          gate=False, tie_facts=None)
NO_RETAIN = ["--precondition", "none", "--no-gate", "--tie-facts", "3"]  # no retain facts used


def facts_file(path: Path, facts) -> Path:
    path.write_text("".join(json.dumps({"question": f.question, "answer": f.answer,
                                        "subject": f.subject}) + "\n" for f in facts))
    return path


def run_cli(argv, capsys) -> tuple[int, str, str]:
    code = cli.console_main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture
def no_model(monkeypatch):
    """Loading a backbone fails the test: the CLI must refuse the input before that."""

    def refuse(spec):
        raise AssertionError(f"model loaded before the input was validated ({spec.path})")

    monkeypatch.setattr(cli, "load_backbone", refuse)


@pytest.fixture(scope="module")
def edit_all(tmp_path_factory) -> list[str]:
    """`--tuned` with a tuning result whose base config is EDIT_ALL."""
    path = tmp_path_factory.mktemp("tuned") / "tuned.json"
    path.write_text(json.dumps({"base_config": EDIT_ALL.to_dict(),
                                "chosen": {"alpha": 4.0, "lam": 1.0, "q": 1.0}}))
    return ["--tuned", str(path)]


@pytest.fixture
def good_facts(tmp_path, forget_retain):
    return facts_file(tmp_path / "facts.jsonl", forget_retain[0])


@pytest.fixture(scope="module")
def workflow_checkpoint(tmp_path_factory):
    """A dream twin fine-tuned and saved the way the workflow does (`train_backbone`)."""
    from harness.finetune import FinetuneConfig, train_backbone

    root = tmp_path_factory.mktemp("workflow")
    tofu = write_synthetic(root / "tofu", authors=3, facts_per_author=2, seed=1,
                           answer_style="restated")
    spec = BackboneSpec(name="dream-7b-twin", adapter="dream-twin",
                        options={"size": "micro", "vocab_size": 400})
    torch.set_num_threads(1)
    train_backbone(spec, tofu, root / "finetuned", FinetuneConfig(epochs=1, seed=0),
                   progress=False, train_splits=("full",))
    return root / "finetuned"


# ---- `python -m harness.timerome`: the real entry point -------------------------------------
def _python_m(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "harness.timerome", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


def test_python_m_bad_facts_is_an_error_line_and_exit_2(tiny_checkpoint, tmp_path):
    facts = tmp_path / "facts.jsonl"
    facts.write_text(json.dumps({"question": "Who is Zed?", "answer": "A cat."}) + "\n")
    proc = _python_m("forget", "--backbone-dir", str(tiny_checkpoint), "--facts", str(facts),
                     "--out", str(tmp_path / "m.safetensors"))
    assert proc.returncode == 2, proc.stderr
    line = one_error_line(proc.stderr)
    assert line.startswith(f"error: {facts}, line 1, field 'subject'")


def test_python_m_truncated_weights_name_the_file(tiny_checkpoint, good_facts, tmp_path):
    folder = tmp_path / "ckpt"
    shutil.copytree(tiny_checkpoint, folder)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:weights.stat().st_size // 2])
    proc = _python_m("forget", "--backbone-dir", str(folder), "--facts", str(good_facts),
                     "--out", str(tmp_path / "m.safetensors"), *NO_RETAIN)
    assert proc.returncode == 2, proc.stderr
    assert one_error_line(proc.stderr).startswith(f"error: {weights}: ")


# ---- every argument before the model --------------------------------------------------------
def _bad_inputs(tmp_path: Path, tiny_checkpoint: Path, good: Path) -> dict[str, list]:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"question": "Who is Zed?", "answer": ')
    no_subject = tmp_path / "no_subject.jsonl"
    no_subject.write_text(json.dumps({"question": "Who is Zed?", "answer": "A cat."}) + "\n")
    out = ["--out", tmp_path / "m.safetensors"]
    ckpt = ["--backbone-dir", tiny_checkpoint]
    return {
        "missing facts": ["forget", *ckpt, "--facts", tmp_path / "nope.jsonl", *out],
        "empty facts": ["forget", *ckpt, "--facts", empty, *out],
        "invalid JSON facts": ["forget", *ckpt, "--facts", broken, *out],
        "fact without subject": ["forget", *ckpt, "--facts", no_subject, *out],
        "alpha nan": ["forget", *ckpt, "--facts", good, *out, "--alpha", "nan"],
        "q inf": ["forget", *ckpt, "--facts", good, *out, "--q", "inf"],
        "lam -inf": ["forget", *ckpt, "--facts", good, *out, "--lam", "-inf"],
        "q out of range": ["forget", *ckpt, "--facts", good, *out, "--q", "2"],
        "unknown adapter": ["forget", *ckpt, "--facts", good, *out, "--adapter", "nope-twin"],
        "missing checkpoint": ["forget", "--backbone-dir", tmp_path / "nowhere", "--facts",
                               good, *out],
        "missing tuned file": ["forget", *ckpt, "--facts", good, *out, "--tuned",
                               tmp_path / "tuned.json"],
        "out is a folder": ["forget", *ckpt, "--facts", good, "--out", tmp_path],
        "figure bad facts": ["figure", *ckpt, "--facts", no_subject, "--out", tmp_path / "f"],
        "tune missing corpus": ["tune", *ckpt, "--tofu-dir", tmp_path / "no_corpus",
                                "--out", tmp_path / "t.json"],
        "tune retain_n 0": ["tune", *ckpt, "--tofu-dir", tmp_path, "--retain-n", "0",
                            "--out", tmp_path / "t.json"],
        "apply missing memory": ["apply", "--checkpoint", tiny_checkpoint, "--memory",
                                 tmp_path / "nope.safetensors", "--facts", good],
        "apply bad facts": ["apply", "--checkpoint", tiny_checkpoint, "--memory",
                            tmp_path / "nope.safetensors", "--facts", broken],
    }


BAD = ["missing facts", "empty facts", "invalid JSON facts", "fact without subject",
       "alpha nan", "q inf", "lam -inf", "q out of range", "unknown adapter",
       "missing checkpoint", "missing tuned file", "out is a folder", "figure bad facts",
       "tune missing corpus", "tune retain_n 0", "apply missing memory", "apply bad facts"]


@pytest.mark.parametrize("case", BAD)
def test_bad_input_is_refused_before_the_model_loads(case, tiny_checkpoint, good_facts,
                                                     tmp_path, no_model, capsys):
    argv = _bad_inputs(tmp_path, tiny_checkpoint, good_facts)[case]
    try:
        code, _, err = run_cli(argv, capsys)
    except SystemExit as exc:  # argparse's own refusal: usage + one "error:" line, exit 2
        code, err = exc.code, capsys.readouterr().err
        assert "error:" in err and "Traceback" not in err
    else:
        one_error_line(err)
    assert code == 2


def test_non_finite_argument_names_the_argument(tiny_checkpoint, good_facts, tmp_path, no_model,
                                                capsys):
    argv = _bad_inputs(tmp_path, tiny_checkpoint, good_facts)["alpha nan"]
    with pytest.raises(SystemExit) as info:
        cli.console_main([str(a) for a in argv])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "--alpha" in err and "finite" in err


# ---- the adapter of a checkpoint --------------------------------------------------------------
def test_workflow_checkpoint_needs_no_adapter_flag(workflow_checkpoint, good_facts, tmp_path,
                                                   edit_all, capsys):
    memory = tmp_path / "mem.safetensors"
    code, _, err = run_cli(["forget", "--backbone-dir", workflow_checkpoint, "--facts",
                            good_facts, "--out", memory, *edit_all], capsys)
    assert code == 0, err
    meta = EditMemory.read(memory)[0]
    assert meta["identity"]["adapter"] == "dream-twin"
    assert meta["identity"]["name"] == "dream-7b-twin"
    # finetune_report.json alone (what the workflow records) is enough
    folder = tmp_path / "report_only"
    shutil.copytree(workflow_checkpoint, folder)
    (folder / CONTENT_FILE).unlink()
    code, _, err = run_cli(["forget", "--backbone-dir", folder, "--facts", good_facts,
                            "--out", tmp_path / "m2.safetensors", *edit_all], capsys)
    assert code == 0, err


def test_checkpoint_without_record_requires_the_adapter(tiny_checkpoint, good_facts, tmp_path,
                                                        no_model, capsys):
    folder = tmp_path / "ckpt"
    shutil.copytree(tiny_checkpoint, folder)
    (folder / CONTENT_FILE).unlink()
    code, _, err = run_cli(["forget", "--backbone-dir", folder, "--facts", good_facts,
                            "--out", tmp_path / "m.safetensors"], capsys)
    assert code == 2
    line = one_error_line(err)
    assert "--adapter" in line and "llada-twin" in line and "dream-twin" in line


def test_long_answer_is_an_error_line(tiny_checkpoint, tmp_path, forget_retain, capsys):
    fact = forget_retain[0][0]
    path = tmp_path / "long.jsonl"
    path.write_text(json.dumps({"question": fact.question, "subject": fact.subject,
                                "answer": " ".join(["word"] * 3000)}) + "\n")
    code, _, err = run_cli(["forget", "--backbone-dir", tiny_checkpoint, "--facts", path,
                            "--out", tmp_path / "m.safetensors", *NO_RETAIN], capsys)
    assert code == 2
    assert "exceed the backbone's max_positions" in one_error_line(err)


# ---- apply ----------------------------------------------------------------------------------
@pytest.fixture
def saved_memory(tiny_checkpoint, good_facts, tmp_path, edit_all, capsys):
    memory = tmp_path / "mem.safetensors"
    code, _, err = run_cli(["forget", "--backbone-dir", tiny_checkpoint, "--facts", good_facts,
                            "--out", memory, *edit_all], capsys)
    assert code == 0, err
    return memory


def test_apply_scores_the_facts_with_the_memory(tiny_checkpoint, saved_memory, good_facts,
                                                forget_retain, tmp_path, capsys):
    out = tmp_path / "apply.json"
    code, stdout, err = run_cli(["apply", "--checkpoint", tiny_checkpoint, "--memory",
                                 saved_memory, "--facts", good_facts, "--compare",
                                 "--out", out], capsys)
    assert code == 0, err
    result = json.loads(stdout)
    assert json.loads(out.read_text()) == result
    forget = forget_retain[0]
    assert result["estimator"] == "full_mask" and result["n_facts"] == len(forget)
    assert result["memory_facts"] == len(forget)
    assert [row["question"] for row in result["facts"]] == [f.question for f in forget]
    logp = [row["logp"] for row in result["facts"]]
    assert result["mean_logp"] == pytest.approx(sum(logp) / len(logp))
    assert result["mean_logp"] < result["mean_logp_unedited"] - 5.0
    # the same numbers as loading the memory by hand
    spec = BackboneSpec(name="tiny-timerome", adapter="llada-twin", path=str(tiny_checkpoint))
    backbone = load_backbone(spec)
    memory = EditMemory.load(saved_memory, backbone)
    expected = score_facts(backbone, forget).logp
    memory.detach()
    assert logp == pytest.approx(expected.tolist(), abs=1e-4)


def test_apply_generates_answers(tiny_checkpoint, saved_memory, good_facts, capsys):
    code, stdout, err = run_cli(["apply", "--checkpoint", tiny_checkpoint, "--memory",
                                 saved_memory, "--facts", good_facts, "--generate"], capsys)
    assert code == 0, err
    rows = json.loads(stdout)["facts"]
    assert rows and all(isinstance(row["generated"], str) for row in rows)
    assert all("answer" in row for row in rows)


def test_apply_refuses_a_memory_of_another_backbone(workflow_checkpoint, tiny_checkpoint,
                                                    good_facts, tmp_path, edit_all, capsys,
                                                    monkeypatch):
    memory = tmp_path / "dream.safetensors"
    code, _, err = run_cli(["forget", "--backbone-dir", workflow_checkpoint, "--facts",
                            good_facts, "--out", memory, *edit_all], capsys)
    assert code == 0, err

    def refuse(spec):
        raise AssertionError("the model loaded although the memory names another backbone")

    monkeypatch.setattr(cli, "load_backbone", refuse)
    code, _, err = run_cli(["apply", "--checkpoint", tiny_checkpoint, "--memory", memory,
                            "--facts", good_facts], capsys)
    assert code == 2
    line = one_error_line(err)
    assert str(memory) in line and "was built for backbone" in line


def test_apply_refuses_other_weights_of_the_same_backbone(tiny_checkpoint, other_backbone,
                                                          saved_memory, good_facts, tmp_path,
                                                          capsys):
    folder = tmp_path / "other"
    other_backbone.save_pretrained(str(folder))
    code, _, err = run_cli(["apply", "--checkpoint", folder, "--memory", saved_memory,
                            "--facts", good_facts], capsys)
    assert code == 2
    assert "was built for backbone" in one_error_line(err)


def test_apply_truncated_memory_is_named_before_the_model(tiny_checkpoint, saved_memory,
                                                          good_facts, no_model, capsys):
    saved_memory.write_bytes(saved_memory.read_bytes()[:saved_memory.stat().st_size // 2])
    code, _, err = run_cli(["apply", "--checkpoint", tiny_checkpoint, "--memory", saved_memory,
                            "--facts", good_facts], capsys)
    assert code == 2
    assert one_error_line(err).startswith(f"error: {saved_memory}: ")


# ---- the default method (Table 1's variant) needs retain facts ------------------------------
def test_forget_and_tune_refuse_the_default_method_without_retain_facts(
        tiny_checkpoint, good_facts, tmp_path, no_model, capsys):
    code, _, err = run_cli(["forget", "--backbone-dir", tiny_checkpoint, "--facts", good_facts,
                            "--out", tmp_path / "m.safetensors"], capsys)
    assert code == 2 and "--retain FILE is needed" in one_error_line(err)
    corpus = write_synthetic(tmp_path / "corpus", authors=20, facts_per_author=5, seed=1)
    code, _, err = run_cli(["tune", "--backbone-dir", tiny_checkpoint, "--tofu-dir", corpus,
                            "--out", tmp_path / "t.json"], capsys)
    assert code == 2 and "--calibration-n N is needed" in one_error_line(err)


def test_tune_takes_the_retain_statistics_from_held_out_facts(tiny_checkpoint, tmp_path,
                                                               monkeypatch):
    from harness.timerome import tuning

    corpus = write_synthetic(tmp_path / "corpus", authors=20, facts_per_author=5, seed=1)
    seen = {}

    class Stop(Exception):
        pass

    def fake_tune(backbone, validation, retain, config, calibration=None, **_):
        seen.update(retain=retain, calibration=calibration, config=config)
        raise Stop

    monkeypatch.setattr(tuning, "tune", fake_tune)
    monkeypatch.setattr(cli, "_load", lambda spec: None)
    with pytest.raises(Stop):
        cli.main(["tune", "--backbone-dir", str(tiny_checkpoint), "--tofu-dir", str(corpus),
                  "--out", str(tmp_path / "t.json"), "--retain-n", "10", "--calibration-n", "30"])
    assert len(seen["retain"]) == 10 and len(seen["calibration"]) == 30
    assert not {f.key for f in seen["retain"]} & {f.key for f in seen["calibration"]}
    assert seen["config"] == TimeROMEConfig()  # the method Table 1 runs
    # The workflow's samples: neither touches the retain facts Table 1 scores (same pool,
    # permutation and seed, data.eval_seed; the CLI's split defaults are the workflow's).
    data = load_workflow_config()["data"]
    table1 = split_selection(str(corpus), data["forget_split"], data["retain_split"], 10,
                             data["eval_seed"], 30)
    scored_in_table1 = {f.key for f in table1.retain_eval}
    assert not scored_in_table1 & {f.key for f in seen["retain"] + seen["calibration"]}


def test_tune_defaults_are_the_workflows():
    data = load_workflow_config()["data"]
    args = cli.build_parser().parse_args(["tune", "--backbone-dir", "m", "--tofu-dir", "d",
                                          "--out", "o"])
    assert (args.retain_n, args.eval_seed, args.forget_split, args.retain_split) == (
        data["retain_eval_size"], data["eval_seed"], data["forget_split"], data["retain_split"])


def test_tune_with_too_few_retain_facts_is_one_error_line(tiny_checkpoint, tmp_path, no_model,
                                                          capsys):
    corpus = write_synthetic(tmp_path / "corpus", authors=20, facts_per_author=5, seed=1)
    code, _, err = run_cli(["tune", "--backbone-dir", tiny_checkpoint, "--tofu-dir", corpus,
                            "--out", tmp_path / "t.json", "--retain-n", "60",
                            "--calibration-n", "5"], capsys)
    assert code == 2
    assert one_error_line(err).startswith("error: --retain-n 60: retain sample: blocks of "
                                          "sizes [60, 60, 5] need 120 facts")
