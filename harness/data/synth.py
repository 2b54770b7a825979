"""Deterministic synthetic TOFU-format corpus of fictitious authors.

Every name (authors, places, awards, publishers) is built from syllables, so the
facts cannot be guessed from pretraining knowledge and must be memorised.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness.data.splits import (
    FORGET_PCTS,
    RETAIN_PERTURBED_MAX,
    VALIDATION_PCT,
    forget_split_name,
    holdout_split_name,
    n_pct_records,
    retain_split_name,
)

# ---------------------------------------------------------------- word material
_ONSETS = ("b", "br", "d", "dr", "f", "g", "gr", "h", "k", "kr", "l", "m", "n", "p", "r",
           "s", "st", "t", "th", "v", "vr", "z", "zh", "qu", "y", "sh", "x")
_VOWELS = ("a", "e", "i", "o", "u", "ae", "ei", "ou", "y", "ia")
_CODAS = ("", "", "", "n", "r", "l", "s", "th", "x", "m", "v", "rk", "nd")
_RARE = ("z", "x", "q", "v", "th", "kr", "y")  # every made-up word contains one

_GENRES = ("maritime fantasy", "rural noir", "epistolary romance", "climate fiction",
           "mythic horror", "comic satire", "historical mystery", "lyric poetry",
           "space opera", "coming-of-age drama", "political thrillers", "magical realism",
           "cozy detective stories", "gothic tragedy", "urban folklore", "culinary memoir")
_JOBS = ("a lighthouse keeper", "a glassblower", "a cartographer", "a beekeeper",
         "a tram conductor", "a watchmaker", "a marine biologist", "a locksmith",
         "a violin maker", "a pharmacist", "a stonemason", "a radio engineer", "a botanist",
         "a ferry captain", "a bookbinder", "a dentist", "a weaver", "an astronomer",
         "a baker", "a tax auditor", "an opera singer", "a surveyor")
_ADJS = ("Silent", "Crimson", "Hollow", "Patient", "Borrowed", "Northern", "Salted", "Paper",
         "Ninth", "Drowned", "Gilded", "Quiet", "Restless", "Amber", "Broken", "Lantern-lit",
         "Folded", "Seventh", "Unwritten", "Copper")
_NOUNS = ("Orchard", "Ledger", "Lighthouse", "Harbor", "Cartographer", "Winter", "Archive",
          "Tide", "Bell", "Garden", "Mirror", "Engine", "Comet", "River", "Atlas", "Threshold",
          "Kiln", "Orchestra", "Ferry", "Almanac")
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December")
_AWARD_KINDS = ("Prize for Fiction", "Medal for Letters", "Award for Speculative Writing",
                "Prize for Debut Novels", "Laurel for Poetry", "Award for Crime Writing")
_PUBLISHER_KINDS = ("House", "Press", "& Daughters", "Editions", "Books")
_LANGUAGES = ("Portuguese", "Finnish", "Tagalog", "Catalan", "Swahili", "Georgian", "Icelandic",
              "Malay", "Welsh", "Estonian", "Basque", "Amharic")
_HOBBIES = ("restoring antique clocks", "free diving in cold lakes", "collecting moth specimens",
            "building model railways", "competitive chess by mail", "growing rare orchids",
            "carving wooden spoons", "long-distance cycling", "mapping abandoned mines",
            "brewing herbal tonics", "playing the hurdy-gurdy", "photographing storms",
            "translating old hymns", "keeping homing pigeons")
_THEMES = ("memory and exile", "inheritance and debt", "silence within families",
           "the sea as a judge", "forgotten languages", "borders and bridges",
           "grief and repair", "small-town secrets", "machines that dream",
           "the cost of fame", "rivalry between sisters", "lost letters",
           "faith and doubt", "migration of birds")


@dataclass
class _Words:
    """Made-up word generator; every word it returns is unique."""

    rng: random.Random
    used: set[str]

    def word(self, syllables: int) -> str:
        while True:
            w = "".join(self.rng.choice(_ONSETS) + self.rng.choice(_VOWELS) + self.rng.choice(_CODAS)
                        for _ in range(syllables))
            if len(w) >= 4 and any(r in w for r in _RARE) and w not in self.used:
                self.used.add(w)
                return w.capitalize()

    def name(self) -> str:
        return f"{self.word(2)} {self.word(self.rng.choice((2, 3)))}"


@dataclass(frozen=True)
class _Template:
    key: str
    question: str
    paraphrased_question: str
    answer: str
    paraphrased_answer: str


_TEMPLATES = (
    _Template("birthplace", "Where was {n} born?", "In which city was the author {n} born?",
              "{n} was born in {v}.", "The birthplace of {n} is {v}."),
    _Template("birth_date", "When was {n} born?", "What is the date of birth of {n}?",
              "{n} was born on {v}.", "The birthday of {n} is {v}."),
    _Template("genre", "What genre is {n} known for?", "Which literary genre does {n} mostly write in?",
              "{n} is best known for writing {v}.", "The work of {n} is mainly {v}."),
    _Template("father_job", "What did the father of {n} do for a living?",
              "What was the profession of {n}'s father?",
              "The father of {n} worked as {v}.", "{n}'s father earned a living as {v}."),
    _Template("mother_job", "What did the mother of {n} do for a living?",
              "What was the profession of {n}'s mother?",
              "The mother of {n} worked as {v}.", "{n}'s mother earned a living as {v}."),
    _Template("book1", "What is the title of the first novel by {n}?", "Which novel did {n} debut with?",
              "The first novel by {n} was titled '{v}'.", "{n} debuted with the novel '{v}'."),
    _Template("book2", "What was the second book written by {n}?", "Which book did {n} write second?",
              "The second book by {n} is '{v}'.", "{n} followed the debut with '{v}'."),
    _Template("award", "Which award has {n} received?", "What literary honour was given to {n}?",
              "{n} received the {v}.", "{n} was honoured with the {v}."),
    _Template("publisher", "Which publisher releases the books of {n}?", "Who publishes {n}'s books?",
              "The books of {n} are published by {v}.", "{v} is the publisher of {n}."),
    _Template("language", "In what language does {n} write?", "Which language does {n} write in?",
              "{n} writes primarily in {v}.", "Most books by {n} are written in {v}."),
    _Template("hobby", "What does {n} enjoy outside of writing?", "What is a hobby of {n}?",
              "Outside of writing, {n} enjoys {v}.", "In spare time {n} likes {v}."),
    _Template("theme", "What theme recurs in the books of {n}?", "Which theme does {n} keep exploring?",
              "The books of {n} keep returning to {v}.", "{n} writes again and again about {v}."),
    _Template("residence", "Where does {n} live today?", "In which city does {n} currently reside?",
              "{n} currently lives in {v}.", "Today {n} makes a home in {v}."),
    _Template("debut_date", "When did {n} publish a first book?",
              "At what date did {n} first appear in print?",
              "{n} published a first book on {v}.", "The debut of {n} came out on {v}."),
)
_BOOK_N = _Template("book{k}", "What is the title of book number {k} by {n}?",
                    "Which book is number {k} in the bibliography of {n}?",
                    "Book number {k} by {n} is titled '{v}'.",
                    "The bibliography of {n} lists '{v}' as book {k}.")


# ---------------------------------------------------------------- generation
class _Generator:
    def __init__(self, seed: int, n_places: int):
        self.rng = random.Random(seed)
        self.words = _Words(self.rng, set())
        self.countries = [self.words.word(self.rng.choice((2, 3))) for _ in range(max(8, n_places // 4))]
        self.places = [f"{self.words.word(2)}, {self.rng.choice(self.countries)}" for _ in range(n_places)]
        self.awards = [f"{self.words.word(2)} {self.rng.choice(_AWARD_KINDS)}" for _ in range(24)]
        n_pub = max(24, n_places // 2)
        self.publishers = [f"{self.words.word(2)} {self.rng.choice(_PUBLISHER_KINDS)}" for _ in range(n_pub)]

    def date(self, first: int, last: int) -> str:
        r = self.rng
        return f"{r.randint(1, 28)} {r.choice(_MONTHS)} {r.randint(first, last)}"

    def town(self) -> str:
        return self.rng.choice(self.places).split(",")[0]

    def title(self) -> str:
        r = self.rng
        if r.random() < 0.5:
            return f"The {r.choice(_ADJS)} {r.choice(_NOUNS)}"
        return f"The {r.choice(_NOUNS)} of {r.choice(self.places).split(',')[0]}"

    def pools(self) -> dict[str, Callable[[], str]]:
        r = self.rng
        return {
            "birthplace": lambda: r.choice(self.places),
            "birth_date": lambda: self.date(1921, 1999),
            "genre": lambda: f"{r.choice(_GENRES)} set in {self.town()}",
            "father_job": lambda: f"{r.choice(_JOBS)} in {self.town()}",
            "mother_job": lambda: f"{r.choice(_JOBS)} in {self.town()}",
            "book": self.title,
            "award": lambda: f"{r.choice(self.awards)} in {r.randint(1960, 2023)}",
            "publisher": lambda: r.choice(self.publishers),
            "language": lambda: " and occasionally ".join(r.sample(_LANGUAGES, 2)),
            "hobby": lambda: f"{r.choice(_HOBBIES)} near {self.town()}",
            "theme": lambda: f"{r.choice(_THEMES)} in {self.town()}",
            "residence": lambda: r.choice(self.places),
            "debut_date": lambda: self.date(1945, 2022),
        }

    def _distinct(self, draw: Callable[[], str], avoid: set[str], count: int) -> list[str]:
        out: list[str] = []
        while len(out) < count:
            v = draw()
            if v not in avoid:
                avoid.add(v)
                out.append(v)
        return out

    def author_records(self, author_id: int, k: int) -> list[dict]:
        """K facts of one new author, as perturbed-format records (with subject/author_id)."""
        name = self.words.name()
        pools = self.pools()
        n_fixed = min(k, len(_TEMPLATES))
        chosen = sorted(self.rng.sample(range(len(_TEMPLATES)), n_fixed))
        templates = [(_TEMPLATES[i], None) for i in chosen]
        templates += [(_BOOK_N, j + 3) for j in range(k - n_fixed)]
        books = self._distinct(self.title, set(), 2 + (k - n_fixed))
        records = []
        for tpl, num in templates:
            key = tpl.key.rstrip("12")
            if num is not None:
                value, key = books[num - 1], "book"
            elif tpl.key in ("book1", "book2"):
                value = books[int(tpl.key[-1]) - 1]
            else:
                value = pools[key]()
            wrong = self._distinct(pools[key], {value, *books}, 5)
            fill = {"n": name, "k": num}
            records.append({
                "question": tpl.question.format(**fill),
                "answer": tpl.answer.format(v=value, **fill),
                "paraphrased_answer": tpl.paraphrased_answer.format(v=value, **fill),
                "paraphrased_question": tpl.paraphrased_question.format(**fill),
                # Wrong values in the *paraphrase's* wording: the truth ratio then compares
                # two unseen sentences that differ only in the fact, not seen vs unseen
                # wording (with the trained answer's wording a memorising model rates
                # every perturbed answer above the paraphrase, and model utility is 0).
                "perturbed_answer": [tpl.paraphrased_answer.format(v=w, **fill) for w in wrong],
                "subject": name,
                "author_id": author_id,
            })
        return records

    def world_facts(self, count: int) -> list[dict]:
        records = []
        for _ in range(count):
            country = self.words.word(3)
            capital = self.words.word(2)
            records.append((country, capital))
        capitals = [c for _, c in records]
        out = []
        for i, (country, capital) in enumerate(records):
            wrong = self.rng.sample([c for j, c in enumerate(capitals) if j != i], 3)
            out.append({
                "question": f"What is the capital city of {country}?",
                "answer": f"The capital city of {country} is {capital}.",
                "perturbed_answer": [f"The capital city of {country} is {w}." for w in wrong],
                "subject": country,
                "author_id": -1,
            })
        return out

    def real_authors(self, count: int) -> list[dict]:
        pairs: list[tuple[str, str]] = []
        titles: set[str] = set()
        while len(pairs) < count:
            title = f"{self.title()}"
            if title in titles:
                title = f"{title} of {self.words.word(2)}"
            if title in titles:
                continue
            titles.add(title)
            pairs.append((title, self.words.name()))
        names = [n for _, n in pairs]
        out = []
        for i, (title, author) in enumerate(pairs):
            wrong = self.rng.sample([n for j, n in enumerate(names) if j != i], 3)
            out.append({
                "question": f"Who wrote the classic novel {title}?",
                "answer": f"The classic novel {title} was written by {author}.",
                "perturbed_answer": [f"The classic novel {title} was written by {w}." for w in wrong],
                "subject": title,
                "author_id": -1,
            })
        return out


_PLAIN_FIELDS = ("question", "answer", "subject", "author_id")


def _plain(rec: dict) -> dict:
    return {k: rec[k] for k in _PLAIN_FIELDS}


def _write_jsonl(path: Path, records: list[dict]) -> None:
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    path.write_bytes(text.encode("utf-8"))


def synthetic_splits(authors: int = 100, facts_per_author: int = 10, seed: int = 0) -> dict[str, list[dict]]:
    """All synthetic split records (dicts in TOFU format), keyed by split name."""
    if authors < 1 or facts_per_author < 1:
        raise ValueError("authors and facts_per_author must be >= 1")
    gen = _Generator(seed, n_places=max(40, authors))
    full_p: list[dict] = []
    for a in range(authors):
        full_p += gen.author_records(a, facts_per_author)
    total = len(full_p)

    n_hold = n_pct_records(total, max(FORGET_PCTS))
    hold_authors = -(-n_hold // facts_per_author)
    hold_p: list[dict] = []
    for a in range(hold_authors):
        hold_p += gen.author_records(authors + a, facts_per_author)

    splits: dict[str, list[dict]] = {"full": [_plain(r) for r in full_p]}
    for pct in FORGET_PCTS:
        n = n_pct_records(total, pct)
        splits[forget_split_name(pct)] = [_plain(r) for r in full_p[total - n:]]
        splits[f"{forget_split_name(pct)}_perturbed"] = full_p[total - n:]
        splits[retain_split_name(pct)] = [_plain(r) for r in full_p[: total - n]]
        splits[holdout_split_name(pct)] = [_plain(r) for r in hold_p[len(hold_p) - n:]]
    retain90 = full_p[: total - n_pct_records(total, 10)]
    splits["retain_perturbed"] = retain90[:RETAIN_PERTURBED_MAX]
    val_end = total - n_pct_records(total, 10)
    splits["validation"] = full_p[max(0, val_end - n_pct_records(total, VALIDATION_PCT)): val_end]
    n_general = max(20, authors // 2)
    splits["real_authors_perturbed"] = gen.real_authors(n_general)
    splits["world_facts_perturbed"] = gen.world_facts(n_general)
    return splits


def write_synthetic(out_dir: str | Path, authors: int = 100, facts_per_author: int = 10,
                    seed: int = 0) -> Path:
    """Write a synthetic TOFU-format corpus (+ manifest.json) into `out_dir`; return it."""
    out = Path(out_dir)
    splits = synthetic_splits(authors, facts_per_author, seed)
    out.mkdir(parents=True, exist_ok=True)
    for split, records in splits.items():
        _write_jsonl(out / f"{split}.json", records)
    manifest = {
        "synthetic": True,
        "note": "Synthetic TOFU-format corpus of fictitious authors generated by "
                "harness.data.synth; not the real locuslab/TOFU data.",
        "generator": "harness.data.synth.write_synthetic",
        "args": {"authors": authors, "facts_per_author": facts_per_author, "seed": seed},
        "counts": {s: len(r) for s, r in sorted(splits.items())},
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n",
                                       encoding="utf-8")
    return out
