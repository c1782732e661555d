"""The embedded knowledge index: hybrid BM25 + dense retrieval, persistent in SQLite.

Storage (one SQLite file, WAL): the documents as JSON, their chunks with the
analyzed terms, and one row per *search key* with its embedding. A search key
is something a query is compared with: every phrasing of an FAQ question
(embedded as a query, e5's "query:" side) and every passage (an FAQ answer or
an article chunk, and each sentence of an article chunk under its headings,
embedded as a "passage:"). A chunk's dense score is the best of its keys' (an
FAQ entry's blends its best question and its answer). The keys and the search
arrays of one version live in snapshot.py.

Every write is one SQLite transaction that also raises ``kb_version``: a
process killed at any moment leaves the last committed version. Embedding and
analysis happen *before* the transaction; only then is a new in-memory
``Snapshot`` (vectors, BM25 postings, filter columns) built and swapped in
with one assignment. Searches read whichever snapshot was current when they
started, so they never wait for a writer and never see half a change. When
``watch_s`` is set, another process's commits are picked up by polling the
stored version (several replicas on one volume, or ``kefu ingest --direct``).

Ranking modes: ``bm25`` (jieba / Snowball analysis, ``bm25.py``), ``dense``
(cosine with multilingual-e5) and ``hybrid``, reciprocal rank fusion of the two
rankings (each cut to ``rank_window``), with per-mode weights.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import sqlite3
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from services.embedding import Embedder, weights_id
from services.errors import InvalidArgument
from services.knowledge.analysis import analyze
from services.knowledge.answerability import AnswerabilityModel, coefficients_path
from services.knowledge.bm25 import top_positive
from services.knowledge.entries import MODES, KnowledgeEntry, Progress, RetrievalHit, SearchResult, check_entries
from services.knowledge.snapshot import DIM, KEY_LAYOUT, TERM_SEP, Chunk, DocIndex, Key, Snapshot, keys_of, lexical_text

log = logging.getLogger(__name__)

EMBED_BATCH = 64
_SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (id TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS chunks (
  doc_id TEXT NOT NULL, chunk_id TEXT NOT NULL, seq INTEGER NOT NULL, text TEXT NOT NULL, terms TEXT NOT NULL,
  PRIMARY KEY (doc_id, seq));
CREATE TABLE IF NOT EXISTS search_keys (
  doc_id TEXT NOT NULL, chunk_seq INTEGER NOT NULL, seq INTEGER NOT NULL, text TEXT NOT NULL,
  is_question INTEGER NOT NULL, vector BLOB NOT NULL, PRIMARY KEY (doc_id, seq));
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass(frozen=True)
class FusionParams:
    """How hybrid ranks: RRF over the two rankings, each cut to ``rank_window``.
    Defaults chosen on InsuranceQA-zh train questions (bench/retrieval.py --tune):
    dense carries most of the signal, BM25 breaks its near-ties."""

    rank_constant: float = 10.0
    rank_window: int = 100
    bm25_weight: float = 1.0
    dense_weight: float = 3.0


class EmbeddedIndex:
    def __init__(
        self,
        path: Path,
        embedder: Embedder,
        *,
        answerability: AnswerabilityModel | None = None,
        fusion: FusionParams | None = None,
        default_mode: str = "hybrid",
        watch_s: float = 0.0,
    ) -> None:
        self._path = Path(path)
        self._embedder = embedder
        self._answerability = answerability or AnswerabilityModel(path=coefficients_path(self.embedder_id))
        self._fusion = fusion or FusionParams()
        self._default_mode = default_mode
        self._watch_s = watch_s
        self._write_lock = asyncio.Lock()
        self._snapshot = Snapshot({}, 0)
        self._watch_task: asyncio.Task | None = None

    # -- storage -------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self._path, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.executescript(_SCHEMA)
        return conn

    def _stored_version(self) -> int:
        conn = self._connect()
        try:
            row = conn.execute("SELECT value FROM meta WHERE key='kb_version'").fetchone()
            return int(row[0]) if row else 0
        finally:
            conn.close()

    def _load(self) -> tuple[dict[str, DocIndex], list[KnowledgeEntry], int]:
        """Stored documents with their chunks and keys, the entries that lack them
        (written by an older kefu, or by another embedder), and the version."""
        conn = self._connect()
        try:
            conn.execute("BEGIN")  # one read transaction: a consistent version
            version_row = conn.execute("SELECT value FROM meta WHERE key='kb_version'").fetchone()
            embedder_row = conn.execute("SELECT value FROM settings WHERE key='embedder'").fetchone()
            layout_row = conn.execute("SELECT value FROM settings WHERE key='keys'").fetchone()
            entries = {r[0]: KnowledgeEntry(**json.loads(r[1])) for r in conn.execute("SELECT id, body FROM documents")}
            chunk_rows = conn.execute("SELECT doc_id, seq, chunk_id, text, terms FROM chunks ORDER BY doc_id, seq").fetchall()
            key_rows = conn.execute("SELECT doc_id, chunk_seq, text, is_question, vector FROM search_keys ORDER BY doc_id, seq").fetchall()
            conn.execute("COMMIT")
        finally:
            conn.close()
        same_embedder = embedder_row is None or embedder_row[0] == self.embedder_id
        same_layout = layout_row is not None and layout_row[0] == KEY_LAYOUT
        chunks: dict[str, list[Chunk]] = {}
        for doc_id, _, chunk_id, text, terms in chunk_rows:
            chunks.setdefault(doc_id, []).append(Chunk(doc_id, chunk_id, text, terms))
        keys: dict[str, dict[int, list[tuple[Key, np.ndarray]]]] = {}
        for doc_id, chunk_seq, text, is_question, blob in key_rows:
            keys.setdefault(doc_id, {}).setdefault(chunk_seq, []).append((Key(text, bool(is_question)), np.frombuffer(blob, np.float32)))
        docs: dict[str, DocIndex] = {}
        stale: list[KnowledgeEntry] = []
        for doc_id in sorted(entries):
            entry, doc_chunks, doc_keys = entries[doc_id], chunks.get(doc_id), keys.get(doc_id, {})
            if not same_embedder or not doc_chunks or len(doc_keys) != len(doc_chunks):
                stale.append(entry)
                continue
            per_chunk = [doc_keys[i] for i in range(len(doc_chunks))]
            if not same_layout and [[k.text for k, _ in kv] for kv in per_chunk] != [[k.text for k in ks] for ks in keys_of(entry, entry.chunks())]:
                stale.append(entry)  # keyed otherwise by an older kefu (a passage's sentences)
                continue
            docs[doc_id] = DocIndex(
                entry, doc_chunks, [[k for k, _ in kv] for kv in per_chunk], [np.stack([v for _, v in kv]) for kv in per_chunk]
            )
        return docs, stale, int(version_row[0]) if version_row else 0

    def _commit(self, upserts: Sequence[DocIndex], deletes: Sequence[str]) -> int:
        conn = self._connect()
        try:
            with conn:  # one transaction: all or nothing
                for doc_id in [*deletes, *(d.entry.id for d in upserts)]:
                    conn.execute("DELETE FROM documents WHERE id=?", (doc_id,))
                    conn.execute("DELETE FROM chunks WHERE doc_id=?", (doc_id,))
                    conn.execute("DELETE FROM search_keys WHERE doc_id=?", (doc_id,))
                for d in upserts:
                    conn.execute("INSERT INTO documents(id, body) VALUES(?, ?)", (d.entry.id, json.dumps(asdict(d.entry), ensure_ascii=False)))
                    conn.executemany(
                        "INSERT INTO chunks(doc_id, chunk_id, seq, text, terms) VALUES(?, ?, ?, ?, ?)",
                        [(d.entry.id, c.chunk_id, i, c.text, c.terms) for i, c in enumerate(d.chunks)],
                    )
                    rows, seq = [], 0
                    for ci, (keys, vecs) in enumerate(zip(d.keys, d.vectors, strict=True)):
                        for key, vec in zip(keys, vecs, strict=True):
                            rows.append((d.entry.id, ci, seq, key.text, int(key.is_question), np.asarray(vec, np.float32).tobytes()))
                            seq += 1
                    conn.executemany(
                        "INSERT INTO search_keys(doc_id, chunk_seq, seq, text, is_question, vector) VALUES(?, ?, ?, ?, ?, ?)", rows
                    )
                conn.executemany("INSERT INTO settings(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                                 [("embedder", self.embedder_id), ("keys", KEY_LAYOUT)])
                conn.execute(
                    "INSERT INTO meta(key, value) VALUES('kb_version', 1) ON CONFLICT(key) DO UPDATE SET value=value+1"
                )
                return int(conn.execute("SELECT value FROM meta WHERE key='kb_version'").fetchone()[0])
        finally:
            conn.close()

    @property
    def embedder_id(self) -> str:
        """The weights that embed queries and passages here (a caller's query vector must come from them)."""
        return weights_id(self._embedder)

    @property
    def dims(self) -> int:
        return DIM

    # -- indexing --------------------------------------------------------------
    async def _index_entries(self, entries: Sequence[KnowledgeEntry], progress: Progress | None) -> list[DocIndex]:
        """Chunk, analyze and embed ``entries``, reusing vectors the snapshot already has."""
        known: dict[tuple[str, bool], np.ndarray] = {}
        snap = self._snapshot
        ids = {e.id for e in entries}
        for doc_id in ids & snap.docs.keys():
            d = snap.docs[doc_id]
            for keys, vecs in zip(d.keys, d.vectors, strict=True):
                known.update({(k.text, k.is_question): v for k, v in zip(keys, vecs, strict=True)})

        def prepare() -> list[tuple[KnowledgeEntry, list[Chunk], list[list[Key]]]]:
            out = []
            for e in entries:
                pieces = e.chunks()
                chunks = [Chunk(e.id, cid, text, TERM_SEP.join(analyze(lexical_text(e, text)))) for cid, text in pieces]
                out.append((e, chunks, keys_of(e, pieces)))
            return out

        prepared = await asyncio.to_thread(prepare)
        missing = list(dict.fromkeys((k.text, k.is_question) for _, _, keys in prepared for ks in keys for k in ks
                                     if (k.text, k.is_question) not in known))
        total, done = len(missing), 0
        if progress:
            progress(0, total)
        for is_question in (True, False):
            texts = [t for t, q in missing if q == is_question]
            for lo in range(0, len(texts), EMBED_BATCH):
                batch = texts[lo:lo + EMBED_BATCH]
                embed = self._embedder.embed_queries if is_question else self._embedder.embed_passages
                vecs = np.asarray(await embed(batch), dtype=np.float32)
                known.update({(t, is_question): v for t, v in zip(batch, vecs, strict=True)})
                done += len(batch)
                if progress:
                    progress(done, total)
        return [
            DocIndex(e, chunks, keys, [np.stack([known[(k.text, k.is_question)] for k in ks]) for ks in keys])
            for e, chunks, keys in prepared
        ]

    async def _swap(self, docs: dict[str, DocIndex], version: int) -> None:
        self._snapshot = await asyncio.to_thread(Snapshot, docs, version)
        # The snapshot is long-lived and acyclic: keep the collector from walking it
        # on every full collection (a search that met one took several ms longer).
        gc.freeze()

    # -- public ----------------------------------------------------------------
    @property
    def version(self) -> int:
        return self._snapshot.version

    def __len__(self) -> int:
        return len(self._snapshot.docs)

    @property
    def chunk_count(self) -> int:
        return len(self._snapshot)

    def get(self, doc_id: str) -> KnowledgeEntry | None:
        d = self._snapshot.docs.get(doc_id)
        return d.entry if d else None

    async def open(self) -> None:
        async with self._write_lock:
            docs, stale, version = await asyncio.to_thread(self._load)
            await self._swap(docs, version)
            if stale:
                log.info("knowledge: indexing %d stored documents without current search data", len(stale))
                fresh = await self._index_entries(stale, None)
                version = await asyncio.to_thread(self._commit, fresh, ())
                await self._swap({**docs, **{d.entry.id: d for d in fresh}}, version)
        if self._watch_s > 0 and self._watch_task is None:
            self._watch_task = asyncio.create_task(self._watch(), name="knowledge-watch")

    async def close(self) -> None:
        if self._watch_task is not None:
            self._watch_task.cancel()
            self._watch_task = None

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self._watch_s)
            try:
                await self.refresh()
            except Exception as exc:  # keep serving the current snapshot
                log.warning("knowledge: could not check for changes by other writers: %s", exc)

    async def refresh(self) -> bool:
        """Reload when another process committed a newer version; True if it did."""
        if await asyncio.to_thread(self._stored_version) == self._snapshot.version:
            return False
        async with self._write_lock:
            docs, stale, version = await asyncio.to_thread(self._load)
            if version == self._snapshot.version:
                return False
            docs.update({e.id: self._snapshot.docs[e.id] for e in stale if e.id in self._snapshot.docs})
            await self._swap(docs, version)
            log.info("knowledge: picked up version %d written by another process", version)
            return True

    async def prepare(self, entries: Sequence[KnowledgeEntry], progress: Progress | None = None) -> list[DocIndex]:
        """Chunk, analyze and embed the entries that differ from what is stored; nothing
        is visible or written until ``commit``. Runs beside searches and other writes."""
        check_entries(entries)
        current = self._snapshot
        changed = [e for e in entries if (d := current.docs.get(e.id)) is None or d.entry != e]
        if not changed:
            if progress:
                progress(0, 0)
            return []
        return await self._index_entries(changed, progress)

    async def commit(self, prepared: Sequence[DocIndex]) -> int:
        """Write prepared documents in one transaction and make them searchable
        together. Returns the new version (the current one when there is nothing)."""
        if not prepared:
            return self._snapshot.version
        async with self._write_lock:
            version = await asyncio.to_thread(self._commit, prepared, ())
            await self._swap({**self._snapshot.docs, **{d.entry.id: d for d in prepared}}, version)
            return version

    async def upsert(self, entries: Sequence[KnowledgeEntry], progress: Progress | None = None) -> int:
        """Add or replace documents; all become visible together. Returns the new
        version (the current one when nothing changed). If embedding fails, nothing is written."""
        return await self.commit(await self.prepare(entries, progress))

    async def delete(self, ids: Sequence[str]) -> tuple[list[str], list[str], int]:
        """Remove documents; returns (deleted, not_found, version)."""
        async with self._write_lock:
            current = self._snapshot
            deleted = list(dict.fromkeys(i for i in ids if i in current.docs))
            not_found = [i for i in ids if i not in current.docs]
            if not deleted:
                return [], not_found, current.version
            version = await asyncio.to_thread(self._commit, (), deleted)
            gone = set(deleted)
            await self._swap({k: v for k, v in current.docs.items() if k not in gone}, version)
            return deleted, not_found, version

    async def embed_query(self, query: str) -> np.ndarray:
        return np.asarray((await self._embedder.embed_queries([query]))[0], dtype=np.float32)

    async def search(
        self,
        query: str,
        *,
        locales: Sequence[str] = (),
        tags: Sequence[str] = (),
        top_k: int = 3,
        mode: str = "",
        query_vector: np.ndarray | None = None,
    ) -> SearchResult:
        mode = mode or self._default_mode
        if mode not in MODES:
            raise InvalidArgument(f"unknown retrieval mode {mode!r}: use one of {', '.join(MODES)}")
        snap = self._snapshot
        if not len(snap):
            return SearchResult([], False, 0.0, snap.version)
        if query_vector is None:
            query_vector = await self.embed_query(query)
        hits = self.rank(snap, query, query_vector, locales=locales, tags=tags, top_k=top_k, mode=mode)
        answerable, answerability = self._answerability.judge(query, hits)
        return SearchResult(hits, answerable, answerability, snap.version)

    def rank(
        self, snap: Snapshot, query: str, query_vector: np.ndarray, *, locales: Sequence[str], tags: Sequence[str], top_k: int, mode: str
    ) -> list[RetrievalHit]:
        """The ranking itself (synchronous, no I/O): what search latency measures."""
        mask = snap.mask(locales, tags)
        dense = snap.dense_scores(query_vector)
        lexical = snap.bm25.scores(query)
        if mask is not None:
            dense = np.where(mask, dense, -np.inf)
            lexical = np.where(mask, lexical, 0.0)
        if mode == "bm25":
            rows, scores = _top(lexical, top_k, positive=True)
        elif mode == "dense":
            rows, scores = _top(dense, top_k)
        else:
            rows, scores = self._fuse(dense, lexical, top_k)
        out = []
        for row, score in zip(rows, scores, strict=True):
            chunk = snap.chunks[row]
            entry = snap.docs[chunk.doc_id].entry
            key = snap.best_key(row, query_vector)
            out.append(RetrievalHit(
                chunk.doc_id, chunk.chunk_id, entry.title, chunk.text, key.text if key.is_question else "", float(score),
                entry.locale, list(entry.tags), dense_score=float(dense[row]), lexical_score=float(lexical[row]),
            ))
        return out

    def _fuse(self, dense: np.ndarray, lexical: np.ndarray, top_k: int) -> tuple[list[int], list[float]]:
        p = self._fusion
        fused: dict[int, float] = {}
        for weight, (rows, _) in ((p.dense_weight, _top(dense, p.rank_window)), (p.bm25_weight, _top(lexical, p.rank_window, positive=True))):
            for rank, row in enumerate(rows, start=1):
                fused[row] = fused.get(row, 0.0) + weight / (p.rank_constant + rank)
        # Equal fused scores (first in one ranking, first in the other) go to the closer meaning.
        best = sorted(fused.items(), key=lambda kv: (-round(kv[1], 9), -dense[kv[0]], kv[0]))[:top_k]
        return [r for r, _ in best], [s for _, s in best]


def _top(scores: np.ndarray, k: int, positive: bool = False) -> tuple[list[int], list[float]]:
    if positive:
        rows = top_positive(scores, k)
    else:
        finite = np.isfinite(scores)
        k = min(k, int(finite.sum()))
        if k <= 0:
            return [], []
        rows = np.argpartition(-scores, k - 1)[:k]
        rows = rows[np.lexsort((rows, -scores[rows]))]
    return [int(r) for r in rows], [float(scores[r]) for r in rows]

