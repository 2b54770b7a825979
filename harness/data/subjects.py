"""Subject inference for records without a `subject` field (real TOFU).

The author's name is inferred per author block: the capitalised multi-word n-gram
mentioned by the most records of the block (question or answer), the longest on ties,
and it must be mentioned by at least half of the block.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence

from harness.data.fact import Fact, SubjectSource

_BREAK = re.compile(r"[,;:!?()\[\]\"“”]|\.(?=\s|$)")
_POSSESSIVE = re.compile(r"(?:'s|’s|'|’)$")


# Capitalised function words (sentence starts) never belong to a name.
_STOPWORDS = frozenset("""
a an the in on at of to for from by with and or but as is are was were be been what who whom
whose where when which why how does do did has have had can could would will should may might
yes no not his her hers their its it he she they this that these those there here one some many
also after before during while since if though although because so then thus however
""".split())


def _is_cap(word: str) -> bool:
    return (word[:1].isupper() and any(c.isalpha() for c in word)
            and word.lower() not in _STOPWORDS)


def _capitalised_ngrams(text: str) -> set[str]:
    """All multi-word n-grams inside runs of capitalised words of `text`.

    Runs are broken by punctuation, sentence ends, lower-case words and possessives.
    """
    grams: set[str] = set()
    for chunk in _BREAK.split(text):
        run: list[str] = []
        for raw in chunk.split() + [""]:
            word = _POSSESSIVE.sub("", raw)
            if word and _is_cap(word):
                run.append(word)
            if not (word and _is_cap(word)) or word != raw:
                for i in range(len(run)):
                    for j in range(i + 2, len(run) + 1):
                        grams.add(" ".join(run[i:j]))
                run = []
    return grams


def infer_author_name(texts: Sequence[str]) -> str | None:
    """Name shared by one author's records (each item: one record's question + answer)."""
    if not texts:
        return None
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(_capitalised_ngrams(text))
    if not counts:
        return None
    need = max(1, (len(texts) + 1) // 2)
    best = max(counts.items(), key=lambda kv: (kv[1], len(kv[0].split()), len(kv[0])))
    return best[0] if best[1] >= need else None


def resolve_subject(question: str, name: str | None) -> tuple[str | None, SubjectSource]:
    """Subject of `question` given the author's inferred name (full name, else surname)."""
    if name:
        if name in question:
            return name, SubjectSource.INFERRED
        surname = name.split()[-1]
        if re.search(rf"(?<!\w){re.escape(surname)}(?!\w)", question):
            return surname, SubjectSource.INFERRED
    return None, SubjectSource.FALLBACK_LAST_TOKEN


def subject_source_counts(facts: Iterable[Fact]) -> dict[str, int]:
    """{'given': a, 'inferred': b, 'fallback_last_token': c} (all keys present)."""
    counts = {s.value: 0 for s in SubjectSource}
    for fact in facts:
        counts[fact.subject_source.value] += 1
    return counts
