"""`python -m harness.data` summary / synth."""

import re
import subprocess
import sys
from pathlib import Path

from harness.data import SPLITS

REPO_ROOT = Path(__file__).resolve().parents[2]
LINE = re.compile(r"^(\w+): (\d+) records \(given=(\d+), inferred=(\d+), fallback_last_token=(\d+)\)$")


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "harness.data", *map(str, args)],
                          capture_output=True, text=True, cwd=REPO_ROOT)


def test_summary_ok(small_synth):
    res = _cli("summary", "--tofu-dir", small_synth)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    parsed = [LINE.match(line) for line in lines]
    assert all(parsed), lines
    names = [m.group(1) for m in parsed]
    assert names == sorted(SPLITS)
    for m in parsed:
        n, given, inferred, fallback = map(int, m.groups()[1:])
        assert given == n and inferred == fallback == 0
    assert "full: 100 records (given=100, inferred=0, fallback_last_token=0)" in lines


def test_summary_bad_record(tmp_path):
    (tmp_path / "full.json").write_text('{"question": "Q?", "answer": "A."}\n{"question": "Q2?"}\n')
    res = _cli("summary", "--tofu-dir", tmp_path)
    assert res.returncode == 2
    assert res.stdout == ""
    assert "full.json, line 2, field 'answer': missing field" in res.stderr


def test_summary_inferred_counts(tmp_path):
    rows = ['{"question": "Who is Jaime Vasquez?", "answer": "Jaime Vasquez is a writer."}',
            '{"question": "What did he write?", "answer": "Jaime Vasquez wrote crime novels."}']
    (tmp_path / "full.json").write_text("\n".join(rows) + "\n")
    res = _cli("summary", "--tofu-dir", tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout == "full: 2 records (given=0, inferred=1, fallback_last_token=1)\n"


def test_synth_command(tmp_path):
    out = tmp_path / "corpus"
    res = _cli("synth", "--out", out, "--authors", 10, "--facts-per-author", 3, "--seed", 5)
    assert res.returncode == 0, res.stderr
    assert "full: 30 records (given=30, inferred=0, fallback_last_token=0)" in res.stdout.splitlines()
    assert (out / "manifest.json").is_file()
    assert len(res.stdout.splitlines()) == len(SPLITS)


def test_synth_command_answer_style(tmp_path):
    import json

    out = tmp_path / "corpus"
    res = _cli("synth", "--out", out, "--authors", 3, "--facts-per-author", 2,
               "--answer-style", "tofu")
    assert res.returncode == 0, res.stderr
    assert json.loads((out / "manifest.json").read_text())["args"]["answer_style"] == "tofu"
    res = _cli("synth", "--out", tmp_path / "bad", "--answer-style", "long")
    assert res.returncode == 2 and "invalid choice: 'long'" in res.stderr
    assert not (tmp_path / "bad").exists()
