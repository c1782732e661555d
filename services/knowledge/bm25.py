"""BM25 over an in-memory inverted index (numpy postings), for the embedded
knowledge index. Okapi BM25 with k1=1.2, b=0.75 (Lucene's defaults)."""

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
        self._postings: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._doc_len = np.zeros(0, dtype=np.float32)
        self._idf: dict[str, float] = {}

    def __len__(self) -> int:
        return len(self.ids)

    def build(self, docs: Sequence[tuple[str, str]]) -> "BM25Index":
        """(id, text) pairs; replaces what was indexed before."""
        self.ids = [doc_id for doc_id, _ in docs]
        lists: dict[str, tuple[list[int], list[int]]] = {}
        lengths = np.zeros(len(docs), dtype=np.float32)
        for row, (_, text) in enumerate(docs):
            counts = Counter(self._analyze(text))
            lengths[row] = sum(counts.values())
            for term, tf in counts.items():
                rows, tfs = lists.setdefault(term, ([], []))
                rows.append(row)
                tfs.append(tf)
        self._doc_len = lengths
        n = max(len(docs), 1)
        self._postings = {t: (np.asarray(r, dtype=np.int32), np.asarray(f, dtype=np.float32)) for t, (r, f) in lists.items()}
        self._idf = {t: float(np.log(1.0 + (n - len(r) + 0.5) / (len(r) + 0.5))) for t, (r, _) in lists.items()}
        return self

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every document for ``query`` (0 where no term matches)."""
        out = np.zeros(len(self.ids), dtype=np.float32)
        if not self.ids:
            return out
        avg = float(self._doc_len.mean()) or 1.0
        for term, qtf in Counter(self._analyze(query)).items():
            posting = self._postings.get(term)
            if posting is None:
                continue
            rows, tf = posting
            norm = self.k1 * (1.0 - self.b + self.b * self._doc_len[rows] / avg)
            out[rows] += qtf * self._idf[term] * tf * (self.k1 + 1.0) / (tf + norm)
        return out

    def search(self, query: str, top_k: int = 10, mask: np.ndarray | None = None) -> list[tuple[str, float]]:
        """Best ``top_k`` (id, score) with a positive score; ``mask`` limits the candidates."""
        s = self.scores(query)
        if mask is not None:
            s = np.where(mask, s, 0.0)
        k = min(top_k, int((s > 0).sum()))
        if k == 0:
            return []
        best = np.argpartition(-s, k - 1)[:k]
        best = best[np.argsort(-s[best], kind="stable")]
        return [(self.ids[i], float(s[i])) for i in best]
