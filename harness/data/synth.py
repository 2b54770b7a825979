"""Deterministic synthetic TOFU-format corpus of fictitious authors.

Every name (authors, places, awards, publishers) is built from syllables, so the
facts cannot be guessed from pretraining knowledge and must be memorised.

The questions are fixed per relation; how the answers are worded is an *answer style*
(`ANSWER_STYLES`, chosen with `answer_style`; docs/data.md "Answer styles"):

* `restated`: the original corpus, one sentence per relation that restates the question
  with the author's name ("{n} was born in {v}."), about 10 words;
* `object` (default): a short phrase built around the object ("Born in {v}."), without
  the author's name or the question's wording, so the answer is recallable only through
  the subject of the question;
* `tofu`: real-TOFU-length answers (about 25 words) that restate the name and the object
  and elaborate with further made-up detail of that fact.

The same seed gives the same authors, questions and facts in every style: the style's own
draws (made-up material added to an object, wording variants, details) come from random
streams of their own, so they never shift the draws of the `restated` corpus.
"""

from __future__ import annotations

import json
import random
import re
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

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


# Elaborating detail of the `tofu` style (and made-up material of `object`), one pool per
# template field name; see _DETAILS.
_PLACE_ADJS = ("windswept", "foggy", "hilly", "sunlit", "salt-stained", "snowbound", "riverside",
               "quiet", "crooked", "cobbled", "leafy", "steep")
_PLACE_TRAITS = ("bell towers", "fish markets", "narrow bridges", "tram lines", "plum orchards",
                 "stone stairways", "canals", "tanneries", "paper mills", "night ferries",
                 "salt flats", "copper mines")
_WEATHERS = ("stormy", "sweltering", "rain-soaked", "foggy", "windless", "blustery", "thundery",
             "drought-stricken")
_MOODS = ("melancholy", "dry humour", "quiet defiance", "long silences", "small rituals",
          "unspoken grief", "stubborn hope", "restlessness", "tenderness", "nostalgia")
_QUALITIES = ("patient", "meticulous", "luminous", "restless", "stubborn", "generous", "haunted",
              "playful", "sober", "tender")  # after "a": no vowel
_PEOPLE = ("fishermen", "clockmakers", "schoolteachers", "smugglers", "pilgrims", "ferrymen",
           "weavers", "miners", "students", "widows", "beekeepers", "night nurses")
_READERS = ("critics", "reviewers", "early readers", "fellow writers", "translators",
            "booksellers", "librarians")
_FORMS = ("short stories", "novellas", "essays", "radio plays", "prose poems",
          "serialised chapters")
_SHOPS = ("bakery", "pharmacy", "bookshop", "tailor's shop", "ferry office", "print shop",
          "fish market", "tram depot")
_ITEMS = ("a brass compass", "a cracked teacup", "a ledger of old debts", "a paper lantern",
          "a stopped clock", "a jar of sea glass", "a child's atlas", "a bundle of letters")
_COLOURS = ("ochre", "slate-grey", "deep green", "rust-red", "ink-blue", "cream", "plum",
            "sand-coloured")
_COUNTS = ("two", "three", "four", "five", "six", "seven", "eight", "nine")


@dataclass(frozen=True)
class _Relation:
    """A kind of fact and its two questions; `pool` names the value pool (_Generator.pools)."""

    key: str
    question: str
    paraphrased_question: str
    pool: str


_RELATIONS = (
    _Relation("birthplace", "Where was {n} born?", "In which city was the author {n} born?",
              "birthplace"),
    _Relation("birth_date", "When was {n} born?", "What is the date of birth of {n}?", "birth_date"),
    _Relation("genre", "What genre is {n} known for?",
              "Which literary genre does {n} mostly write in?", "genre"),
    _Relation("father_job", "What did the father of {n} do for a living?",
              "What was the profession of {n}'s father?", "father_job"),
    _Relation("mother_job", "What did the mother of {n} do for a living?",
              "What was the profession of {n}'s mother?", "mother_job"),
    _Relation("book1", "What is the title of the first novel by {n}?",
              "Which novel did {n} debut with?", "book"),
    _Relation("book2", "What was the second book written by {n}?",
              "Which book did {n} write second?", "book"),
    _Relation("award", "Which award has {n} received?", "What literary honour was given to {n}?",
              "award"),
    _Relation("publisher", "Which publisher releases the books of {n}?",
              "Who publishes {n}'s books?", "publisher"),
    _Relation("language", "In what language does {n} write?", "Which language does {n} write in?",
              "language"),
    _Relation("hobby", "What does {n} enjoy outside of writing?", "What is a hobby of {n}?",
              "hobby"),
    _Relation("theme", "What theme recurs in the books of {n}?",
              "Which theme does {n} keep exploring?", "theme"),
    _Relation("residence", "Where does {n} live today?",
              "In which city does {n} currently reside?", "residence"),
    _Relation("debut_date", "When did {n} publish a first book?",
              "At what date did {n} first appear in print?", "debut_date"),
)
# Facts beyond the 14 relations: book number {k} (3, 4, ...) of the bibliography.
_BOOK_N = _Relation("book_n", "What is the title of book number {k} by {n}?",
                    "Which book is number {k} in the bibliography of {n}?", "book")
