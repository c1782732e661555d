"""The Elasticsearch backend of the knowledge base (implements ``KnowledgeIndex``).

Index layout (``<prefix>`` is ``index_prefix``, default ``kefu-knowledge``):

``<prefix>-chunks``
    One document per search chunk: an FAQ entry is one chunk (its answer, with its
    questions alongside), an article is the chunks of ``KnowledgeEntry.chunks()``.
    Fields: ``doc_id``, ``chunk_id``, ``kind``, ``locale``, ``tags`` (keywords),
    ``version`` (the knowledge-base version that wrote the chunk), ``title``, ``text``,
    ``questions`` (returned, not indexed) and their analysed copies in the field of
    the entry's language: ``title_zh``/``text_zh``/``questions_zh`` (``kefu_zh``: the
    standard tokenizer with CJK width folding and ``cjk_bigram``, built into every
    Elasticsearch, no plugin; ``zh_analyzer="smartcn"`` where that plugin is
    installed) or ``title_en``/``text_en``/``questions_en`` (the ``english``
    analyzer). ``keys`` is a ``nested`` list of the chunk's vectors: the passage
    embedding of the chunk text and, on chunk "0", the query embedding of every
    FAQ question, each a ``dense_vector`` (cosine, HNSW with float vectors, so
    kNN scores are exact cosines) plus a base64 float32 copy (``vector_b64``,
    type ``binary``, not indexed). kNN on a nested vector field scores a chunk by
    its best vector, which is what the embedded index does with its keys; the
    copy lets the client compute the cosine and the matched question in every
    mode, on 8.x and on 9.2+ where dense vectors are left out of ``_source``.
    Chunk "0" also holds the whole ``KnowledgeEntry`` (``entry``, an object with
    ``enabled: false``: kept in ``_source``, never indexed), so ``get()`` and
    re-chunking work without another store. One shard, so BM25 statistics do not
    differ between shards.
``<prefix>-meta``
    One document, id ``kb``: ``{"kb_version": N, "write": <token of the write that set N>,
    "embedder": <model id of the embedder that wrote the vectors>}``.

Needs Elasticsearch 8.11 or later (kNN on nested vectors); works on 9.x.

Searches: ``bm25`` is a ``multi_match`` over the language fields, ``dense`` a
top-level ``knn`` on ``keys.vector``, ``hybrid`` the ``rrf`` retriever over a
``standard`` and a ``knn`` retriever (locale, tag and version filters inside
both). The RRF retriever needs Elasticsearch 8.15+ and a license that includes
it (Enterprise or a trial; a basic license answers 403 "current license is
non-compliant for [Reciprocal Rank Fusion (RRF)]"). With ``hybrid_fusion="auto"``
(the default) a cluster that refuses it is answered, from then on, by running
both retrievers in one ``_msearch`` and fusing their ranks here with the same
formula (rank constant 60); ``"client"`` always does that, ``"server"`` never.

Consistency. Elasticsearch has no multi-document transactions, so a write is
made to look atomic (an upsert whose entries all equal the stored ones writes
nothing and keeps the version, as the embedded index does):

1. Every text is embedded before anything is written; if the embedder fails,
   nothing is written.
2. The new chunks (or, for a delete, one tombstone per document) are written
   with ``version = N`` (the committed version + 1) under new ids
   (``<sha256(doc_id)>-v<N>-<chunk>``), in bulk requests with
   ``refresh=wait_for``. Searches filter on ``version <= committed`` and so do
   not see them yet. If any item fails, the chunks of version N are deleted
   again and the write raises ``InvalidArgument`` (every item rejected as
   malformed, 400) or ``Unavailable``; the version is unchanged.
3. The meta document is raised to N with optimistic concurrency
   (``if_seq_no``/``if_primary_term``): this single-document write is the commit
   point. A lost race with another writer rolls the chunks back and raises
   ``Unavailable``; an unknown outcome (timeout, retried request) is settled by
   reading the meta document again and comparing its write token.
4. Chunks of older versions of the written documents (and tombstones) are
   deleted with ``delete_by_query``. Until that is done, and if it fails, a
   search drops any hit whose version is not its document's committed version,
   so a reader never mixes chunks of two versions of one document; it over-
   fetches to keep ``top_k`` hits. ``open()`` finishes what a crash left:
   uncommitted chunks are deleted, stale ones too, and a document whose newest
   committed version is a tombstone counts as deleted.
5. Every commit records the writer's embedder id. ``open()`` re-embeds every
   document, written as one new version as above, when the meta document names
   another embedder or none (an index from before kefu recorded it); of replicas
   doing so at once one commits, the others keep the identical chunks (no rollback).

What is not guaranteed: writes must come from one process at a time (a second
concurrent writer is detected by the meta document's sequence number and fails,
but a crash-recovery purge of one process can remove another's uncommitted
chunks); other processes see a write only after they notice the new version
(every ``sync_interval_s`` seconds, on a search); a search that runs while a
write is being cleaned up may return fewer than ``top_k`` hits; documents are
as durable as Elasticsearch makes them (translog, replicas).
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Mapping, Sequence, TypeVar

import numpy as np
from elastic_transport import ApiError as TransportApiError
from elastic_transport import TransportError

from services.embedding import Embedder, weights_id
from services.errors import InvalidArgument, KefuError, Unavailable
from services.knowledge.elasticsearch_meta import Conflict, Meta, commit_meta, lost_write, read_meta
from services.knowledge.answerability import AnswerabilityModel, coefficients_path
from services.knowledge.entries import MODES, KnowledgeEntry, Progress, RetrievalHit, SearchResult, check_entries

from services.knowledge.elasticsearch_requests import (
    BULK_BATCH,
    DIMS,
    EntryVectors,
    FUSIONS,
    INDEX_PREFIX_RE,
    SCAN_PAGE,
    SCHEMA_VERSION,
    TERMS_BATCH,
    bulk_actions,
    chunk_documents,
    chunks_index,
    client_fusion_bodies,
    delete_actions,
    embed_entries,
    index_mappings,
    index_settings,
    meta_index,
    meta_mappings,
    meta_settings,
    older_versions_query,
    rrf_fuse,
    scan_body,
    search_body,
    tombstone_documents,
    tombstones_query,
    uncommitted_query,
)
from services.knowledge.elasticsearch_responses import (
    build_hits,
    bulk_error,
    bulk_item_errors,
    error_reason,
    map_error,
    resolve_state,
    rrf_unsupported,
    safe_url,
)

log = logging.getLogger(__name__)
T = TypeVar("T")


# -- the index -----------------------------------------------------------------
@dataclass
class PreparedEntry:
    """An entry embedded by ``prepare``, waiting for ``commit``."""

    entry: KnowledgeEntry
    vectors: EntryVectors


@dataclass
class _State:
    entries: dict[str, KnowledgeEntry]
    doc_versions: dict[str, int]
    version: int


class ElasticsearchIndex:
    """Knowledge base in Elasticsearch (see the module docstring for layout and guarantees)."""

    def __init__(
        self,
        url: str,
        embedder: Embedder,
        *,
        index_prefix: str = "kefu-knowledge",
        answerability: AnswerabilityModel | None = None,
        api_key: str | None = None,
        client: Any = None,
        request_timeout_s: float = 10.0,
        write_timeout_s: float = 120.0,
        ca_certs: str | None = None,
        zh_analyzer: str = "kefu_zh",
        hybrid_fusion: str = "auto",
        default_mode: str = "hybrid",
        sync_interval_s: float | None = 5.0,
        dims: int = DIMS,
    ) -> None:
        if not INDEX_PREFIX_RE.match(index_prefix):
            raise InvalidArgument(f"index prefix {index_prefix!r}: use lower-case letters, digits, '.', '_' and '-'")
        if hybrid_fusion not in FUSIONS:
            raise InvalidArgument(f"hybrid_fusion must be one of {FUSIONS}, got {hybrid_fusion!r}")
        if default_mode not in MODES:
            raise InvalidArgument(f"default mode must be one of {MODES}, got {default_mode!r}")
        if not url and client is None:
            raise InvalidArgument("the Elasticsearch URL is empty (set knowledge.elasticsearch_url)")
        self._url = url
        self._embedder = embedder
        self._answerability = answerability or AnswerabilityModel(path=coefficients_path(self.embedder_id))
        self._prefix = index_prefix
        self._chunks = chunks_index(index_prefix)
        self._meta = meta_index(index_prefix)
        self._zh_analyzer = zh_analyzer
        self._fusion = hybrid_fusion
        self._default_mode = default_mode
        self._server_rrf = hybrid_fusion != "client"
        self._sync_interval_s = sync_interval_s
        self._dims = dims
        self._write_timeout_s = write_timeout_s
        self._owns_client = client is None
        if client is None:
            from elasticsearch import AsyncElasticsearch

            extra: dict[str, Any] = {"ca_certs": ca_certs} if ca_certs else {}
            client = AsyncElasticsearch(
                url, api_key=api_key or None, request_timeout=request_timeout_s, max_retries=2, retry_on_timeout=True, **extra
            )
        self._client = client
        self._lock = asyncio.Lock()
        self._state = _State({}, {}, 0)
        self._opened = False
        self._dirty = False
        self._last_sync = 0.0

    # -- KnowledgeIndex ---------------------------------------------------------
    @property
    def version(self) -> int:
        return self._state.version

    @property
    def embedder_id(self) -> str:
        """The weights that embed queries and passages here (a caller's query vector must come from them)."""
        return weights_id(self._embedder)

    @property
    def dims(self) -> int:
        return self._dims

    def __len__(self) -> int:
        return len(self._state.entries)

    def get(self, doc_id: str) -> KnowledgeEntry | None:
        return self._state.entries.get(doc_id)

    async def open(self) -> None:
        """Create the indices if missing, read the committed version and every live
        document, clean up what an interrupted write left behind, and re-embed every
        document if another (or an unknown) embedder made the stored vectors."""
        await self._ensure_index(self._chunks, index_settings(), index_mappings(self._dims, self._zh_analyzer), check_schema=True)
        await self._ensure_index(self._meta, meta_settings(), meta_mappings(), check_schema=False)
        async with self._lock:
            await self._load((await self._read_meta()).version, reconcile=True)
            await self._match_embedder()
        self._opened = True
        self._last_sync = time.monotonic()
        log.info("knowledge (elasticsearch %s, %s-*): %d documents, version %d", safe_url(self._url), self._prefix, len(self), self.version)

    async def prepare(self, entries: Sequence[KnowledgeEntry], progress: Progress | None = None) -> list[PreparedEntry]:
        """Validate and embed the entries that differ from what is stored; nothing is
        written until ``commit``. If the embedder fails, nothing is written."""
        check_entries(entries)
        self._require_open()
        current = self._state.entries
        changed = [e for e in entries if current.get(e.id) != e]
        if not changed:
            if progress is not None:
                progress(0, 0)
            return []
        vectors = await embed_entries(self._embedder, changed, progress, self._dims)
        return [PreparedEntry(copy.deepcopy(e), v) for e, v in zip(changed, vectors, strict=True)]

    async def commit(self, prepared: Sequence[PreparedEntry]) -> int:
        """Write prepared entries as one change and make them searchable together.
        Returns the new version (the current one when there is nothing to write)."""
        if not prepared:
            return self.version
        check_entries([p.entry for p in prepared])
        self._require_open()
        async with self._lock:
            return await self._write_entries(await self._prepare_write(), [p.entry for p in prepared], [p.vectors for p in prepared])

    async def upsert(self, entries: Sequence[KnowledgeEntry], progress: Progress | None = None) -> int:
        """Add or replace documents; all become visible together. Returns the new
        version (the current one when nothing changed)."""
        return await self.commit(await self.prepare(entries, progress))

    async def delete(self, ids: Sequence[str]) -> tuple[list[str], list[str], int]:
        """Remove documents; returns (deleted, not_found, version)."""
        self._require_open()
        unique = list(dict.fromkeys(ids))
        async with self._lock:
            base = await self._prepare_write()
            st = self._state
            deleted = [i for i in unique if i in st.entries]
            not_found = [i for i in unique if i not in st.entries]
            if not deleted:
                self._dirty = False  # nothing was written
                return [], not_found, st.version
            new = base.version + 1
            docs = tombstone_documents(deleted, new)
            await self._write_docs(docs)
            await self._commit(base, new, [i for i, _ in docs])
            gone = set(deleted)
            self._state = _State(
                {k: v for k, v in st.entries.items() if k not in gone},
                {k: v for k, v in st.doc_versions.items() if k not in gone},
                new,
            )
            if await self._purge_older(deleted, new):
                await self._delete_by_query(tombstones_query(deleted, new), "tombstones")
            return deleted, not_found, new

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
        if top_k < 1:
            raise InvalidArgument("top_k must be at least 1")
        self._require_open()
        await self._maybe_sync()
        st = self._state
        hits: list[RetrievalHit] = []
        if st.entries:
            qv = None
            if mode != "bm25":
                qv = await self.embed_query(query) if query_vector is None else np.asarray(query_vector, dtype=np.float32)
            raw = await self._ranked(query, qv, mode, locales, tags, top_k, st.version)
            hits = build_hits(raw, qv, st.doc_versions, top_k)
        answerable, probability = self._answerability.judge(query, hits)
        return SearchResult(hits, answerable, probability, st.version)

    async def close(self) -> None:
        if self._owns_client:
            await self._client.close()

    async def delete_indices(self) -> None:
        """Delete both indices of this prefix (tests, decommissioning). Irreversible."""
        await self._call(self._client.indices.delete(index=[self._chunks, self._meta], ignore_unavailable=True))
        self._state = _State({}, {}, 0)

    # -- searching --------------------------------------------------------------
    async def _ranked(
        self, query: str, qv: np.ndarray | None, mode: str, locales: Sequence[str], tags: Sequence[str], top_k: int, version: int
    ) -> list[tuple[Mapping[str, Any], float, float]]:
        """(``_source``, score, lexical score) in rank order."""
        if mode == "hybrid" and not self._server_rrf:
            return await self._client_fused(query, qv, locales, tags, top_k, version)  # type: ignore[arg-type]
        body = search_body(query, qv, mode, locales=locales, tags=tags, top_k=top_k, max_version=version)
        try:
            resp = await self._client.search(index=self._chunks, body=body)
        except (TransportApiError, TransportError) as exc:
            if mode == "hybrid" and self._fusion == "auto" and rrf_unsupported(exc):
                log.warning("elasticsearch cannot run the RRF retriever (%s); fusing hybrid results in kefu", error_reason(exc.body))
                self._server_rrf = False
                return await self._client_fused(query, qv, locales, tags, top_k, version)  # type: ignore[arg-type]
            raise map_error(exc, self._url) from exc
        out = []
        for hit in resp["hits"]["hits"]:
            score = float(hit.get("_score") or 0.0)
            if mode == "dense":
                out.append((hit["_source"], 2.0 * score - 1.0, 0.0))  # cosine from (1 + cos) / 2
            else:
                out.append((hit["_source"], score, score if mode == "bm25" else 0.0))
        return out

    async def _client_fused(
        self, query: str, qv: np.ndarray, locales: Sequence[str], tags: Sequence[str], top_k: int, version: int
    ) -> list[tuple[Mapping[str, Any], float, float]]:
        lexical, dense = client_fusion_bodies(query, qv, locales=locales, tags=tags, top_k=top_k, max_version=version)
        resp = await self._call(self._client.msearch(index=self._chunks, searches=[{}, lexical, {}, dense]))
        lists = []
        for part in resp["responses"]:
            if "error" in part:
                if part.get("status") == 400:
                    raise InvalidArgument(f"elasticsearch rejected the request: {error_reason(part)}")
                raise Unavailable(f"elasticsearch at {safe_url(self._url)} failed a search ({part.get('status')}): {error_reason(part)}")
            lists.append(part["hits"]["hits"])
        sources: dict[str, Mapping[str, Any]] = {}
        lexical_scores: dict[str, float] = {}
        for hit in lists[0]:
            sources[hit["_id"]] = hit["_source"]
            lexical_scores[hit["_id"]] = float(hit.get("_score") or 0.0)
        for hit in lists[1]:
            sources.setdefault(hit["_id"], hit["_source"])
        fused = rrf_fuse([[h["_id"] for h in hits] for hits in lists])
        return [(sources[i], score, lexical_scores.get(i, 0.0)) for i, score in fused]

    async def refresh(self) -> bool:
        """Reload when another process (another replica) committed a different version; True if it did."""
        self._last_sync = time.monotonic()
        if (await self._read_meta()).version == self._state.version:
            return False
        async with self._lock:
            committed = (await self._read_meta()).version
            if committed == self._state.version:
                return False
            log.info("knowledge: picked up version %d written by another process", committed)
            await self._load(committed, reconcile=False)
            return True

    async def _maybe_sync(self) -> None:
        """Before a search, at most every ``sync_interval_s`` seconds: ``refresh()``."""
        if self._sync_interval_s is None or self._lock.locked():
            return
        if time.monotonic() - self._last_sync >= self._sync_interval_s:
            await self.refresh()

    # -- storage ----------------------------------------------------------------
    def _require_open(self) -> None:
        if not self._opened:
            raise Unavailable("the Elasticsearch knowledge index is not open yet")

    async def _call(self, awaitable: Awaitable[T]) -> T:
        try:
            return await awaitable
        except (TransportApiError, TransportError) as exc:
            raise map_error(exc, self._url) from exc

    def _slow(self) -> Any:
        return self._client.options(request_timeout=self._write_timeout_s)

    async def _ensure_index(self, name: str, settings: dict, mappings: dict, *, check_schema: bool) -> None:
        exists = await self._call(self._client.indices.exists(index=name))
        if not exists:
            try:
                await self._client.indices.create(index=name, settings=settings, mappings=mappings)
                log.info("knowledge: created index %s", name)
                return
            except TransportApiError as exc:
                if "resource_already_exists_exception" not in error_reason(exc.body):
                    raise map_error(exc, self._url) from exc
        if check_schema:
            resp = await self._call(self._client.indices.get_mapping(index=name))
            meta = next(iter(resp.body.values()), {}).get("mappings", {}).get("_meta", {})
            if meta.get("kefu_schema") != SCHEMA_VERSION or meta.get("dims") != self._dims:
                raise Unavailable(
                    f"index {name} has layout {meta or 'unknown'}, this kefu needs kefu_schema={SCHEMA_VERSION} dims={self._dims}: "
                    "use another index prefix (and re-ingest) or delete the old indices"
                )

    async def _read_meta(self) -> Meta:
        return await read_meta(self._client, self._meta, self._url)

    async def _scan(self) -> list[dict]:
        rows: list[dict] = []
        after = None
        while True:
            resp = await self._call(self._client.search(index=self._chunks, body=scan_body(after)))
            page = resp["hits"]["hits"]
            rows += [h["_source"] for h in page]
            if len(page) < SCAN_PAGE:
                return rows
            after = page[-1]["sort"]

    async def _load(self, committed: int, *, reconcile: bool) -> None:
        stored = resolve_state(await self._scan(), committed)
        self._state = _State(stored.entries, stored.doc_versions, committed)
        if not reconcile:
            return
        if stored.uncommitted:
            log.warning("knowledge: removing chunks of an interrupted write (version > %d)", committed)
            await self._delete_by_query(uncommitted_query(committed), "uncommitted chunks")
        for keep, doc_ids in stored.stale.items():
            await self._purge_older(doc_ids, keep)
        for version, doc_ids in stored.tombstones.items():
            if await self._purge_older(doc_ids, version):
                await self._delete_by_query(tombstones_query(doc_ids, version), "tombstones")

    async def _prepare_write(self) -> Meta:
        meta = await self._read_meta()
        if meta.version != self._state.version:
            log.info("knowledge: version %d written elsewhere, reloading before this write", meta.version)
            await self._load(meta.version, reconcile=False)
        if self._dirty:
            if not await self._delete_by_query(uncommitted_query(meta.version), "uncommitted chunks"):
                raise Unavailable("chunks of an earlier failed write could not be removed from elasticsearch; retry later")
            self._dirty = False
        # Until this write commits or is rolled back, chunks above the committed
        # version may exist: the next write removes them first.
        self._dirty = True
        return meta

    async def _write_docs(self, docs: list[tuple[str, dict]]) -> None:
        """Index ``docs``; on any failure delete what was sent and raise."""
        sent: list[str] = []
        try:
            for start in range(0, len(docs), BULK_BATCH):
                batch = docs[start : start + BULK_BATCH]
                sent += [i for i, _ in batch]
                resp = await self._call(self._slow().bulk(operations=bulk_actions(self._chunks, batch), refresh="wait_for"))
                errors = bulk_item_errors(resp)
                if errors:
                    raise bulk_error(errors, docs)
        except KefuError:
            await self._rollback(sent)
            raise

    async def _rollback(self, ids: list[str]) -> None:
        """Delete the chunks of a write that did not commit. If that fails they stay
        invisible (version > committed) and the next write or ``open()`` removes them."""
        try:
            for start in range(0, len(ids), BULK_BATCH):
                resp = await self._call(
                    self._slow().bulk(operations=delete_actions(self._chunks, ids[start : start + BULK_BATCH]), refresh="wait_for")
                )
                if bulk_item_errors(resp):
                    raise Unavailable(f"rollback failed: {bulk_item_errors(resp)[0]}")
        except KefuError as exc:
            log.warning("knowledge: could not roll back %d chunk documents: %s", len(ids), exc)
            return
        self._dirty = False

    async def _commit(self, base: Meta, new: int, written: list[str], *, reembed: bool = False) -> None:
        """Raise the meta version from ``base.version`` to ``new``: the commit point. A
        re-embed that lost to another replica's re-embed with this embedder keeps its
        chunks (same ids and content as the winner's) and raises ``Conflict``."""
        lost = await commit_meta(self._client, self._meta, self._url, base, new, self.embedder_id)
        if lost is None:
            self._dirty = False
            return
        failure, now = lost
        if reembed and now.embedder == self.embedder_id:
            raise Conflict("another replica re-embedded the knowledge base first") from failure
        await self._rollback(written)
        raise lost_write(failure, base, now, self._url) from failure

    async def _write_entries(self, base: Meta, entries: list[KnowledgeEntry], vectors: list[EntryVectors], *, reembed: bool = False) -> int:
        """Write ``entries`` as version ``base.version + 1``: chunks, commit, then the purge of older chunks."""
        new = base.version + 1
        docs = chunk_documents(entries, vectors, new)
        await self._write_docs(docs)
        await self._commit(base, new, [i for i, _ in docs], reembed=reembed)
        st = self._state
        self._state = _State({**st.entries, **{e.id: e for e in entries}}, {**st.doc_versions, **{e.id: new for e in entries}}, new)
        await self._purge_older([e.id for e in entries], new)
        return new

    async def _match_embedder(self) -> None:
        """At open, under the lock: when the meta document names another embedder than
        this one's (or none), re-embed every document and write them as one new version;
        an index without documents only records the id. A replica that loses the race
        for the meta document looks again and finds the winner's commit."""
        own, tries = self.embedder_id, 0
        while True:
            meta = await self._read_meta()
            if meta.version != self._state.version:
                await self._load(meta.version, reconcile=False)
            if meta.embedder == own:
                return
            if tries == 3:
                raise Unavailable(f"the knowledge base kept changing while it was re-embedded with {own}; retry")
            tries += 1
            entries = [self._state.entries[i] for i in sorted(self._state.entries)]
            vectors = await embed_entries(self._embedder, entries, None, self._dims) if entries else []
            base = await self._prepare_write()
            try:
                if (base.version, base.seq) != (meta.version, meta.seq):
                    self._dirty = False  # written meanwhile (nothing of this attempt was): look again
                elif not entries:
                    await self._commit(base, base.version, [], reembed=True)
                else:
                    new = await self._write_entries(base, entries, vectors, reembed=True)
                    log.info("knowledge: re-embedded %d documents written by %s with %s: version %d",
                             len(entries), meta.embedder or "an unknown embedder (none recorded)", own, new)
            except Conflict:
                pass  # another replica committed first: look again

    async def _delete_by_query(self, query: dict, what: str) -> bool:
        """Best-effort cleanup; True when everything matching was deleted."""
        try:
            resp = await self._call(
                self._slow().delete_by_query(index=self._chunks, query=query, refresh=True, conflicts="proceed", wait_for_completion=True)
            )
        except KefuError as exc:
            log.warning("knowledge: could not delete %s: %s", what, exc)
            return False
        if resp.get("failures") or resp.get("timed_out"):
            log.warning("knowledge: deleting %s left failures: %s", what, str(resp.get("failures"))[:300])
            return False
        return True

    async def _purge_older(self, doc_ids: Sequence[str], keep: int) -> bool:
        ok = True
        for start in range(0, len(doc_ids), TERMS_BATCH):
            ok &= await self._delete_by_query(older_versions_query(doc_ids[start : start + TERMS_BATCH], keep), "superseded chunks")
        return ok
