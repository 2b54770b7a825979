"""Every kind of bad record raises DataError naming file, 1-based line and field."""

import json

import pytest
from data_helpers import write_jsonl

from harness.data import DataError, load_corpus, load_split

GOOD = {"question": "Where was Jaime Vasquez born?", "answer": "He was born in Santiago."}
GOOD2 = {"question": "What does Jaime Vasquez write?", "answer": "He writes true crime."}
PERT = {**GOOD, "paraphrased_answer": "Santiago.", "paraphrased_question": "Birthplace?",
        "perturbed_answer": ["a", "b", "c", "d", "e"]}
GEN = {"question": "What is the capital of France?", "answer": "Paris.", "perturbed_answer": ["x", "y", "z"]}


def _lines(*objs):
    return b"".join(json.dumps(o).encode() + b"\n" for o in objs)


CASES = {
    # name: (split, file bytes, line, field, text in message)
    "missing_field": ("forget01", _lines(GOOD, {"question": "Q?"}), 2, "answer", "missing"),
    "empty_answer": ("forget01", _lines(GOOD, GOOD2, {"question": "Q?", "answer": " "}), 3, "answer", "empty"),
    "empty_question": ("full", _lines({"question": "", "answer": "A."}), 1, "question", "empty"),
    "wrong_type": ("retain99", _lines(GOOD, {"question": "Q?", "answer": 5}), 2, "answer", "string"),
    "subject_not_in_question": (
        "full", _lines(GOOD, {**GOOD2, "subject": "Basil"}), 2, "subject", "does not occur"),
    "author_id_type": ("full", _lines({**GOOD, "author_id": "7"}), 1, "author_id", "integer"),
    "non_utf8": ("forget05", _lines(GOOD) + b'{"question": "Q\xff?", "answer": "A."}\n', 2, None, "UTF-8"),
    "invalid_json": ("holdout10", _lines(GOOD, GOOD2) + b'{"question": "Q?", "answer": \n', 3, None, "JSON"),
    "not_an_object": ("full", _lines(GOOD, ["Q?", "A."]), 2, None, "object"),
    "duplicate": ("full", _lines(GOOD, GOOD2, GOOD), 3, "question", "line 1"),
    "perturbed_length": (
        "forget01_perturbed", _lines(PERT, {**PERT, "question": "Q2?", "perturbed_answer": ["a"] * 4}),
        2, "perturbed_answer", "expected 5"),
    "perturbed_missing": (
        "retain_perturbed", _lines({k: v for k, v in PERT.items() if k != "paraphrased_question"}),
        1, "paraphrased_question", "missing"),
    "general_length": (
        "world_facts_perturbed", _lines(GEN, {**GEN, "question": "Q?", "perturbed_answer": ["x"] * 5}),
        2, "perturbed_answer", "expected 3"),
    "blank_lines_counted": ("full", _lines(GOOD) + b"\n\n" + _lines({"question": "Q?"}), 4, "answer", "missing"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_record(tmp_path, case):
    split, data, line, field, text = CASES[case]
    (tmp_path / f"{split}.json").write_bytes(data)
    with pytest.raises(DataError) as info:
        load_split(tmp_path, split)
    err = info.value
    assert err.path.endswith(f"{split}.json")
    assert (err.line, err.field) == (line, field)
    msg = str(err)
    assert f"{split}.json, line {line}" in msg
    if field is not None:
        assert f"field '{field}'" in msg
    assert text in msg


@pytest.mark.parametrize("bad_split", ["full", "world_facts_perturbed"])
def test_corpus_with_one_bad_file_returns_nothing(tmp_path, bad_split):
    write_jsonl(tmp_path / "full.json", [GOOD, GOOD2])
    write_jsonl(tmp_path / "forget01.json", [GOOD2])
    write_jsonl(tmp_path / "world_facts_perturbed.json", [GEN])
    good = GEN if bad_split == "world_facts_perturbed" else GOOD
    (tmp_path / f"{bad_split}.json").write_bytes(_lines(good) + b"not json\n")
    result = None
    with pytest.raises(DataError, match=rf"{bad_split}\.json, line 2"):
        result = load_corpus(tmp_path)
    assert result is None


def test_forget_split_fails_when_full_is_bad(tmp_path):
    # full.json is read for subject inference, so it is validated too
    write_jsonl(tmp_path / "forget01.json", [GOOD2])
    (tmp_path / "full.json").write_bytes(_lines(GOOD, GOOD))
    with pytest.raises(DataError, match="full.json, line 2"):
        load_split(tmp_path, "forget01")


def test_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_corpus(tmp_path)
    with pytest.raises(FileNotFoundError):
        load_split(tmp_path, "full")
    with pytest.raises(ValueError):
        load_split(tmp_path, "nonsense")