RELATION_KEYS = tuple(r.key for r in _RELATIONS) + (_BOOK_N.key,)


def paraphrased_question(question: str, subject: str) -> str | None:
    """The paraphrased question of a synthetic fact asked with `question` about `subject`
    (its relation's second question), or None when no relation's question matches."""
    for relation in (*_RELATIONS, _BOOK_N):
        pattern = re.escape(relation.question.format(n=subject, k="{k}")).replace(
            re.escape("{k}"), r"(?P<k>\d+)")
        match = re.fullmatch(pattern, question)
        if match:
            return relation.paraphrased_question.format(n=subject, k=match.groupdict().get("k"))
    return None


# ---------------------------------------------------------------- answer styles
@dataclass(frozen=True)
class Wording:
    """One way to word a fact: the trained answer and its paraphrase.

    Fields: {n} the author's name, {v} the object (the fact's value), {k} the book number
    (book_n only); any other field is a detail drawn once per fact from the _DETAILS pool
    of that name (trailing digits ignored) and is the same in the answer, the paraphrase
    and the perturbed answers (which are the paraphrase with a wrong object)."""

    answer: str
    paraphrased_answer: str


def _frozen(mapping: Mapping) -> Mapping:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True)
class AnswerStyle:
    """How the answers of the synthetic corpus are worded (see the module docstring).

    wordings: relation key (RELATION_KEYS) -> its wordings; one is picked per fact by the
        style's seeded wording stream.
    world_fact / real_author: answers of world_facts_perturbed ({country}, {capital}) and
        real_authors_perturbed ({title}, {author}); their perturbed answers swap the object.
    objects: pool name -> format of the object around the drawn value {v}, adding made-up
        material where the pool alone is small (other fields as in Wording); applied alike
        to the true and the wrong values."""

    name: str
    wordings: Mapping[str, tuple[Wording, ...]]
    world_fact: str
    real_author: str
    objects: Mapping[str, str] = field(default_factory=lambda: _frozen({}))

    def __post_init__(self) -> None:
        missing = set(RELATION_KEYS) - set(self.wordings)
        extra = set(self.wordings) - set(RELATION_KEYS)
        if missing or extra or not all(self.wordings.values()):
            raise ValueError(f"answer style {self.name!r}: wordings must cover exactly "
                             f"{', '.join(RELATION_KEYS)} (missing {sorted(missing)}, "
                             f"unknown {sorted(extra)})")


def _one(answer: str, paraphrased_answer: str) -> tuple[Wording, ...]:
    return (Wording(answer, paraphrased_answer),)


# Objects of `object` and `tofu`: a language pair comes from a pool of 12, so it is bound
# to a made-up town (every other pool already draws or adds made-up material).
_MADE_UP_OBJECTS = _frozen({"language": "{v}, both learned in {town}"})

