"""The embedded knowledge index: documents in SQLite on local disk, vectors in memory.

Writes go to SQLite in one transaction (a crash leaves the last committed
version), then the in-memory search arrays are swapped in one assignment, so
searches never see a half-applied change and need no restart.
This skeleton ranks by dense similarity only; hybrid BM25 + dense comes later
behind the same interface.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from services.embedding import Embedder
from services.errors import InvalidArgument

KINDS = ("faq", "article")
LOCALES = ("zh", "en")


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
        if self.kind not in KINDS:
            raise InvalidArgument(f"{where}: kind must be one of {KINDS}")
        if self.locale not in LOCALES:
            raise InvalidArgument(f"{where}: locale must be one of {LOCALES}, got {self.locale!r}")
        if self.kind == "faq" and (not self.questions or not self.answer.strip()):
            raise InvalidArgument(f"{where}: an FAQ entry needs at least one question and an answer")
        if self.kind == "article" and not self.body.strip():
            raise InvalidArgument(f"{where}: an article needs a body")

    def chunks(self) -> list[tuple[str, str]]:
        """(chunk_id, passage text): the answer for FAQ, paragraphs for articles."""
        if self.kind == "faq":
            return [("0", self.answer)]
        paragraphs = [p.strip() for p in self.body.split("\n\n") if p.strip()]
        return [(str(i), p) for i, p in enumerate(paragraphs)]


@dataclass
class RetrievalHit:
    doc_id: str
    chunk_id: str
    title: str
    text: str
    matched_question: str
    score: float
    locale: str
    tags: list[str]


@dataclass
class SearchResult:
    hits: list[RetrievalHit]
    answerable: bool
    answerability: float
    kb_version: int


@dataclass
class _SearchKey:
    """One embedded text pointing into a document (a question, or a chunk)."""

    doc_id: str
    chunk_id: str
    text: str
    is_question: bool


@dataclass
class _Snapshot:
    entries: dict[str, KnowledgeEntry]
    keys: list[_SearchKey]
    vectors: np.ndarray
    version: int


class EmbeddedIndex:
    def __init__(self, path: Path, embedder: Embedder, *, min_score: float) -> None:
        self._path = Path(path)
        self._embedder = embedder
        self._min_score = min_score
        self._write_lock = asyncio.Lock()
        self._snapshot = _Snapshot({}, [], np.zeros((0, 384), np.float32), 0)

    # -- storage -------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self._path, timeout=10)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE IF NOT EXISTS documents (id TEXT PRIMARY KEY, body TEXT NOT NULL)")
        conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)")
        return conn

    def _load_entries(self) -> tuple[dict[str, KnowledgeEntry], int]:
        with self._connect() as conn:
            rows = conn.execute("SELECT body FROM documents").fetchall()
            version = conn.execute("SELECT value FROM meta WHERE key='kb_version'").fetchone()
        entries = {e.id: e for e in (KnowledgeEntry(**json.loads(r[0])) for r in rows)}
        return entries, int(version[0]) if version else 0

    def _commit(self, upserts: Iterable[KnowledgeEntry], deletes: Iterable[str]) -> int:
        conn = self._connect()
        try:
            with conn:  # one transaction: all or nothing
                for doc_id in deletes:
                    conn.execute("DELETE FROM documents WHERE id=?", (doc_id,))
                for entry in upserts:
                    conn.execute(
                        "INSERT INTO documents(id, body) VALUES(?, ?) ON CONFLICT(id) DO UPDATE SET body=excluded.body",
                        (entry.id, json.dumps(asdict(entry), ensure_ascii=False)),
                    )
                conn.execute(
                    "INSERT INTO meta(key, value) VALUES('kb_version', 1) "
                    "ON CONFLICT(key) DO UPDATE SET value=value+1"
                )
                return int(conn.execute("SELECT value FROM meta WHERE key='kb_version'").fetchone()[0])
        finally:
            conn.close()

    # -- vectors ---------------------------------------------------------------
    @staticmethod
    def _keys_of(entry: KnowledgeEntry) -> list[_SearchKey]:
        keys = [_SearchKey(entry.id, "0", q, True) for q in entry.questions]
        keys += [_SearchKey(entry.id, cid, text, False) for cid, text in entry.chunks() if entry.kind == "article"]
        return keys

    async def _embed_keys(self, keys: Sequence[_SearchKey]) -> np.ndarray:
        questions = [k.text for k in keys if k.is_question]
        passages = [k.text for k in keys if not k.is_question]
        q_vecs = await self._embedder.embed_queries(questions)
        p_vecs = await self._embedder.embed_passages(passages)
        out = np.zeros((len(keys), 384), dtype=np.float32)
        qi = pi = 0
        for row, key in enumerate(keys):
            if key.is_question:
                out[row], qi = q_vecs[qi], qi + 1
            else:
                out[row], pi = p_vecs[pi], pi + 1
        return out

    async def _build(self, entries: dict[str, KnowledgeEntry], version: int, reuse: _Snapshot | None = None) -> _Snapshot:
        """Search arrays for ``entries``, embedding only texts ``reuse`` lacks."""
        keys = [k for e in entries.values() for k in self._keys_of(e)]
        known = {}
        if reuse is not None:
            known = {(k.doc_id, k.chunk_id, k.text): reuse.vectors[i] for i, k in enumerate(reuse.keys)}
        missing = [k for k in keys if (k.doc_id, k.chunk_id, k.text) not in known]
        fresh = await self._embed_keys(missing)
        for k, v in zip(missing, fresh, strict=True):
            known[(k.doc_id, k.chunk_id, k.text)] = v
        vectors = np.stack([known[(k.doc_id, k.chunk_id, k.text)] for k in keys]) if keys else np.zeros((0, 384), np.float32)
        return _Snapshot(dict(entries), keys, vectors.astype(np.float32), version)

    # -- public ----------------------------------------------------------------
    @property
    def version(self) -> int:
        return self._snapshot.version

    def __len__(self) -> int:
        return len(self._snapshot.entries)

    def get(self, doc_id: str) -> KnowledgeEntry | None:
        return self._snapshot.entries.get(doc_id)

    async def open(self) -> None:
        entries, version = await asyncio.to_thread(self._load_entries)
        self._snapshot = await self._build(entries, version)

    async def upsert(self, entries: Sequence[KnowledgeEntry]) -> int:
        """Add or replace documents; all become visible together. Returns the new version."""
        seen: set[str] = set()
        for e in entries:
            e.validate()
            if e.id in seen:
                raise InvalidArgument(f"document {e.id!r} appears twice in one ingest")
            seen.add(e.id)
        async with self._write_lock:
            current = self._snapshot
            merged = {**current.entries, **{e.id: e for e in entries}}
            # Embed before committing: if the embedder fails nothing is written.
            staged = await self._build(merged, current.version, reuse=current)
            version = await asyncio.to_thread(self._commit, entries, ())
            staged.version = version
            self._snapshot = staged
            return version

    async def delete(self, ids: Sequence[str]) -> tuple[list[str], list[str], int]:
        """Remove documents; returns (deleted, not_found, version)."""
        async with self._write_lock:
            current = self._snapshot
            deleted = [i for i in ids if i in current.entries]
            not_found = [i for i in ids if i not in current.entries]
            if not deleted:
                return [], not_found, current.version
            version = await asyncio.to_thread(self._commit, (), deleted)
            remaining = {k: v for k, v in current.entries.items() if k not in set(deleted)}
            self._snapshot = await self._build(remaining, version, reuse=current)
            return deleted, not_found, version

    async def search(self, query: str, *, locales: Sequence[str] = (), tags: Sequence[str] = (), top_k: int = 3) -> SearchResult:
        snap = self._snapshot
        if not snap.keys:
            return SearchResult([], False, 0.0, snap.version)
        q = (await self._embedder.embed_queries([query]))[0]
        sims = snap.vectors @ q
        best: dict[tuple[str, str], tuple[float, _SearchKey]] = {}
        for i in np.argsort(-sims):
            key = snap.keys[int(i)]
            entry = snap.entries[key.doc_id]
            if locales and entry.locale not in locales:
                continue
            if tags and not set(tags) & set(entry.tags):
                continue
            ident = (key.doc_id, key.chunk_id)
            if ident not in best:
                best[ident] = (float(sims[int(i)]), key)
            if len(best) >= top_k:
                break
        hits = []
        for (doc_id, chunk_id), (score, key) in best.items():
            entry = snap.entries[doc_id]
            text = dict(entry.chunks()).get(chunk_id, entry.answer)
            hits.append(
                RetrievalHit(doc_id, chunk_id, entry.title, text, key.text if key.is_question else "", score, entry.locale, list(entry.tags))
            )
        top = hits[0].score if hits else 0.0
        answerability = float(1.0 / (1.0 + np.exp(-(top - self._min_score) / 0.015)))
        return SearchResult(hits, top >= self._min_score, answerability, snap.version)
