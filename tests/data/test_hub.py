"""Hub loader: datasets.load_dataset is monkeypatched (no network)."""

import json
import subprocess
import sys

import datasets
import pytest
from data_helpers import write_jsonl

from harness.data import DataError, SubjectSource, load_hub_split, load_split

F = 20


def _tofu_forget01_rows():
    rows = []
    for author, name in ((198, "Zorvel Quintaran"), (199, "Myrrha Ostavex")):
        for i in range(F):
            q = f"What is fact {i} about {name}?" if i % 4 else f"What is fact {i} about this author?"
            rows.append({"question": q, "answer": f"{name} has property number {author}-{i}."})
    return rows


@pytest.fixture
def fake_hub(monkeypatch):
    calls = []
    tables = {}

    def load_dataset(path, name=None, **kwargs):
        calls.append((path, name, kwargs))
        return datasets.DatasetDict({"train": datasets.Dataset.from_list(tables[name])})

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    return calls, tables


def test_hub_split_converted_like_local(fake_hub, tmp_path):
    calls, tables = fake_hub
    tables["forget01"] = rows = _tofu_forget01_rows()
    facts = load_hub_split("forget01", cache_dir=str(tmp_path / "cache"))
    assert calls == [("locuslab/TOFU", "forget01", {"cache_dir": str(tmp_path / "cache")})]
    # TOFU layout: forget01 = last 40 of 4000 records -> authors 198 and 199
    assert [f.author_id for f in facts] == [198] * F + [199] * F
    assert facts[1].subject == "Zorvel Quintaran" and facts[1].subject_source is SubjectSource.INFERRED
    assert facts[0].subject is None and facts[0].subject_source is SubjectSource.FALLBACK_LAST_TOKEN
    # identical to the local reader on the same records
    write_jsonl(tmp_path / "forget01.json", rows)
    assert facts == load_split(tmp_path, "forget01")


def test_hub_perturbed_rows(fake_hub):
    _, tables = fake_hub
    tables["world_facts_perturbed"] = [
        {"question": "What is the capital of France?", "answer": "Paris",
         "perturbed_answer": ["Lyon", "Nice", "Lille"]}]
    (fact,) = load_hub_split("world_facts_perturbed")
    assert fact.perturbed_answers == ("Lyon", "Nice", "Lille") and fact.author_id == -1


@pytest.mark.parametrize(
    "bad_row, field",
    [({"question": "Q?", "answer": ""}, "answer"),
     ({"question": "Q?", "answer": "A.", "subject": "Nobody"}, "subject")],
)
def test_hub_rows_validated(fake_hub, bad_row, field):
    _, tables = fake_hub
    tables["full"] = [{"question": "Where?", "answer": "There.", "subject": None}, bad_row]
    with pytest.raises(DataError) as info:
        load_hub_split("full")
    assert (info.value.path, info.value.line, info.value.field) == ("hf://locuslab/TOFU/full", 2, field)


def test_hub_duplicates_rejected(fake_hub):
    _, tables = fake_hub
    tables["full"] = [{"question": "Q?", "answer": "A."}] * 2
    with pytest.raises(DataError, match="line 2.*duplicate.*line 1"):
        load_hub_split("full")


def test_datasets_not_imported_eagerly():
    code = "import sys, harness.data; print('datasets' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("name", ["validation", "holdout01"])
def test_configs_tofu_lacks_are_refused_before_any_download(fake_hub, name):
    calls, _ = fake_hub
    with pytest.raises(ValueError, match=f"locuslab/TOFU has no config '{name}'"):
        load_hub_split(name)
    assert calls == []


def test_fetch_tofu_refuses_configs_tofu_lacks(fake_hub, tmp_path, capsys):
    from harness.jobs import fetch_tofu

    calls, _ = fake_hub
    job = {"out": str(tmp_path), "splits": ["full", "validation"]}
    assert fetch_tofu.main(["--job", json.dumps(job)]) == 2
    assert "no config(s) validation" in capsys.readouterr().err
    assert calls == [] and not list(tmp_path.iterdir())


@pytest.mark.parametrize("pct", [1, 5, 10])
def test_every_split_a_config_needs_is_a_hub_config(pct):
    from harness.data.hub import HUB_CONFIGS
    from harness.data.prepare import required_splits

    assert set(required_splits(f"forget{pct:02d}", f"retain{100 - pct}")) <= set(HUB_CONFIGS)