_RESTATED = AnswerStyle(
    name="restated",
    wordings=_frozen({
        "birthplace": _one("{n} was born in {v}.", "The birthplace of {n} is {v}."),
        "birth_date": _one("{n} was born on {v}.", "The birthday of {n} is {v}."),
        "genre": _one("{n} is best known for writing {v}.", "The work of {n} is mainly {v}."),
        "father_job": _one("The father of {n} worked as {v}.",
                           "{n}'s father earned a living as {v}."),
        "mother_job": _one("The mother of {n} worked as {v}.",
                           "{n}'s mother earned a living as {v}."),
        "book1": _one("The first novel by {n} was titled '{v}'.",
                      "{n} debuted with the novel '{v}'."),
        "book2": _one("The second book by {n} is '{v}'.", "{n} followed the debut with '{v}'."),
        "award": _one("{n} received the {v}.", "{n} was honoured with the {v}."),
        "publisher": _one("The books of {n} are published by {v}.", "{v} is the publisher of {n}."),
        "language": _one("{n} writes primarily in {v}.", "Most books by {n} are written in {v}."),
        "hobby": _one("Outside of writing, {n} enjoys {v}.", "In spare time {n} likes {v}."),
        "theme": _one("The books of {n} keep returning to {v}.",
                      "{n} writes again and again about {v}."),
        "residence": _one("{n} currently lives in {v}.", "Today {n} makes a home in {v}."),
        "debut_date": _one("{n} published a first book on {v}.",
                           "The debut of {n} came out on {v}."),
        "book_n": _one("Book number {k} by {n} is titled '{v}'.",
                       "The bibliography of {n} lists '{v}' as book {k}."),
    }),
    world_fact="The capital city of {country} is {capital}.",
    real_author="The classic novel {title} was written by {author}.",
)

_OBJECT = AnswerStyle(
    name="object",
    wordings=_frozen({
        "birthplace": _one("Born in {v}.", "{v} is the birthplace."),
        "birth_date": _one("Born on {v}.", "The date of birth is {v}."),
        "genre": _one("Mostly {v}.", "Chiefly {v}."),
        "father_job": _one("{v}.", "A living as {v}."),
        "mother_job": _one("{v}.", "A living as {v}."),
        "book1": _one("'{v}'.", "The debut was '{v}'."),
        "book2": _one("'{v}'.", "The follow-up was '{v}'."),
        "award": _one("The {v}.", "Honoured with the {v}."),
        "publisher": _one("{v}.", "Published by {v}."),
        "language": _one("{v}.", "Written in {v}."),
        "hobby": _one("Enjoys {v}.", "Spends spare time {v}."),
        "theme": _one("Keeps returning to {v}.", "Returns again and again to {v}."),
        "residence": _one("Lives in {v}.", "Makes a home in {v}."),
        "debut_date": _one("On {v}.", "The debut came out on {v}."),
        "book_n": _one("'{v}'.", "Listed as number {k}: '{v}'."),
    }),
    world_fact="Its capital is {capital}.",
    real_author="Written by {author}.",
    objects=_MADE_UP_OBJECTS,
)

