"""What the knowledge base holds and returns, shared by every index backend.

A ``KnowledgeEntry`` is an FAQ entry (one or more phrasings of a question and an
answer) or an article (a body that is cut into chunks). A search returns
``RetrievalHit``s: one per (document, chunk), each carrying what a citation needs.
Backends (the embedded index, Elasticsearch) implement ``KnowledgeIndex``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence

from services.errors import InvalidArgument

KINDS = ("faq", "article")
LOCALES = ("zh", "en")
MODES = ("hybrid", "bm25", "dense")
# Passage size per locale, in characters: about 250-400 e5 tokens either way
# (a Chinese character is about one token, an English word of ~5 letters about 1.3).
CHUNK_CHARS = {"zh": 400, "en": 1200}

# An FAQ entry's dense score (every backend): this share from the cosine of the query
# with its best-matching question, the rest from the cosine with its answer. The best
# question alone lets an entry with many phrasings attract customers' questions it does
# not answer, and puts FAQ entries above document passages (one key each); on the tune
# half of bench/answers the blend ranks the right entry or passage first for 109 of 138
# questions against 103 with the best key alone. answerability.json is fit with it.
FAQ_QUESTION_WEIGHT = 0.6


def faq_dense(best_question: float, answer: float) -> float:
    """The dense score of an FAQ entry from its two cosines."""
    return FAQ_QUESTION_WEIGHT * best_question + (1.0 - FAQ_QUESTION_WEIGHT) * answer


# Called as progress(done, total) while a write embeds its texts.
Progress = Callable[[int, int], None]


@dataclass
class KnowledgeEntry:
    """An FAQ entry (questions + answer) or an article (body, chunked)."""

    id: str
    kind: str
    title: str
    locale: str
    tags: list[str] = field(default_factory=list)
    questions: list[str] = field(default_factory=list)
    answer: str = ""
    body: str = ""

    def validate(self) -> None:
        where = f"document {self.id or '<no id>'!r}"
        if not self.id.strip():
            raise InvalidArgument("document id must not be empty")
        if len(self.id) > 512:
            raise InvalidArgument(f"{where[:60]}...: document id is longer than 512 characters")
        if self.kind not in KINDS:
            raise InvalidArgument(f"{where}: kind must be one of {KINDS}")
        if self.locale not in LOCALES:
            raise InvalidArgument(f"{where}: locale must be one of {LOCALES}, got {self.locale!r}")
        if self.kind == "faq" and (not [q for q in self.questions if q.strip()] or not self.answer.strip()):
            raise InvalidArgument(f"{where}: an FAQ entry needs at least one question and an answer")
        if self.kind == "article" and not self.body.strip():
            raise InvalidArgument(f"{where}: an article needs a body")

    def chunks(self) -> list[tuple[str, str]]:
        """(chunk_id, passage text): the answer for an FAQ entry, sentence-aware
        chunks of the body for an article."""
        if self.kind == "faq":
            return [("0", self.answer.strip())]
        from services.knowledge.chunking import chunk_text

        return [(str(i), text) for i, text in enumerate(chunk_text(self.body, max_chars=CHUNK_CHARS[self.locale]))]

    def sentence_keys(self) -> list[list[str]]:
        """Per chunk (as ``chunks``): an article passage's sentences under their headings,
        what a search also matches the passage by (chunking.sentence_keys); none for an
        FAQ entry, whose questions are its keys."""
        if self.kind == "faq":
            return [[]]
        from services.knowledge.chunking import chunk_sections, sentence_keys

        return [sentence_keys(head, piece) for head, piece in chunk_sections(self.body, max_chars=CHUNK_CHARS[self.locale])]


def check_entries(entries: Sequence[KnowledgeEntry], seen: set[str] | None = None) -> None:
    """Validate ``entries`` and that no id comes twice (also across ``seen``, which grows)."""
    seen = set() if seen is None else seen
    for e in entries:
        e.validate()
        if e.id in seen:
            raise InvalidArgument(f"document {e.id!r} appears twice in one ingest")
        seen.add(e.id)


@dataclass
class RetrievalHit:
    doc_id: str
    chunk_id: str
    title: str
    text: str
    # For an FAQ entry, the stored question that matched best ("" for a passage).
    matched_question: str
    # The ranking score of the mode used (comparable within one result only).
    score: float
    locale: str
    tags: list[str]
    # Cosine similarity of the query to the best-matching key of this chunk
    # (0.0 when no vector was compared, e.g. bm25 mode).
    dense_score: float = 0.0
    # BM25 score of this chunk for the query (0.0 when not computed).
    lexical_score: float = 0.0
    # Probability that this hit answers the query were it the one given (answerability.py).
    answerability: float = 0.0


@dataclass
class SearchResult:
    hits: list[RetrievalHit]
    answerable: bool
    answerability: float
    kb_version: int


class KnowledgeIndex(Protocol):
    """A knowledge-base backend. Every write that changes something raises the version
    by one; a write that changes nothing keeps it. ``prepare`` embeds without writing,
    ``commit`` makes prepared documents visible together; ``upsert`` is both."""

    @property
    def version(self) -> int: ...

    @property
    def embedder_id(self) -> str: ...  # the ``model_id`` of the embedder behind the stored vectors

    @property
    def dims(self) -> int: ...  # the length of its vectors

    def __len__(self) -> int: ...

    def get(self, doc_id: str) -> KnowledgeEntry | None: ...

    async def open(self) -> None: ...

    async def prepare(self, entries: Sequence[KnowledgeEntry], progress: Progress | None = None) -> list: ...

    async def commit(self, prepared: Sequence) -> int: ...

    async def upsert(self, entries: Sequence[KnowledgeEntry], progress: Progress | None = None) -> int: ...

    async def delete(self, ids: Sequence[str]) -> tuple[list[str], list[str], int]: ...

    async def search(
        self, query: str, *, locales: Sequence[str] = (), tags: Sequence[str] = (), top_k: int = 3, mode: str = "hybrid",
        query_vector: Any = None,
    ) -> SearchResult: ...  # query_vector: the query's e5 embedding by this index's embedder (None: embed it)

    async def close(self) -> None: ...
