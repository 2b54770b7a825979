import json

from data_helpers import read_jsonl

from harness.data import SPLITS, SubjectSource, load_corpus, write_synthetic
from harness.data.splits import n_pct_records

DEFAULT_SIZES = {
    "full": 1000,
    "forget01": 10, "forget05": 50, "forget10": 100,
    "forget01_perturbed": 10, "forget05_perturbed": 50, "forget10_perturbed": 100,
    "retain99": 990, "retain95": 950, "retain90": 900,
    "holdout01": 10, "holdout05": 50, "holdout10": 100,
    "retain_perturbed": 400, "validation": 50,
    "real_authors_perturbed": 50, "world_facts_perturbed": 50,
}


def _files(d):
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())}


def _qa(records):
    return [(r["question"], r["answer"]) for r in records]


def test_deterministic_bytes(tmp_path):
    a = write_synthetic(tmp_path / "a", authors=12, facts_per_author=4, seed=7)
    b = write_synthetic(tmp_path / "b", authors=12, facts_per_author=4, seed=7)
    c = write_synthetic(tmp_path / "c", authors=12, facts_per_author=4, seed=8)
    fa, fb, fc = _files(a), _files(b), _files(c)
    assert set(fa) == {f"{s}.json" for s in SPLITS} | {"manifest.json"}
    assert fa == fb
    assert fa["full.json"] != fc["full.json"]
    assert fa["world_facts_perturbed.json"] != fc["world_facts_perturbed.json"]


def test_default_sizes_and_manifest(default_synth):
    corpus = load_corpus(default_synth)
    assert {s: len(f) for s, f in corpus.items()} == DEFAULT_SIZES
    manifest = json.loads((default_synth / "manifest.json").read_text())
    assert manifest["synthetic"] is True and "synthetic" in manifest["note"].lower()
    assert manifest["args"] == {"authors": 100, "facts_per_author": 10, "seed": 0}
    assert manifest["counts"] == DEFAULT_SIZES


def test_split_relations(small_synth):
    raw = {s: read_jsonl(small_synth / f"{s}.json") for s in SPLITS}
    full = raw["full"]
    total = len(full)
    assert total == 100
    full_authors = {r["author_id"] for r in full}
    assert [r["author_id"] for r in full] == sorted(r["author_id"] for r in full)
    for pct in (1, 5, 10):
        n = n_pct_records(total, pct)
        forget, retain = raw[f"forget{pct:02d}"], raw[f"retain{100 - pct:02d}"]
        assert forget == full[total - n:]  # forget = last records of full
        assert retain == full[: total - n]  # retain = complementary first records
        assert retain + forget == full
        assert _qa(raw[f"forget{pct:02d}_perturbed"]) == _qa(forget)
        holdout = raw[f"holdout{pct:02d}"]
        assert len(holdout) == n
        assert not {r["author_id"] for r in holdout} & full_authors
        assert not {r["subject"] for r in holdout} & {r["subject"] for r in full}
    assert _qa(raw["holdout01"]) == _qa(raw["holdout10"])[-1:]
    retain90 = raw["retain90"]
    assert _qa(raw["retain_perturbed"]) == _qa(retain90)[: min(400, len(retain90))]

    val = _qa(raw["validation"])
    n10, n5 = n_pct_records(total, 10), n_pct_records(total, 5)
    assert val == _qa(full)[total - n10 - n5: total - n10]
    assert set(val) <= set(_qa(retain90))
    for s in ("forget01", "forget05", "forget10", "holdout01", "holdout05", "holdout10"):
        assert not set(val) & set(_qa(raw[s])), s

    for s in ("real_authors_perturbed", "world_facts_perturbed"):
        assert len(raw[s]) == 20
        assert all(r["author_id"] == -1 and r["subject"] in r["question"] for r in raw[s])


def test_fact_content(default_synth):
    recs = read_jsonl(default_synth / "retain_perturbed.json") + read_jsonl(
        default_synth / "forget10_perturbed.json")
    for r in recs:
        assert r["subject"] in r["question"] and r["subject"] in r["paraphrased_question"]
        assert 5 <= len(r["answer"].split()) <= 15, r["answer"]
        assert len(set(r["perturbed_answer"])) == 5 and r["answer"] not in r["perturbed_answer"]
        assert r["paraphrased_answer"] != r["answer"]
    full = read_jsonl(default_synth / "full.json")
    names = {r["subject"] for r in full}
    assert len(names) == 100 and all(len(n.split()) == 2 for n in names)
    # answers are author-specific: with the name removed they are still mostly distinct
    stripped = {r["answer"].replace(r["subject"], "") for r in full}
    assert len(stripped) > 0.6 * len(full)


def test_round_trip(small_synth):
    corpus = load_corpus(small_synth)
    for split, facts in corpus.items():
        raw = read_jsonl(small_synth / f"{split}.json")
        assert len(raw) == len(facts)
        for i, (r, f) in enumerate(zip(raw, facts)):
            assert (f.split, f.index) == (split, i)
            assert (f.question, f.answer, f.subject, f.author_id) == (
                r["question"], r["answer"], r["subject"], r["author_id"])
            assert f.subject_source is SubjectSource.GIVEN
            assert f.perturbed_answers == tuple(r.get("perturbed_answer", ()))
            assert f.paraphrased_answer == r.get("paraphrased_answer")
            assert f.paraphrased_question == r.get("paraphrased_question")
            assert f.subject_char_span is not None


def test_many_facts_per_author(tmp_path):
    d = write_synthetic(tmp_path, authors=10, facts_per_author=20, seed=1)
    corpus = load_corpus(d)
    assert len(corpus["full"]) == 200 and len(corpus["forget01"]) == 2
    assert len(corpus["holdout10"]) == 20


def test_perturbed_answers_use_the_paraphrase_wording(default_synth):
    """Truth ratio compares paraphrase vs perturbed: both must be in the same (unseen)
    wording, so that only the fact differs. Each perturbed answer is closer, as a string,
    to the paraphrased answer than to the trained answer."""
    from difflib import SequenceMatcher

    recs = read_jsonl(default_synth / "retain_perturbed.json")
    for r in recs:
        for wrong in r["perturbed_answer"]:
            to_para = SequenceMatcher(None, wrong, r["paraphrased_answer"]).ratio()
            to_answer = SequenceMatcher(None, wrong, r["answer"]).ratio()
            assert to_para > to_answer, (wrong, r["paraphrased_answer"], r["answer"])
