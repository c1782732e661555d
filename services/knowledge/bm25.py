"""BM25 over an in-memory inverted index (CSR postings in numpy), for the embedded
knowledge index. Okapi BM25 with k1=1.2, b=0.75 (Lucene's defaults).

Documents are analyzed once (``analysis.analyze``) and kept as term lists, so
the index can be rebuilt after a change without segmenting every text again:
``build_terms`` turns term lists into postings with a few vectorised numpy
passes (about half a second for 27k passages on 2 cores).
"""

from __future__ import annotations

from collections import Counter
from typing import Callable, Sequence

import numpy as np

from services.knowledge.analysis import analyze


class BM25Index:
    def __init__(self, k1: float = 1.2, b: float = 0.75, analyzer: Callable[[str], list[str]] = analyze) -> None:
        self.k1 = k1
        self.b = b
        self._analyze = analyzer
        self.ids: list[str] = []
        self._vocab: dict[str, int] = {}
        self._indptr = np.zeros(1, dtype=np.int64)
        self._rows = np.zeros(0, dtype=np.int32)
        self._tfs = np.zeros(0, dtype=np.float32)  # per posting: tf * (k1 + 1) / (tf + length norm)
        self._idf = np.zeros(0, dtype=np.float32)
        self._doc_len = np.zeros(0, dtype=np.float32)
        self._avg_len = 1.0

    def __len__(self) -> int:
        return len(self.ids)

    def build(self, docs: Sequence[tuple[str, str]]) -> "BM25Index":
        """(id, text) pairs; replaces what was indexed before."""
        return self.build_terms([(doc_id, self._analyze(text)) for doc_id, text in docs])

    def build_terms(self, docs: Sequence[tuple[str, Sequence[str]]]) -> "BM25Index":
        """(id, analyzed terms) pairs; replaces what was indexed before."""
        self.ids = [doc_id for doc_id, _ in docs]
        vocab: dict[str, int] = {}
        term_ids = [np.fromiter((vocab.setdefault(t, len(vocab)) for t in terms), dtype=np.int64, count=len(terms)) for _, terms in docs]
        lengths = np.fromiter((len(t) for t in term_ids), dtype=np.int64, count=len(term_ids))
        self._vocab = vocab
        self._doc_len = lengths.astype(np.float32)
        self._avg_len = float(self._doc_len.mean()) if len(docs) and self._doc_len.sum() else 1.0
        if not len(docs) or not lengths.sum():
            self._indptr = np.zeros(len(vocab) + 1, dtype=np.int64)
            self._rows, self._tfs, self._idf = np.zeros(0, np.int32), np.zeros(0, np.float32), np.zeros(len(vocab), np.float32)
            return self
        # (term, row) pairs -> unique pairs with their counts, sorted by term then row.
        rows = np.repeat(np.arange(len(docs), dtype=np.int64), lengths)
        pairs = np.concatenate(term_ids) * len(docs) + rows
        uniq, tf = np.unique(pairs, return_counts=True)
        terms_of, rows_of = np.divmod(uniq, len(docs))
        df = np.bincount(terms_of, minlength=len(vocab))
        self._indptr = np.concatenate(([0], np.cumsum(df))).astype(np.int64)
        self._rows = rows_of.astype(np.int32)
        self._tfs = tf.astype(np.float32)
        n = len(docs)
        self._idf = np.log(1.0 + (n - df + 0.5) / (df + 0.5)).astype(np.float32)
        # Each posting's term-frequency part of the score, computed once here rather
        # than for every query (Lucene's "impacts"): a query term then costs one
        # multiply-add over its postings.
        norm = self.k1 * (1.0 - self.b + self.b * self._doc_len[self._rows] / self._avg_len)
        self._tfs = (self._tfs * (self.k1 + 1.0) / (self._tfs + norm)).astype(np.float32)
        return self

    def query_terms(self, query: str) -> list[tuple[int, int]]:
        """(term id, count in the query) for the query's terms the index knows."""
        out = []
        for term, qtf in Counter(self._analyze(query)).items():
            tid = self._vocab.get(term)
            if tid is not None:
                out.append((tid, qtf))
        return out

    def idf(self, term: str) -> float:
        tid = self._vocab.get(term)
        return float(self._idf[tid]) if tid is not None else 0.0

    def scores(self, query: str | list[tuple[int, int]]) -> np.ndarray:
        """BM25 score of every document for ``query`` (0 where no term matches)."""
        out = np.zeros(len(self.ids), dtype=np.float32)
        if not self.ids:
            return out
        terms = self.query_terms(query) if isinstance(query, str) else query
        for tid, qtf in terms:
            lo, hi = self._indptr[tid], self._indptr[tid + 1]
            out[self._rows[lo:hi]] += (qtf * self._idf[tid]) * self._tfs[lo:hi]
        return out

    def search(self, query: str, top_k: int = 10, mask: np.ndarray | None = None) -> list[tuple[str, float]]:
        """Best ``top_k`` (id, score) with a positive score; ``mask`` limits the candidates."""
        s = self.scores(query)
        if mask is not None:
            s = np.where(mask, s, 0.0)
        return [(self.ids[i], float(s[i])) for i in top_positive(s, top_k)]


def top_positive(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` highest positive scores, best first (ties keep index order)."""
    k = min(k, int((scores > 0).sum()))
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    best = np.argpartition(-scores, k - 1)[:k]
    return best[np.lexsort((best, -scores[best]))]
