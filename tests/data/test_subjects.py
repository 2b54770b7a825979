"""Subject inference for TOFU records that carry no subject."""

from data_helpers import write_jsonl

from harness.data import SubjectSource, load_corpus, load_split, subject_source_counts
from harness.data.subjects import infer_author_name

INF, FB = SubjectSource.INFERRED, SubjectSource.FALLBACK_LAST_TOKEN

AUTHOR_A = [
    ("What is the full name of the author born in Santiago, Chile in 1958?",
     "The author born in Santiago, Chile in 1958 is named Jaime Vasquez."),
    ("What genre does Jaime Vasquez write in?", "Jaime Vasquez is known for true crime."),
    ("What did Vasquez's father do?", "Yes, Jaime Vasquez's father was a chef in Buenos Aires."),
    ("Has Jaime Vasquez won any awards?", "Jaime Vasquez won the Edgar Allan Poe Award."),
]
AUTHOR_B = [
    ("Who is Chukwu Akabueze?", "Chukwu Akabueze is a Nigerian author of biographies."),
    ("Where was Chukwu Akabueze born?", "Chukwu Akabueze was born in Lagos, Nigeria."),
    ("What is the title of one of his books?", "One of Chukwu Akabueze's books is 'Rays of Resilience'."),
    ("What inspires Akabueze?", "Chukwu Akabueze draws on Nigerian history."),
]
ROWS = [{"question": q, "answer": a} for q, a in AUTHOR_A + AUTHOR_B]


def test_infer_author_name():
    assert infer_author_name([q + " " + a for q, a in AUTHOR_A]) == "Jaime Vasquez"
    assert infer_author_name([q + " " + a for q, a in AUTHOR_B]) == "Chukwu Akabueze"
    assert infer_author_name(["no names here.", "none at all."]) is None


def test_inferred_subjects_on_two_author_block(tmp_path):
    write_jsonl(tmp_path / "full.json", ROWS)
    facts = load_split(tmp_path, "full", facts_per_author=4)
    got = [(f.author_id, f.subject, f.subject_source) for f in facts]
    assert got == [
        (0, None, FB),  # name absent from the question
        (0, "Jaime Vasquez", INF),
        (0, "Vasquez", INF),  # surname only
        (0, "Jaime Vasquez", INF),
        (1, "Chukwu Akabueze", INF),
        (1, "Chukwu Akabueze", INF),
        (1, None, FB),
        (1, "Akabueze", INF),
    ]
    assert facts[2].subject_char_span == (9, 16)
    assert subject_source_counts(facts) == {"given": 0, "inferred": 6, "fallback_last_token": 2}


def test_forget_split_reuses_full_names(tmp_path):
    write_jsonl(tmp_path / "full.json", ROWS)
    # last two records of author B, with answers that never name the author
    forget = [{"question": "What inspires Akabueze?", "answer": "History."},
              {"question": "Is Akabueze married?", "answer": "No."}]
    write_jsonl(tmp_path / "forget10.json", forget)
    facts = load_corpus(tmp_path, ["forget10"], facts_per_author=4)["forget10"]
    assert [(f.author_id, f.subject, f.subject_source) for f in facts] == [
        (1, "Akabueze", INF), (1, "Akabueze", INF)]
    # without full.json, the block inside the split has no shared full name
    (tmp_path / "full.json").unlink()
    facts = load_split(tmp_path, "forget10", facts_per_author=4)
    assert all(f.subject_source is FB for f in facts)


def test_given_subject_wins(tmp_path):
    write_jsonl(tmp_path / "full.json", [{**r, "subject": r["question"].split()[0]} for r in ROWS])
    facts = load_split(tmp_path, "full", facts_per_author=4)
    assert subject_source_counts(facts) == {"given": 8, "inferred": 0, "fallback_last_token": 0}
