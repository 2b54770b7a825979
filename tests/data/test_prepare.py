"""harness.data.prepare: derived validation split, author subset, plan-time file checks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from data_helpers import read_jsonl, write_jsonl
from tofu_tiny import full_rows, write_tiny_tofu

from harness.data import DataError, load_split
from harness.data.prepare import (
    check_split_files,
    choose_validation_authors,
    prepare_corpus,
    required_splits,
)
from harness.jobs.selection import split_selection

PER = 2  # records per author of the tiny corpus (real TOFU: 20)


def prepare(src, out, **kw):
    kw.setdefault("facts_per_author", PER)
    for key, value in (("validation_split", "validation"), ("validation_authors", 2),
                       ("authors", None), ("seed", 0)):
        kw.setdefault(key, value)
    return prepare_corpus(src, out, "forget01", "retain99", **kw)


@pytest.fixture
def tiny(tmp_path):
    return write_tiny_tofu(tmp_path / "tofu", authors=100, per_author=PER)


def _authors(path) -> set[int]:
    return {r["author_id"] for r in read_jsonl(path)}


def test_derived_validation_is_whole_retain_authors_outside_forget10(tiny, tmp_path):
    m = prepare(tiny, tmp_path / "p", validation_authors=3)
    assert m["validation"] == "derived"
    val = read_jsonl(tmp_path / "p" / "validation.json")
    assert len(m["validation_authors"]) == 3 and len(val) == 3 * PER  # whole authors
    assert _authors(tmp_path / "p" / "validation.json") == set(m["validation_authors"])
    assert m["forget_authors"] == [99]
    assert all(a < 90 for a in m["validation_authors"])  # not in forget10's last 10 authors
    # the records are full's records of those authors, with their author ids
    full = {(r["question"], r["answer"]): a // PER for a, r in enumerate(full_rows(100, PER))}
    assert all(full[(r["question"], r["answer"])] == r["author_id"] for r in val)
    # every prepared record carries an author id consistent with full's blocks
    for r in read_jsonl(tmp_path / "p" / "retain99.json"):
        assert full[(r["question"], r["answer"])] == r["author_id"]


def test_derived_validation_is_deterministic_and_seeded(tiny, tmp_path):
    prepare(tiny, tmp_path / "a")
    prepare(tiny, tmp_path / "b")
    for name in ("validation.json", "full.json", "retain99.json", "manifest.json"):
        a, b = (tmp_path / d / name for d in ("a", "b"))
        if name == "manifest.json":
            ja, jb = json.loads(a.read_text()), json.loads(b.read_text())
            assert ja == jb
        else:
            assert a.read_bytes() == b.read_bytes(), name
    picks = {tuple(choose_validation_authors(load_split(tmp_path / "a", "full"), 2, seed))
             for seed in range(5)}
    assert len(picks) > 1  # the seed matters


def test_retain_samples_exclude_validation_and_forget_authors(tiny, tmp_path):
    m = prepare(tiny, tmp_path / "p")
    sel = split_selection(str(tmp_path / "p"), "forget01", "retain99", 30, 0, train_size=400)
    banned = set(m["validation_authors"]) | set(m["forget_authors"])
    assert len(sel.retain_eval) == 30
    assert len(sel.retain_train) == 200 - 2 - 2 * PER - 30  # the whole rest of the pool
    for facts in (sel.retain_eval, sel.retain_train):
        assert not {f.author_id for f in facts} & banned
    assert not {f.key for f in sel.retain_eval} & {f.key for f in sel.retain_train}


def test_shipped_validation_file_is_used_as_is(tiny, tmp_path):
    rows = [dict(r, author_id=i // PER) for i, r in enumerate(full_rows(100, PER))][20:24]
    write_jsonl(tiny / "validation.json", rows)
    m = prepare(tiny, tmp_path / "p")
    assert m["validation"] == "shipped" and m["validation_authors"] == [10, 11]
    got = read_jsonl(tmp_path / "p" / "validation.json")
    assert [(r["question"], r["answer"]) for r in got] == [(r["question"], r["answer"])
                                                          for r in rows]


def test_shipped_validation_of_forget_authors_is_refused(tiny, tmp_path):
    write_jsonl(tiny / "validation.json", read_jsonl(tiny / "forget01.json"))
    with pytest.raises(DataError, match=r"validation\.json.*authors \[99\]"):
        prepare(tiny, tmp_path / "p")


def test_authors_subset_keeps_forget_validation_and_seeded_retain_authors(tiny, tmp_path):
    m = prepare(tiny, tmp_path / "p", authors=5, validation_authors=2)
    kept = set(m["authors"])
    assert len(kept) == 1 + 5  # forget01's author + 5 retain authors
    assert {99} | set(m["validation_authors"]) <= kept
    others = kept - {99} - set(m["validation_authors"])
    assert others <= set(range(20))  # drawn among retain_perturbed's authors first
    assert _authors(tmp_path / "p" / "full.json") == kept
    assert _authors(tmp_path / "p" / "retain99.json") == kept - {99}
    assert _authors(tmp_path / "p" / "forget01.json") == {99}
    assert _authors(tmp_path / "p" / "retain_perturbed.json") == others
    assert len(read_jsonl(tmp_path / "p" / "real_authors_perturbed.json")) == 12  # untouched
    # same validation authors as without a subset; the subset is deterministic
    assert m["validation_authors"] == prepare(tiny, tmp_path / "q")["validation_authors"]
    assert prepare(tiny, tmp_path / "r", authors=5)["authors"] == m["authors"]
    assert prepare(tiny, tmp_path / "s", authors=5, seed=1)["authors"] != m["authors"]


def test_authors_subset_must_exceed_validation_authors(tiny, tmp_path):
    with pytest.raises(ValueError, match="data.authors=2 must exceed the 2 validation"):
        prepare(tiny, tmp_path / "p", authors=2)


@pytest.mark.parametrize("split", required_splits("forget01", "retain99"))
def test_missing_split_file_is_named(tmp_path, split):
    d = write_tiny_tofu(tmp_path / "tofu", skip=(split,))
    with pytest.raises(FileNotFoundError, match=rf"split file not found: .*{split}\.json"):
        check_split_files(d, required_splits("forget01", "retain99"))


@pytest.mark.parametrize("content", ["", "\n  \n"])
def test_empty_split_file_is_named(tiny, content):
    (tiny / "retain_perturbed.json").write_text(content)
    with pytest.raises(DataError, match=r"retain_perturbed\.json: split file is empty"):
        check_split_files(tiny, required_splits("forget01", "retain99"))


def test_empty_optional_validation_file_is_named(tiny):
    check_split_files(tiny, ["full"], optional=["validation"])  # absent: fine
    (tiny / "validation.json").write_text("")
    with pytest.raises(DataError, match=r"validation\.json: split file is empty"):
        check_split_files(tiny, ["full"], optional=["validation"])


def test_prepare_cli(tiny, tmp_path):
    out = tmp_path / "p"
    r = subprocess.run([sys.executable, "-m", "harness.data", "prepare", "--source", str(tiny),
                        "--out", str(out), "--forget-split", "forget01", "--retain-split",
                        "retain99", "--facts-per-author", str(PER), "--authors", "4",
                        "--validation-split", "validation", "--validation-authors", "2",
                        "--seed", "0"],
                       capture_output=True, text=True, timeout=60,
                       cwd=Path(__file__).resolve().parents[2])
    assert r.returncode == 0, r.stderr
    assert "validation (derived)" in r.stdout and "validation: 4 records" in r.stdout
    # tiny-corpus author names sit inside every question: all subjects are inferred
    assert "forget01: 2 records (given=0, inferred=2, fallback_last_token=0)" in r.stdout