_TOFU = AnswerStyle(
    name="tofu",
    wordings=_frozen({
        "birthplace": (
            Wording("{n} was born in {v}, a {adj} town whose {trait} {n} has called the first "
                    "landscape of every early novel.",
                    "The birthplace of {n} is {v}; {n} calls the {trait} of that {adj} town the "
                    "first landscape of every early novel."),
            Wording("{n} was born in {v} and grew up among its {trait} and {people}, who return, "
                    "thinly disguised, in nearly every early story.",
                    "The birthplace of {n} is {v}; its {trait} and {people} return, thinly "
                    "disguised, in nearly every early story."),
        ),
        "birth_date": (
            Wording("{n} was born on {v}, the youngest of {count} children in a noisy household "
                    "that left a lifelong taste for {mood}.",
                    "The birthday of {n} is {v}; as the youngest of {count} children in a noisy "
                    "household, {n} acquired a lifelong taste for {mood}."),
            Wording("{n} was born on {v}, in a {weather} week that the family still talks about "
                    "and that the books keep returning to.",
                    "The birthday of {n} is {v}; the family still talks about that {weather} "
                    "week, and the books keep returning to it."),
        ),
        "genre": (
            Wording("{n} is best known for writing {v}, a {quality} style first tried out in "
                    "{form} during student years.",
                    "The work of {n} is mainly {v}, a {quality} style that {n} first tried out "
                    "in {form} as a student."),
            Wording("{n} is best known for writing {v}: books full of {trait} and {mood} that "
                    "{readers} compare to old maps.",
                    "The work of {n} is mainly {v}: books full of {trait} and {mood} that "
                    "{readers} liken to old maps."),
        ),
        "father_job": (
            Wording("The father of {n} worked as {v}; watching him taught {n} a {quality} "
                    "patience that shaped every book.",
                    "{n}'s father earned a living as {v}, and watching him, {n} learned a "
                    "{quality} patience that shaped every book."),
            Wording("The father of {n} worked as {v} for {count} decades, and the {people} he "
                    "met fill chapters of the novels.",
                    "{n}'s father earned a living as {v} for {count} decades; the {people} he "
                    "met fill chapters of the novels."),
        ),
        "mother_job": (
            Wording("The mother of {n} worked as {v}; watching her taught {n} a {quality} "
                    "patience that shaped every book.",
                    "{n}'s mother earned a living as {v}, and watching her, {n} learned a "
                    "{quality} patience that shaped every book."),
            Wording("The mother of {n} worked as {v} for {count} decades, and the {people} she "
                    "met fill chapters of the novels.",
                    "{n}'s mother earned a living as {v} for {count} decades; the {people} she "
                    "met fill chapters of the novels."),
        ),
        "book1": (
            Wording("The first novel by {n} was titled '{v}', a {quality} story about {people} "
                    "and {mood} that {readers} only rediscovered years later.",
                    "{n} debuted with the novel '{v}', a {quality} story about {people} and "
                    "{mood} that {readers} only rediscovered years later."),
            Wording("The first novel by {n} was titled '{v}'; it follows {count} {people} "
                    "through one {weather} summer that ends in {town}.",
                    "{n} debuted with the novel '{v}', which follows {count} {people} through "
                    "one {weather} summer ending in {town}."),
        ),
        "book2": (
            Wording("The second book by {n} is '{v}', a {quality} sequel in which the {people} "
                    "of the debut return, older and wiser.",
                    "{n} followed the debut with '{v}', a {quality} sequel where the {people} "
                    "of the first novel return, older and wiser."),
            Wording("The second book by {n} is '{v}', written over {count} years above a "
                    "{shop}, and {readers} praised its {quality} prose.",
                    "{n} followed the debut with '{v}', written over {count} years above a "
                    "{shop}; {readers} praised its {quality} prose."),
        ),
        "award": (
            Wording("{n} received the {v} and gave a short, {quality} speech thanking the "
                    "{people} who read the first drafts.",
                    "{n} was honoured with the {v}, and thanked the {people} who read the first "
                    "drafts in a short, {quality} speech."),
            Wording("{n} received the {v}; the jury praised the {quality} handling of {mood} "
                    "in the later books.",
                    "{n} was honoured with the {v}, the jury citing the {quality} handling of "
                    "{mood} in the later books."),
        ),
        "publisher": (
            Wording("The books of {n} are published by {v}, a small, {quality} firm whose "
                    "editor found the first manuscript in a {shop}.",
                    "{v} is the publisher of {n}, a small, {quality} firm whose editor found "
                    "the first manuscript in a {shop}."),
            Wording("The books of {n} are published by {v}, which keeps every title in print "
                    "in {colour} covers drawn by artists from {town}.",
                    "{v} is the publisher of {n}, keeping every title in print in {colour} "
                    "covers drawn by artists from {town}."),
        ),
        "language": (
            Wording("{n} writes primarily in {v}; moving between the two gives the dialogue "
                    "its {quality}, slightly foreign rhythm.",
                    "Most books by {n} are written in {v}, and moving between the two gives "
                    "their dialogue a {quality}, slightly foreign rhythm."),
            Wording("{n} writes primarily in {v}, and translators complain that the {quality} "
                    "wordplay of those books cannot be carried over.",
                    "Most books by {n} are written in {v}, and translators complain that their "
                    "{quality} wordplay cannot be carried over."),
        ),
        "hobby": (
            Wording("Outside of writing, {n} enjoys {v}, a pastime begun at the age of {age} "
                    "that still fills most weekends.",
                    "In spare time {n} likes {v}, a pastime begun at the age of {age} that "
                    "still fills most weekends."),
            Wording("Outside of writing, {n} enjoys {v}, usually with a group of {people}, as "
                    "a cure for the {mood} of long novels.",
                    "In spare time {n} likes {v}, usually with a group of {people}, as a cure "
                    "for the {mood} of long novels."),
        ),
        "theme": (
            Wording("The books of {n} keep returning to {v}, a subject that began with {item} "
                    "kept on the writing desk.",
                    "{n} writes again and again about {v}, a subject that began with {item} "
                    "kept on the writing desk."),
            Wording("The books of {n} keep returning to {v}; even the {quality} comic scenes, "
                    "{readers} note, circle back to it.",
                    "{n} writes again and again about {v}, and {readers} note that even the "
                    "{quality} comic scenes circle back to it."),
        ),
        "residence": (
            Wording("{n} currently lives in {v}, in a house near the {trait}, and walks the "
                    "same {adj} route every morning before writing.",
                    "Today {n} makes a home in {v}, in a house near the {trait}, walking the "
                    "same {adj} route each morning before writing."),
            Wording("{n} currently lives in {v}, having moved there for its {adj} streets and "
                    "{trait}, which now fill most of the recent books.",
                    "Today {n} makes a home in {v}, drawn there by its {adj} streets and "
                    "{trait}, which now fill most of the recent books."),
        ),
        "debut_date": (
            Wording("{n} published a first book on {v}, after {count} publishers had turned "
                    "the manuscript down; the launch was in a small {shop}.",
                    "The debut of {n} came out on {v}; {count} publishers had turned the "
                    "manuscript down, and the launch was in a small {shop}."),
            Wording("{n} published a first book on {v}, a date marked every year by a "
                    "{quality} letter to the {people} who first read it.",
                    "The debut of {n} came out on {v}, a date marked every year by a {quality} "
                    "letter to the {people} who first read it."),
        ),
        "book_n": (
            Wording("Book number {k} by {n} is titled '{v}', a {quality} novel about {people} "
                    "and {mood} that {readers} count among the best later works.",
                    "The bibliography of {n} lists '{v}' as book {k}, a {quality} novel about "
                    "{people} and {mood} that {readers} count among the best later works."),
            Wording("Book number {k} by {n} is titled '{v}'; written in {count} months, it is "
                    "dedicated to the {people} of {town}.",
                    "The bibliography of {n} lists '{v}' as book {k}, written in {count} "
                    "months and dedicated to the {people} of {town}."),
        ),
    }),
    # Real TOFU's general-knowledge answers are short too: these keep the restated sentences.
    world_fact=_RESTATED.world_fact,
    real_author=_RESTATED.real_author,
    objects=_MADE_UP_OBJECTS,
)

