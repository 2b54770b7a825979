"""The `Fact` record: one question/answer pair with its subject."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class SubjectSource(str, Enum):
    """How a fact's subject string was obtained (reported in every result)."""

    GIVEN = "given"  # the record carried a `subject` field
    INFERRED = "inferred"  # inferred per author block (TOFU records carry no subject)
    FALLBACK_LAST_TOKEN = "fallback_last_token"  # no subject found: last question token


@dataclass(frozen=True)
class Fact:
    """One fact f = (question, answer, subject).

    `subject` is a substring of `question` (or None when `subject_source` is
    FALLBACK_LAST_TOKEN). Token spans depend on the tokenizer and are computed by
    `harness.diffusion.batching.encode_facts`; `subject_char_span` gives the character
    span inside the question.
    """

    question: str
    answer: str
    subject: str | None
    subject_source: SubjectSource
    author_id: int
    split: str
    index: int  # 0-based record index inside its split file
    paraphrased_answer: str | None = None
    paraphrased_question: str | None = None
    perturbed_answers: tuple[str, ...] = field(default_factory=tuple)

    @property
    def subject_char_span(self) -> tuple[int, int] | None:
        """[start, end) character offsets of the subject's last occurrence in the question."""
        if self.subject is None:
            return None
        start = self.question.rfind(self.subject)
        if start < 0:
            return None
        return start, start + len(self.subject)

    @property
    def key(self) -> str:
        """Stable identifier of the fact (split and index)."""
        return f"{self.split}:{self.index}"
