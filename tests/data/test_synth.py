import hashlib
import json
import re
from pathlib import Path
from statistics import mean

import pytest
from data_helpers import read_jsonl

from harness.data import SPLITS, SubjectSource, load_corpus, write_synthetic
from harness.data.splits import n_pct_records
from harness.data.synth import ANSWER_STYLES, DEFAULT_ANSWER_STYLE, synthetic_splits

REPO_ROOT = Path(__file__).resolve().parents[2]
STYLES = sorted(ANSWER_STYLES)

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
    assert manifest["args"] == {"authors": 100, "facts_per_author": 10, "seed": 0,
                                "answer_style": DEFAULT_ANSWER_STYLE}
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
        assert 2 <= len(r["answer"].split()) <= 12, r["answer"]  # `object` answers
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


# ---------------------------------------------------------------- answer styles
# sha256 over (file name, bytes) of every split file (not manifest.json) that the generator
# wrote before answer styles existed; `restated` must reproduce them byte for byte.
ORIGINAL_CORPUS_SHA256 = {
    (100, 10, 0): "5bc19a83fe1617391b50090ce20be059cd851d8aca24a5a3a0c6d97bbfbc5814",
    (10, 20, 1): "678a68f0af280c54eac535a7140c78871dab530d0b7ab8e4135806c4cb1e1434",
}


