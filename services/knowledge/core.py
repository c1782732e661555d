"""Knowledge core: the company's FAQ and documents, searchable with citations."""

from __future__ import annotations

import logging
from typing import AsyncIterator, Sequence

import numpy as np

from services.demo.pack import DomainPack
from services.errors import InvalidArgument
from services.knowledge.entries import LOCALES, MODES, KnowledgeEntry, KnowledgeIndex, Progress, SearchResult, check_entries

log = logging.getLogger(__name__)

MAX_QUERY_CHARS = 2000
MAX_TOP_K = 100


def entries_from_pack(pack: DomainPack) -> list[KnowledgeEntry]:
    return [
        KnowledgeEntry(id=f.id, kind="faq", title=f.title, locale=f.locale, tags=list(f.tags), questions=list(f.questions), answer=f.answer)
        for f in pack.faq
    ]


class KnowledgeBase:
    def __init__(self, index: KnowledgeIndex, *, default_top_k: int) -> None:
        self._index = index
        self._default_top_k = default_top_k

    @property
    def index(self) -> KnowledgeIndex:
        return self._index

    @property
    def version(self) -> int:
        return self._index.version

    async def open(self, seed: Sequence[KnowledgeEntry] = ()) -> None:
        """Open the index; add seed entries that are missing or changed (idempotent)."""
        await self._index.open()
        changed = [e for e in seed if self._index.get(e.id) != e]
        if changed:
            version = await self._index.upsert(changed)
            log.info("knowledge: seeded %d entries, version %d", len(changed), version)
        log.info("knowledge: %d documents, version %d", len(self._index), self._index.version)

    async def close(self) -> None:
        await self._index.close()

    async def search(
        self, query: str, *, locales: Sequence[str] = (), tags: Sequence[str] = (), top_k: int = 0, mode: str = "",
        query_vector: Sequence[float] = (), embedder_id: str = "",
    ) -> SearchResult:
        """``query_vector``: the query's e5 query embedding, made by the caller with the embedder
        ``embedder_id`` (NLU's, for the masked message): used instead of embedding the query
        again when that is this index's embedder (see :meth:`reusable_vector`)."""
        query = query.strip()
        if not query:
            raise InvalidArgument("query must not be empty")
        if len(query) > MAX_QUERY_CHARS:
            raise InvalidArgument(f"query is too long: {len(query)} characters, at most {MAX_QUERY_CHARS} allowed")
        if top_k < 0 or top_k > MAX_TOP_K:
            raise InvalidArgument(f"top_k must be between 0 and {MAX_TOP_K}")
        bad = [loc for loc in locales if loc not in LOCALES]
        if bad:
            raise InvalidArgument(f"unknown locale filter {bad[0]!r}: use zh or en")
        if mode and mode not in MODES:
            raise InvalidArgument(f"unknown retrieval mode {mode!r}: use one of {', '.join(MODES)}")
        vector = self.reusable_vector(query_vector, embedder_id)
        return await self._index.search(
            query, locales=locales, tags=tags, top_k=top_k or self._default_top_k, mode=mode, query_vector=vector
        )

    def reusable_vector(self, query_vector: Sequence[float], embedder_id: str) -> np.ndarray | None:
        """The caller's query vector when it can stand for the index's own embedding of the
        query: made by the same weights (``embedder_id`` equals the index's ``embedder_id``),
        of the right length and finite. None (the query is embedded here) when none was given
        or another embedder made it; a malformed vector from this embedder is InvalidArgument."""
        if len(query_vector) == 0:
            return None
        own = self._index.embedder_id
        if embedder_id != own:
            log.debug("knowledge: query vector from embedder %r, not this index's %r: the query is embedded again",
                      embedder_id, own)
            return None
        vector = np.asarray(query_vector, dtype=np.float32).reshape(-1)
        if vector.size != self._index.dims:
            raise InvalidArgument(f"query_embedding has {vector.size} values; embedder {own} makes {self._index.dims}")
        if not np.isfinite(vector).all():
            raise InvalidArgument("query_embedding has values that are not finite (NaN or infinity)")
        return vector

    async def ingest(self, entries: Sequence[KnowledgeEntry], progress: Progress | None = None) -> int:
        if not entries:
            raise InvalidArgument("no documents to ingest")
        return await self._index.upsert(entries, progress)

    async def ingest_stream(self, entries: AsyncIterator[KnowledgeEntry], *, batch_size: int = 32) -> tuple[int, int, int]:
        """Ingest a stream of documents as one change: each document is checked as it
        arrives (the first bad one fails the whole stream, nothing is written) and
        embedded in batches while the stream is still coming in, so a slow
        embedder slows the sender (gRPC flow control) and its progress is real.
        Returns (documents, chunks, kb_version)."""
        seen: set[str] = set()
        batch: list[KnowledgeEntry] = []
        prepared: list = []
        count = chunks = 0
        async for entry in entries:
            check_entries([entry], seen)
            count += 1
            chunks += len(entry.chunks())
            batch.append(entry)
            if len(batch) >= batch_size:
                prepared += await self._index.prepare(batch)
                batch = []
        if not count:
            raise InvalidArgument("no documents to ingest")
        if batch:
            prepared += await self._index.prepare(batch)
        return count, chunks, await self._index.commit(prepared)

    async def delete(self, ids: Sequence[str]) -> tuple[list[str], list[str], int]:
        if not ids:
            raise InvalidArgument("no document ids to delete")
        return await self._index.delete(ids)
