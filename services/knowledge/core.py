"""Knowledge core: the company's FAQ and documents, searchable with citations."""

from __future__ import annotations

import logging
from typing import Sequence

from services.demo.pack import DomainPack
from services.errors import InvalidArgument
from services.knowledge.index import EmbeddedIndex, KnowledgeEntry, SearchResult

log = logging.getLogger(__name__)

MAX_QUERY_CHARS = 2000


def entries_from_pack(pack: DomainPack) -> list[KnowledgeEntry]:
    return [
        KnowledgeEntry(id=f.id, kind="faq", title=f.title, locale=f.locale, tags=list(f.tags), questions=list(f.questions), answer=f.answer)
        for f in pack.faq
    ]


class KnowledgeBase:
    def __init__(self, index: EmbeddedIndex, *, default_top_k: int) -> None:
        self._index = index
        self._default_top_k = default_top_k

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

    async def search(self, query: str, *, locales: Sequence[str] = (), tags: Sequence[str] = (), top_k: int = 0) -> SearchResult:
        query = query.strip()
        if not query:
            raise InvalidArgument("query must not be empty")
        if len(query) > MAX_QUERY_CHARS:
            raise InvalidArgument(f"query is too long: {len(query)} characters, at most {MAX_QUERY_CHARS} allowed")
        if top_k < 0 or top_k > 100:
            raise InvalidArgument("top_k must be between 0 and 100")
        bad = [loc for loc in locales if loc not in ("zh", "en")]
        if bad:
            raise InvalidArgument(f"unknown locale filter {bad[0]!r}: use zh or en")
        return await self._index.search(query, locales=locales, tags=tags, top_k=top_k or self._default_top_k)

    async def ingest(self, entries: Sequence[KnowledgeEntry]) -> int:
        if not entries:
            raise InvalidArgument("no documents to ingest")
        return await self._index.upsert(entries)

    async def delete(self, ids: Sequence[str]) -> tuple[list[str], list[str], int]:
        if not ids:
            raise InvalidArgument("no document ids to delete")
        return await self._index.delete(ids)