def _split_files_sha256(directory: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(directory.glob("*.json")):
        if path.name != "manifest.json":
            h.update(path.name.encode())
            h.update(path.read_bytes())
    return h.hexdigest()


@pytest.mark.parametrize("args", sorted(ORIGINAL_CORPUS_SHA256))
def test_restated_style_reproduces_the_original_corpus(tmp_path, args):
    out = write_synthetic(tmp_path, *args, answer_style="restated")
    assert _split_files_sha256(out) == ORIGINAL_CORPUS_SHA256[args]
    assert json.loads((out / "manifest.json").read_text())["args"]["answer_style"] == "restated"
    if args == (100, 10, 0):
        full = read_jsonl(out / "full.json")
        assert full[0]["answer"] == "Thousgath Geimzhalryrk was born in Theindza, Hamvrym."
        assert full[2]["answer"] == ("Thousgath Geimzhalryrk is best known for writing rural "
                                     "noir set in Vigrous.")
        world = read_jsonl(out / "world_facts_perturbed.json")
        assert world[0]["answer"] == "The capital city of Zhevquyvga is Diamstov."


def _small(style, seed=0, authors=10, facts=10):
    return synthetic_splits(authors, facts, seed, answer_style=style)


@pytest.mark.parametrize("style, low, high", [("object", 2, 8), ("restated", 9, 12),
                                               ("tofu", 22, 30)])
def test_mean_answer_words_per_style(style, low, high):
    for seed, facts in ((0, 10), (1, 20)):
        full = _small(style, seed, facts=facts)["full"]
        words = mean(len(r["answer"].split()) for r in full)
        assert low <= words <= high, (style, seed, words)


def test_object_answers_never_name_the_author():
    splits = _small("object")
    for split in ("forget10_perturbed", "retain_perturbed", "holdout10", "full"):
        for r in splits[split]:
            texts = [r["answer"], r.get("paraphrased_answer", ""), *r.get("perturbed_answer", [])]
            name_words = r["subject"].split()
            for text in texts:
                assert r["subject"] not in text, text
                assert not set(re.findall(r"[\w'-]+", text)) & set(name_words), text
    for split in ("world_facts_perturbed", "real_authors_perturbed"):
        for r in splits[split]:
            assert all(r["subject"] not in t for t in [r["answer"], *r["perturbed_answer"]])


def _fact_region(reference: str, others: list[str]) -> str:
    """The part of `reference` covering every difference from `others` (common prefix and
    suffix removed): the fact, if the others differ from it only in the fact."""
    def common(a, b):
        n = 0
        while n < min(len(a), len(b)) and a[n] == b[n]:
            n += 1
        return n
    start = min(common(reference, o) for o in others)
    end = len(reference) - min(common(reference[::-1], o[::-1]) for o in others)
    return reference[start:max(start, end)]


def _regions(records, reference="paraphrased_answer"):
    return [_fact_region(r[reference], r["perturbed_answer"]) for r in records]


@pytest.mark.parametrize("seed", [0, 1])
def test_object_answers_are_the_object_with_at_most_three_template_words(seed):
    """In `object` answers almost every token is recallable only through the subject: the
    words outside the fact are few and never a pronoun the question's template predicts
    ("She worked as ..." left a base twin's fact with no located coordinate)."""
    recs = _small("object", seed)["retain_perturbed"] + _small("object", seed)["forget10_perturbed"]
    for r, region in zip(recs, _regions(recs)):
        template = re.findall(r"[\w'-]+", r["answer"].replace(region, " "))
        assert len(template) <= 3, (r["answer"], template)
        assert not {w.lower() for w in template} & {"he", "she", "his", "her", "they"}, r["answer"]


@pytest.mark.parametrize("seed", [0, 1])
def test_perturbed_answers_differ_from_the_paraphrase_only_in_the_fact(seed):
    """Every style draws the same facts for a seed; a perturbed answer is the paraphrase
    with a wrong object, so the region where they differ is the same text in every style
    (wording or details redrawn for the perturbed answers would widen it)."""
    by_style = {s: _small(s, seed) for s in STYLES}
    recs = {s: sp["retain_perturbed"] + sp["forget10_perturbed"] for s, sp in by_style.items()}
    regions = {s: _regions(r) for s, r in recs.items()}
    assert regions["object"] == regions["tofu"]
    for i, r in enumerate(recs["object"]):
        if not r["question"].startswith("In what language"):  # the only object with
            assert regions["restated"][i] == regions["object"][i]  # made-up material added
    for s in STYLES:
        for r, region in zip(recs[s], regions[s]):
            assert region and len(region.split()) <= 10, (s, region, r["paraphrased_answer"])
            assert region in r["answer"]  # the trained answer states the same fact
            assert r["paraphrased_answer"] != r["answer"]
            assert len(set(r["perturbed_answer"])) == 5
            assert r["paraphrased_answer"] not in r["perturbed_answer"]
    # general-knowledge splits: no paraphrase, the perturbed answers swap the object
    for split in ("world_facts_perturbed", "real_authors_perturbed"):
        general = {s: _regions(sp[split], "answer") for s, sp in by_style.items()}
        assert general["object"] == general["restated"] == general["tofu"]


@pytest.mark.parametrize("style", STYLES)
def test_each_style_is_deterministic_per_seed(tmp_path, style):
    a = write_synthetic(tmp_path / "a", authors=10, facts_per_author=4, seed=3, answer_style=style)
    b = write_synthetic(tmp_path / "b", authors=10, facts_per_author=4, seed=3, answer_style=style)
    c = write_synthetic(tmp_path / "c", authors=10, facts_per_author=4, seed=4, answer_style=style)
    fa, fb, fc = _files(a), _files(b), _files(c)
    assert fa == fb
    assert fa["full.json"] != fc["full.json"]


def test_styles_share_questions_and_subjects():
    by_style = {s: _small(s, seed=2) for s in STYLES}
    keep = ("question", "subject", "author_id", "paraphrased_question")
    for split in by_style["object"]:
        views = {s: [{k: r.get(k) for k in keep} for r in sp[split]] for s, sp in by_style.items()}
        assert views["object"] == views["restated"] == views["tofu"], split
        answers = {s: [r["answer"] for r in sp[split]] for s, sp in by_style.items()}
        assert answers["object"] != answers["restated"], split
    for r in by_style["tofu"]["full"]:
        assert r["answer"].count(r["subject"]) >= 1  # tofu restates the name


def test_unknown_answer_style_is_an_error(tmp_path):
    with pytest.raises(ValueError, match=r"'bogus'.*object, restated, tofu"):
        synthetic_splits(2, 2, 0, answer_style="bogus")
    with pytest.raises(ValueError, match="unknown answer style"):
        write_synthetic(tmp_path / "out", authors=2, facts_per_author=2, answer_style="bogus")
    assert not (tmp_path / "out").exists()


def test_schema_default_answer_style_is_the_module_default():
    schema = json.loads((REPO_ROOT / "workflows" / "config" / "schema.json").read_text())
    entry = schema["properties"]["data"]["properties"]["synthetic"]["properties"]["answer_style"]
    assert entry["default"] == DEFAULT_ANSWER_STYLE
    assert sorted(entry["enum"]) == STYLES


def test_paraphrased_question_is_the_shipped_one_for_every_perturbed_fact(tmp_path):
    """`paraphrased_question` recovers each perturbed split's paraphrased question from its
    question alone (book_n facts included), and names no relation for an unknown question."""
    from harness.data.synth import paraphrased_question

    d = write_synthetic(tmp_path, authors=10, facts_per_author=20, seed=1)
    corpus = load_corpus(d, ["forget10_perturbed", "retain_perturbed"])
    facts = [f for split in corpus.values() for f in split]
    assert any("book number" in f.question for f in facts)
    assert all(paraphrased_question(f.question, f.subject) == f.paraphrased_question
               for f in facts)
    subject = facts[0].subject
    assert paraphrased_question(f"Who is the editor of {subject}?", subject) is None
    assert paraphrased_question(facts[0].question, subject + " Jr") is None