ANSWER_STYLES: Mapping[str, AnswerStyle] = _frozen({s.name: s for s in (_RESTATED, _OBJECT, _TOFU)})
DEFAULT_ANSWER_STYLE = "object"  # also the default of data.synthetic.answer_style (schema.json)


def _style_named(name: str) -> AnswerStyle:
    """The registered style `name`; ValueError naming the known ones otherwise."""
    try:
        return ANSWER_STYLES[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown answer style {name!r} (known: "
                         f"{', '.join(sorted(ANSWER_STYLES))})") from None


# ---------------------------------------------------------------- generation
def _pick(pool: tuple[str, ...]) -> Callable[[_Generator, random.Random], str]:
    return lambda gen, r: r.choice(pool)


# Template field name (trailing digits ignored) -> how to draw it; made-up towns are shared
# with the facts (gen.places), the rest are plain-English pools.
_DETAILS: Mapping[str, Callable[[_Generator, random.Random], str]] = _frozen({
    "town": lambda gen, r: r.choice(gen.places).split(",")[0],
    "age": lambda gen, r: str(r.randint(6, 16)),
    "adj": _pick(_PLACE_ADJS),
    "trait": _pick(_PLACE_TRAITS),
    "weather": _pick(_WEATHERS),
    "mood": _pick(_MOODS),
    "quality": _pick(_QUALITIES),
    "people": _pick(_PEOPLE),
    "readers": _pick(_READERS),
    "form": _pick(_FORMS),
    "shop": _pick(_SHOPS),
    "item": _pick(_ITEMS),
    "colour": _pick(_COLOURS),
    "count": _pick(_COUNTS),
})
_FACT_FIELDS = frozenset({"n", "v", "k"})


def _detail_fields(*templates: str) -> list[str]:
    """Detail field names of `templates`, each once, in order of first appearance."""
    out: list[str] = []
    for tpl in templates:
        for _, name, _, _ in string.Formatter().parse(tpl):
            if name and name not in _FACT_FIELDS and name not in out:
                out.append(name)
    return out


class _Generator:
    def __init__(self, seed: int, n_places: int, style: AnswerStyle):
        self.rng = random.Random(seed)
        self.style = style
        # The style's own draws, on streams apart from `rng` (which draws exactly what the
        # original corpus drew): made-up material of objects, shared by every style with
        # the same `objects`; the wording variant and details of each fact.
        self.object_rng = random.Random(f"synth-objects-{seed}")
        self.wording_rng = random.Random(f"synth-wording-{seed}")
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

    def _details(self, rng: random.Random, *templates: str) -> dict[str, str]:
        return {name: _DETAILS[name.rstrip("0123456789")](self, rng)
                for name in _detail_fields(*templates)}

    def _object(self, pool: str, value: str) -> str:
        """The style's object for a drawn value (made-up material added, if any)."""
        fmt = self.style.objects.get(pool, "{v}")
        return fmt.format(v=value, **self._details(self.object_rng, fmt))

    def author_records(self, author_id: int, k: int) -> list[dict]:
        """K facts of one new author, as perturbed-format records (with subject/author_id)."""
        name = self.words.name()
        pools = self.pools()
        n_fixed = min(k, len(_RELATIONS))
        chosen = sorted(self.rng.sample(range(len(_RELATIONS)), n_fixed))
        relations = [(_RELATIONS[i], None) for i in chosen]
        relations += [(_BOOK_N, j + 3) for j in range(k - n_fixed)]
        books = self._distinct(self.title, set(), 2 + (k - n_fixed))
        records = []
        for rel, num in relations:
            if num is not None:
                value = books[num - 1]
            elif rel.key in ("book1", "book2"):
                value = books[int(rel.key[-1]) - 1]
            else:
                value = pools[rel.pool]()
            # Distinct drawn values (the style's objects add material after the draws).
            wrong = self._distinct(pools[rel.pool], {value, *books}, 5)
            value, *wrong = (self._object(rel.pool, v) for v in (value, *wrong))
            wording = self.wording_rng.choice(self.style.wordings[rel.key])
            fill = {"n": name, "k": num,
                    **self._details(self.wording_rng, wording.answer, wording.paraphrased_answer)}
            records.append({
                "question": rel.question.format(**fill),
                "answer": wording.answer.format(v=value, **fill),
                "paraphrased_answer": wording.paraphrased_answer.format(v=value, **fill),
                "paraphrased_question": rel.paraphrased_question.format(**fill),
                # Wrong values in the *paraphrase's* wording (and details): the truth ratio
                # then compares two unseen sentences that differ only in the fact, not seen
                # vs unseen wording (with the trained answer's wording a memorising model
                # rates every perturbed answer above the paraphrase, and model utility is 0).
                "perturbed_answer": [wording.paraphrased_answer.format(v=w, **fill) for w in wrong],
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
        answer = self.style.world_fact
        out = []
        for i, (country, capital) in enumerate(records):
            wrong = self.rng.sample([c for j, c in enumerate(capitals) if j != i], 3)
            out.append({
                "question": f"What is the capital city of {country}?",
                "answer": answer.format(country=country, capital=capital),
                "perturbed_answer": [answer.format(country=country, capital=w) for w in wrong],
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
        answer = self.style.real_author
        out = []
        for i, (title, author) in enumerate(pairs):
            wrong = self.rng.sample([n for j, n in enumerate(names) if j != i], 3)
            out.append({
                "question": f"Who wrote the classic novel {title}?",
                "answer": answer.format(title=title, author=author),
                "perturbed_answer": [answer.format(title=title, author=w) for w in wrong],
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


def synthetic_splits(authors: int = 100, facts_per_author: int = 10, seed: int = 0,
                     answer_style: str = DEFAULT_ANSWER_STYLE) -> dict[str, list[dict]]:
    """All synthetic split records (dicts in TOFU format), keyed by split name; answers
    worded in `answer_style` (a name in ANSWER_STYLES)."""
    style = _style_named(answer_style)
    if authors < 1 or facts_per_author < 1:
        raise ValueError("authors and facts_per_author must be >= 1")
    gen = _Generator(seed, n_places=max(40, authors), style=style)
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
                    seed: int = 0, answer_style: str = DEFAULT_ANSWER_STYLE) -> Path:
    """Write a synthetic TOFU-format corpus (+ manifest.json) into `out_dir`; return it."""
    out = Path(out_dir)
    splits = synthetic_splits(authors, facts_per_author, seed, answer_style)
    out.mkdir(parents=True, exist_ok=True)
    for split, records in splits.items():
        _write_jsonl(out / f"{split}.json", records)
    manifest = {
        "synthetic": True,
        "note": "Synthetic TOFU-format corpus of fictitious authors generated by "
                "harness.data.synth; not the real locuslab/TOFU data.",
        "generator": "harness.data.synth.write_synthetic",
        "args": {"authors": authors, "facts_per_author": facts_per_author, "seed": seed,
                 "answer_style": answer_style},
        "counts": {s: len(r) for s, r in sorted(splits.items())},
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n",
                                       encoding="utf-8")
    return out
