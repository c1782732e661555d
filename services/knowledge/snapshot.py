"""What the embedded index (index.py) holds for one knowledge-base version: each document
with its chunks and its *search keys* (what a query is compared with: an FAQ entry's
questions and answer, an article passage and each of its sentences), and the immutable
search arrays built from them (``Snapshot``: vectors, BM25 postings, filter columns)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from services.knowledge.bm25 import BM25Index
from services.knowledge.entries import LOCALES, KnowledgeEntry, faq_dense

DIM = 384
TERM_SEP = "\x1f"


@dataclass
class Chunk:
    doc_id: str
    chunk_id: str
    text: str
    # Analyzed terms joined by TERM_SEP: one string, as stored, which the garbage
    # collector does not have to walk (a list per chunk would be 30k more containers).
    terms: str


@dataclass
class Key:
    text: str
    is_question: bool


@dataclass
class DocIndex:
    """Everything the index keeps for one document (persisted as rows)."""

    entry: KnowledgeEntry
    chunks: list[Chunk]
    keys: list[list[Key]]  # per chunk
    vectors: list[np.ndarray]  # per chunk: (n_keys, DIM)


class Snapshot:
    """Immutable search arrays for one knowledge-base version."""

    def __init__(self, docs: dict[str, DocIndex], version: int) -> None:
        self.docs = docs
        self.version = version
        self.chunks: list[Chunk] = [c for d in docs.values() for c in d.chunks]
        key_counts = [len(k) for d in docs.values() for k in d.keys]
        self.key_texts: list[Key] = [k for d in docs.values() for ks in d.keys for k in ks]
        self.key_start = np.concatenate(([0], np.cumsum(key_counts)[:-1])).astype(np.int64) if key_counts else np.zeros(0, np.int64)
        self.key_count = np.asarray(key_counts, dtype=np.int64)
        self.key_is_question = np.fromiter((k.is_question for k in self.key_texts), dtype=bool, count=len(self.key_texts))
        vecs = [v for d in docs.values() for v in d.vectors]
        self.vectors = np.ascontiguousarray(np.concatenate(vecs), dtype=np.float32) if vecs else np.zeros((0, DIM), np.float32)
        self.locale = np.asarray([LOCALES.index(docs[c.doc_id].entry.locale) for c in self.chunks], dtype=np.int8)
        self._tags: dict[str, np.ndarray] = {}
        self.bm25 = BM25Index().build_terms([(f"{c.doc_id}#{c.chunk_id}", c.terms.split(TERM_SEP) if c.terms else []) for c in self.chunks])

    def __len__(self) -> int:
        return len(self.chunks)

    def mask(self, locales: Sequence[str], tags: Sequence[str]) -> np.ndarray | None:
        if not locales and not tags:
            return None
        mask = np.ones(len(self.chunks), dtype=bool)
        if locales:
            mask &= np.isin(self.locale, [LOCALES.index(loc) for loc in locales])
        if tags:
            mask &= np.logical_or.reduce([self._tag_mask(t) for t in set(tags)])
        return mask

    def _tag_mask(self, tag: str) -> np.ndarray:
        found = self._tags.get(tag)
        if found is None:
            found = np.fromiter((tag in self.docs[c.doc_id].entry.tags for c in self.chunks), dtype=bool, count=len(self.chunks))
            self._tags[tag] = found
        return found

    def dense_scores(self, query_vector: np.ndarray) -> np.ndarray:
        """Per chunk: the cosine between the query and the chunk's passage, or for an
        FAQ entry its best question's and its answer's blended (``faq_dense``)."""
        if not len(self.chunks):
            return np.zeros(0, np.float32)
        sims = self.vectors @ query_vector
        best = np.maximum.reduceat(sims, self.key_start)
        question = np.maximum.reduceat(np.where(self.key_is_question, sims, -np.inf), self.key_start)
        passage = np.maximum.reduceat(np.where(self.key_is_question, -np.inf, sims), self.key_start)
        both = np.isfinite(question) & np.isfinite(passage)
        return np.where(both, faq_dense(question, passage), best).astype(np.float32)

    def best_key(self, row: int, query_vector: np.ndarray) -> Key:
        lo, n = int(self.key_start[row]), int(self.key_count[row])
        sims = self.vectors[lo:lo + n] @ query_vector
        return self.key_texts[lo + int(np.argmax(sims))]


# How keys_of keys a document, recorded with every commit: a store keyed otherwise (by an
# older kefu: passages without their sentences) has its keys checked, and those that
# differ re-made, when it is loaded.
KEY_LAYOUT = "faq: questions + answer; article: passage + sentences"


def keys_of(entry: KnowledgeEntry, chunks: list[tuple[str, str]]) -> list[list[Key]]:
    if entry.kind == "faq":
        questions = [q.strip() for q in entry.questions if q.strip()]
        return [[Key(q, True) for q in dict.fromkeys(questions)] + [Key(chunks[0][1], False)]]
    sentences = entry.sentence_keys()
    return [[Key(text, False), *(Key(s, False) for s in dict.fromkeys(sentences[i]) if s != text)] for i, (_, text) in enumerate(chunks)]


def lexical_text(entry: KnowledgeEntry, text: str) -> str:
    """What BM25 indexes for a chunk: FAQ questions with the answer, or title and passage."""
    if entry.kind == "faq":
        return "\n".join([*entry.questions, text])
    return f"{entry.title}\n{text}" if entry.title else text
