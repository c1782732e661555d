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
    One document, id ``kb``: ``{"kb_version": N, "write": <token of the write that set N>}``.

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
import base64
import copy
import dataclasses
import hashlib
import logging
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Awaitable, Iterable, Mapping, Sequence, TypeVar
from urllib.parse import urlsplit, urlunsplit

import numpy as np
from elastic_transport import ApiError as TransportApiError
from elastic_transport import ConnectionError as TransportConnectionError
from elastic_transport import ConnectionTimeout, SerializationError, TransportError

from services.embedding import Embedder
from services.errors import InvalidArgument, KefuError, Unavailable
from services.knowledge.answerability import AnswerabilityModel
from services.knowledge.entries import LOCALES, MODES, KnowledgeEntry, Progress, RetrievalHit, SearchResult, check_entries

log = logging.getLogger(__name__)

T = TypeVar("T")

SCHEMA_VERSION = 1
DIMS = 384
META_ID = "kb"
TOMBSTONE = "tombstone"
RRF_RANK_CONSTANT = 60
FUSIONS = ("auto", "server", "client")
EMBED_BATCH = 64
BULK_BATCH = 200
SCAN_PAGE = 500
TERMS_BATCH = 1000
# Boosts of the lexical fields: a question phrasing says most about a match.
FIELD_BOOSTS = {"questions": 2.0, "title": 1.5, "text": 1.0}
_PREFIX_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,200}$")


# -- index layout --------------------------------------------------------------
def chunks_index(prefix: str) -> str:
    return f"{prefix}-chunks"


def meta_index(prefix: str) -> str:
    return f"{prefix}-meta"


def doc_key(doc_id: str) -> str:
    """A short, stable, id-safe key for a document id (ids may be 512 characters)."""
    return hashlib.sha256(doc_id.encode("utf-8")).hexdigest()[:32]


def chunk_doc_id(doc_id: str, chunk_id: str, version: int) -> str:
    return f"{doc_key(doc_id)}-v{version}-{chunk_id}"


def tombstone_doc_id(doc_id: str, version: int) -> str:
    return f"{doc_key(doc_id)}-v{version}-x"


def index_settings() -> dict[str, Any]:
    """Settings of the chunks index: one shard, and the language analyzers."""
    return {
        "number_of_shards": 1,
        "auto_expand_replicas": "0-1",
        "analysis": {
            "analyzer": {
                # What the built-in "cjk" analyzer does, minus its English stop list:
                # Han characters become overlapping bigrams, Latin words stay whole.
                "kefu_zh": {"type": "custom", "tokenizer": "standard", "filter": ["cjk_width", "lowercase", "cjk_bigram"]},
                "kefu_en": {"type": "english"},
            }
        },
    }


def _language_fields(zh_analyzer: str) -> dict[str, Any]:
    analyzers = {"zh": zh_analyzer, "en": "kefu_en"}
    return {f"{name}_{loc}": {"type": "text", "analyzer": analyzers[loc]} for name in FIELD_BOOSTS for loc in LOCALES}


def index_mappings(dims: int = DIMS, zh_analyzer: str = "kefu_zh") -> dict[str, Any]:
    keyword = {"type": "keyword"}
    shown = {"type": "text", "index": False}
    return {
        "dynamic": "strict",
        "_meta": {"kefu_schema": SCHEMA_VERSION, "dims": dims},
        "properties": {
            "doc_id": keyword,
            "chunk_id": keyword,
            "kind": keyword,
            "locale": keyword,
            "tags": keyword,
            "version": {"type": "long"},
            "title": shown,
            "text": shown,
            "questions": shown,
            **_language_fields(zh_analyzer),
            "keys": {
                "type": "nested",
                "properties": {
                    # -1: the chunk's passage; i >= 0: questions[i].
                    "ord": {"type": "integer"},
                    "vector": {
                        "type": "dense_vector",
                        "dims": dims,
                        "index": True,
                        "similarity": "cosine",
                        "index_options": {"type": "hnsw", "m": 16, "ef_construction": 100},
                    },
                    "vector_b64": {"type": "binary"},
                },
            },
            "entry": {"type": "object", "enabled": False},
        },
    }


def meta_settings() -> dict[str, Any]:
    return {"number_of_shards": 1, "auto_expand_replicas": "0-1"}


def meta_mappings() -> dict[str, Any]:
    return {"dynamic": False, "properties": {"kb_version": {"type": "long"}}}


# -- documents -----------------------------------------------------------------
@dataclass
class EntryVectors:
    """Embeddings of one entry: a row per chunk (passages), a row per question."""

    passages: np.ndarray
    questions: np.ndarray


def entry_questions(entry: KnowledgeEntry) -> list[str]:
    return [q.strip() for q in entry.questions if q.strip()]


def encode_vector(vector: np.ndarray) -> str:
    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")


def decode_vector(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype="<f4")


def _key(ord_: int, vector: np.ndarray) -> dict[str, Any]:
    v = np.asarray(vector, dtype=np.float32)
    return {"ord": ord_, "vector": [round(float(x), 7) for x in v], "vector_b64": encode_vector(v)}


async def _embed_batched(embed: Any, texts: list[str], dims: int, step: Any) -> np.ndarray:
    rows = []
    for start in range(0, len(texts), EMBED_BATCH):
        part = texts[start : start + EMBED_BATCH]
        vecs = np.asarray(await embed(part), dtype=np.float32)
        if vecs.shape != (len(part), dims):
            raise KefuError(f"the embedder returned vectors of shape {vecs.shape}, expected ({len(part)}, {dims})")
        rows.append(vecs)
        step(len(part))
    return np.concatenate(rows) if rows else np.zeros((0, dims), np.float32)


async def embed_entries(
    embedder: Embedder, entries: Sequence[KnowledgeEntry], progress: Progress | None = None, dims: int = DIMS
) -> list[EntryVectors]:
    """Passage vectors of every chunk and query vectors of every question, per entry."""
    chunks = [[text for _, text in e.chunks()] for e in entries]
    questions = [entry_questions(e) for e in entries]
    total = sum(map(len, chunks)) + sum(map(len, questions))
    done = 0

    def step(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(done, total)

    p_all = await _embed_batched(embedder.embed_passages, [t for c in chunks for t in c], dims, step)
    q_all = await _embed_batched(embedder.embed_queries, [q for qs in questions for q in qs], dims, step)
    out, pi, qi = [], 0, 0
    for c, qs in zip(chunks, questions, strict=True):
        out.append(EntryVectors(p_all[pi : pi + len(c)], q_all[qi : qi + len(qs)]))
        pi, qi = pi + len(c), qi + len(qs)
    return out


def chunk_documents(entries: Sequence[KnowledgeEntry], vectors: Sequence[EntryVectors], version: int) -> list[tuple[str, dict]]:
    """(``_id``, ``_source``) of every chunk document of ``entries`` at ``version``."""
    docs: list[tuple[str, dict]] = []
    for entry, vecs in zip(entries, vectors, strict=True):
        questions = entry_questions(entry)
        chunks = entry.chunks()
        if len(vecs.passages) != len(chunks) or len(vecs.questions) != len(questions):
            raise ValueError(f"vectors do not match the chunks and questions of document {entry.id!r}")
        for n, (chunk_id, text) in enumerate(chunks):
            first = chunk_id == "0"
            qs = questions if first else []
            keys = [_key(-1, vecs.passages[n])] + ([_key(i, v) for i, v in enumerate(vecs.questions)] if first else [])
            source: dict[str, Any] = {
                "doc_id": entry.id,
                "chunk_id": chunk_id,
                "kind": entry.kind,
                "locale": entry.locale,
                "tags": list(entry.tags),
                "version": version,
                "title": entry.title,
                "text": text,
                "questions": qs,
                f"title_{entry.locale}": entry.title,
                f"text_{entry.locale}": text,
                f"questions_{entry.locale}": qs,
                "keys": keys,
            }
            if first:
                source["entry"] = dataclasses.asdict(entry)
            docs.append((chunk_doc_id(entry.id, chunk_id, version), source))
    return docs


def tombstone_documents(doc_ids: Sequence[str], version: int) -> list[tuple[str, dict]]:
    return [(tombstone_doc_id(d, version), {"doc_id": d, "chunk_id": "-", "kind": TOMBSTONE, "version": version}) for d in doc_ids]


def bulk_actions(index: str, docs: Sequence[tuple[str, dict]]) -> list[dict]:
    """The ``_bulk`` body (action and source lines) that indexes ``docs``."""
    ops: list[dict] = []
    for doc_id, source in docs:
        ops.append({"index": {"_index": index, "_id": doc_id}})
        ops.append(source)
    return ops


def delete_actions(index: str, ids: Sequence[str]) -> list[dict]:
    return [{"delete": {"_index": index, "_id": i}} for i in ids]


def bulk_item_errors(response: Mapping[str, Any]) -> list[tuple[str, int, str, str]]:
    """(``_id``, status, error type, reason) of every failed item of a ``_bulk`` answer."""
    out = []
    for item in response.get("items", []):
        for result in item.values():
            error = result.get("error")
            if error:
                if isinstance(error, dict):
                    out.append((str(result.get("_id")), int(result.get("status", 0)), str(error.get("type", "")), str(error.get("reason", ""))))
                else:
                    out.append((str(result.get("_id")), int(result.get("status", 0)), "", str(error)))
    return out


def bulk_error(errors: Sequence[tuple[str, int, str, str]], docs: Sequence[tuple[str, dict]]) -> KefuError:
    """The error a write raises when items of its bulk request failed."""
    where = {i: (s.get("doc_id", "?"), s.get("chunk_id", "?")) for i, s in docs}
    _id, status, kind, reason = errors[0]
    doc_id, chunk_id = where.get(_id, ("?", "?"))
    message = (
        f"elasticsearch rejected {len(errors)} of {len(docs)} chunk documents, so nothing was written "
        f"(first: document {doc_id!r} chunk {chunk_id}: {kind or 'error'}: {reason[:300]})"
    )
    if all(e[1] == 400 for e in errors):
        return InvalidArgument(message)
    return Unavailable(message)


# -- queries -------------------------------------------------------------------
def fetch_size(top_k: int) -> int:
    """Hits asked for: more than ``top_k``, since superseded chunks are dropped here."""
    return min(top_k * 2 + 5, 10_000)


def search_filters(locales: Sequence[str], tags: Sequence[str], max_version: int) -> list[dict]:
    filters: list[dict] = [{"range": {"version": {"lte": max_version}}}]
    if locales:
        filters.append({"terms": {"locale": list(locales)}})
    if tags:
        filters.append({"terms": {"tags": list(tags)}})
    return filters


def lexical_fields(locales: Sequence[str] = ()) -> list[str]:
    locs = [loc for loc in LOCALES if loc in locales] or list(LOCALES)
    return [f"{name}_{loc}^{boost:g}" for name, boost in FIELD_BOOSTS.items() for loc in locs]


def search_source() -> dict[str, Any]:
    """What a search reads back: no stored entry, no indexed copies, no float vectors
    (the base64 copy in ``keys.vector_b64`` is enough for the client-side cosine)."""
    return {"excludes": ["entry", "keys.vector", *(f"{name}_{loc}" for name in FIELD_BOOSTS for loc in LOCALES)]}


def lexical_query(query: str, filters: list[dict], locales: Sequence[str] = ()) -> dict[str, Any]:
    return {
        "bool": {
            "must": [{"multi_match": {"query": query, "fields": lexical_fields(locales), "type": "best_fields", "tie_breaker": 0.3}}],
            "filter": filters,
        }
    }


def knn_clause(query_vector: Sequence[float], filters: list[dict], k: int, num_candidates: int) -> dict[str, Any]:
    return {
        "field": "keys.vector",
        "query_vector": [float(x) for x in query_vector],
        "k": k,
        "num_candidates": num_candidates,
        "filter": filters,
    }


def num_candidates_for(k: int) -> int:
    return min(max(k * 10, 100), 10_000)


def search_body(
    query: str,
    query_vector: Sequence[float] | None,
    mode: str,
    *,
    locales: Sequence[str] = (),
    tags: Sequence[str] = (),
    top_k: int = 3,
    max_version: int,
    rank_window_size: int | None = None,
    rank_constant: int = RRF_RANK_CONSTANT,
) -> dict[str, Any]:
    """The ``_search`` body of one search: ``bm25``, ``dense`` or ``hybrid`` (RRF retriever)."""
    if mode not in MODES:
        raise InvalidArgument(f"unknown search mode {mode!r}: use one of {', '.join(MODES)}")
    if mode != "bm25" and query_vector is None:
        raise ValueError(f"mode {mode!r} needs a query vector")
    size = fetch_size(top_k)
    filters = search_filters(locales, tags, max_version)
    body: dict[str, Any] = {"size": size, "_source": search_source()}
    if mode == "bm25":
        body["query"] = lexical_query(query, filters, locales)
    elif mode == "dense":
        body["knn"] = knn_clause(query_vector, filters, size, num_candidates_for(size))  # type: ignore[arg-type]
    else:
        window = max(rank_window_size or 0, size, 50)
        body["retriever"] = {
            "rrf": {
                "retrievers": [
                    {"standard": {"query": lexical_query(query, filters, locales)}},
                    {"knn": knn_clause(query_vector, filters, window, num_candidates_for(window))},  # type: ignore[arg-type]
                ],
                "rank_window_size": window,
                "rank_constant": rank_constant,
            }
        }
    return body


def client_fusion_bodies(
    query: str, query_vector: Sequence[float], *, locales: Sequence[str] = (), tags: Sequence[str] = (), top_k: int = 3, max_version: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The two searches (lexical, kNN) whose ranks ``rrf_fuse`` combines when the cluster
    cannot run the RRF retriever; each returns the RRF window."""
    window = max(fetch_size(top_k), 50)
    filters = search_filters(locales, tags, max_version)
    source = search_source()
    lexical = {"size": window, "_source": source, "query": lexical_query(query, filters, locales)}
    dense = {"size": window, "_source": source, "knn": knn_clause(query_vector, filters, window, num_candidates_for(window))}
    return lexical, dense


def rrf_fuse(rankings: Sequence[Sequence[str]], rank_constant: int = RRF_RANK_CONSTANT) -> list[tuple[str, float]]:
    """Reciprocal rank fusion: score(d) = sum over rankings of 1 / (rank_constant + rank), rank from 1."""
    scores: dict[str, float] = {}
    for ranking in rankings:
        for rank, ident in enumerate(ranking, start=1):
            scores[ident] = scores.get(ident, 0.0) + 1.0 / (rank_constant + rank)
    return sorted(scores.items(), key=lambda kv: -kv[1])


def scan_body(after: Sequence[Any] | None = None) -> dict[str, Any]:
    """One page of the read of every chunk's bookkeeping fields (``open()``)."""
    body: dict[str, Any] = {
        "size": SCAN_PAGE,
        "query": {"match_all": {}},
        "sort": [{"doc_id": "asc"}, {"version": "asc"}, {"chunk_id": "asc"}],
        "_source": ["doc_id", "chunk_id", "kind", "version", "entry"],
        "track_total_hits": False,
    }
    if after is not None:
        body["search_after"] = list(after)
    return body


def older_versions_query(doc_ids: Sequence[str], keep: int) -> dict[str, Any]:
    return {"bool": {"filter": [{"terms": {"doc_id": list(doc_ids)}}, {"range": {"version": {"lt": keep}}}]}}


def uncommitted_query(committed: int) -> dict[str, Any]:
    return {"range": {"version": {"gt": committed}}}


def tombstones_query(doc_ids: Sequence[str], upto: int) -> dict[str, Any]:
    return {"bool": {"filter": [{"terms": {"doc_id": list(doc_ids)}}, {"term": {"kind": TOMBSTONE}}, {"range": {"version": {"lte": upto}}}]}}


# -- reading results -----------------------------------------------------------
def key_similarity(keys: Sequence[Mapping[str, Any]], query_vector: np.ndarray, questions: Sequence[str]) -> tuple[float, str]:
    """(cosine of the query with the chunk's best vector, the best-matching question or "")."""
    vecs, ords = [], []
    for k in keys:
        if k.get("vector_b64"):
            v = decode_vector(k["vector_b64"])
        elif k.get("vector") is not None:
            v = np.asarray(k["vector"], dtype=np.float32)
        else:
            continue
        vecs.append(v)
        ords.append(int(k.get("ord", -1)))
    if not vecs:
        return 0.0, ""
    m = np.stack(vecs).astype(np.float32)
    m /= np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-12)
    q = np.asarray(query_vector, dtype=np.float32)
    q = q / max(float(np.linalg.norm(q)), 1e-12)
    sims = m @ q
    matched = ""
    q_rows = [i for i, o in enumerate(ords) if 0 <= o < len(questions)]
    if q_rows:
        best = max(q_rows, key=lambda i: sims[i])
        matched = questions[ords[best]]
    return float(sims.max()), matched


def build_hits(
    raw: Iterable[tuple[Mapping[str, Any], float, float]],
    query_vector: np.ndarray | None,
    doc_versions: Mapping[str, int],
    top_k: int,
) -> list[RetrievalHit]:
    """Hits from (``_source``, score, lexical score) in rank order, dropping chunks that
    are not the committed version of their document (superseded, deleted, uncommitted)."""
    hits: list[RetrievalHit] = []
    for source, score, lexical in raw:
        doc_id = source.get("doc_id", "")
        if source.get("kind") == TOMBSTONE or doc_versions.get(doc_id) != source.get("version"):
            continue
        questions = list(source.get("questions") or [])
        dense, matched = (0.0, "") if query_vector is None else key_similarity(source.get("keys") or [], query_vector, questions)
        hits.append(
            RetrievalHit(
                doc_id=doc_id,
                chunk_id=str(source.get("chunk_id", "")),
                title=source.get("title", ""),
                text=source.get("text", ""),
                matched_question=matched,
                score=float(score),
                locale=source.get("locale", ""),
                tags=list(source.get("tags") or []),
                dense_score=dense,
                lexical_score=float(lexical),
            )
        )
        if len(hits) >= top_k:
            break
    return hits


@dataclass
class StoredState:
    """What the chunks index says, read back by ``resolve_state``."""

    entries: dict[str, KnowledgeEntry]
    doc_versions: dict[str, int]
    # Chunks written by a write that never committed (version > committed).
    uncommitted: bool = False
    # keep version -> doc ids that still have chunks of older versions.
    stale: dict[int, list[str]] = field(default_factory=dict)
    # tombstone version -> doc ids deleted at that version (tombstones still there).
    tombstones: dict[int, list[str]] = field(default_factory=dict)


def _entry_from(data: Mapping[str, Any]) -> KnowledgeEntry:
    names = {f.name for f in dataclasses.fields(KnowledgeEntry)}
    return KnowledgeEntry(**{k: v for k, v in data.items() if k in names})


def resolve_state(rows: Iterable[Mapping[str, Any]], committed: int) -> StoredState:
    """Live documents from the bookkeeping fields of every chunk document: a document's
    live version is its newest version <= ``committed``; a tombstone there deletes it."""
    rows = list(rows)
    latest: dict[str, int] = {}
    uncommitted = False
    for r in rows:
        v = int(r.get("version", 0))
        if v > committed:
            uncommitted = True
        elif v > latest.get(r["doc_id"], -1):
            latest[r["doc_id"]] = v
    entries: dict[str, KnowledgeEntry] = {}
    versions: dict[str, int] = {}
    dead: dict[str, int] = {}
    stale_docs: set[str] = set()
    for r in rows:
        doc_id, v = r["doc_id"], int(r.get("version", 0))
        if v > committed:
            continue
        if v < latest[doc_id]:
            stale_docs.add(doc_id)
        elif r.get("kind") == TOMBSTONE:
            dead[doc_id] = v
        elif r.get("chunk_id") == "0" and r.get("entry"):
            entries[doc_id] = _entry_from(r["entry"])
            versions[doc_id] = v
    stale: dict[int, list[str]] = {}
    for doc_id in sorted(stale_docs - dead.keys()):  # a deleted document's older chunks go with its tombstone
        stale.setdefault(latest[doc_id], []).append(doc_id)
    tombstones: dict[int, list[str]] = {}
    for doc_id, v in sorted(dead.items()):
        tombstones.setdefault(v, []).append(doc_id)
    return StoredState(entries, versions, uncommitted, stale, tombstones)


# -- errors --------------------------------------------------------------------
def safe_url(url: str) -> str:
    """``url`` without credentials, for messages."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<invalid url>"
    if parts.username or parts.password:
        netloc = parts.hostname or ""
        if parts.port:
            netloc += f":{parts.port}"
        parts = parts._replace(netloc=netloc)
    return urlunsplit(parts)


def error_reason(body: Any) -> str:
    """A short reason from an Elasticsearch error body."""
    if isinstance(body, Mapping):
        error = body.get("error")
        if isinstance(error, Mapping):
            root = (error.get("root_cause") or [{}])[0]
            kind = root.get("type") or error.get("type") or "error"
            reason = root.get("reason") or error.get("reason") or ""
            caused = (error.get("caused_by") or {}).get("reason")
            text = f"{kind}: {reason}"
            if caused and caused not in text:
                text += f" ({caused})"
            return text[:500]
        if error:
            return str(error)[:500]
        if body.get("found") is False:
            return "not found"
    return str(body)[:500] if body else "no details"


def map_error(exc: BaseException, url: str) -> KefuError:
    """The kefu error for an exception of the Elasticsearch client (no stack trace in it)."""
    where = f"elasticsearch at {safe_url(url)}"
    if isinstance(exc, ConnectionTimeout):
        return Unavailable(f"{where} unreachable: no answer in time ({exc})")
    if isinstance(exc, TransportConnectionError):
        return Unavailable(f"{where} unreachable: {exc}")
    if isinstance(exc, SerializationError):
        return Unavailable(f"{where} sent an answer that could not be read: {exc}")
    if isinstance(exc, TransportError):
        return Unavailable(f"{where} unreachable: {exc}")
    if isinstance(exc, TransportApiError):
        status = exc.meta.status if exc.meta is not None else 0
        reason = error_reason(exc.body)
        if type(exc).__name__ == "UnsupportedProductError":
            return Unavailable(f"{where} does not answer as Elasticsearch: {exc.message}")
        if status == 400:
            return InvalidArgument(f"elasticsearch rejected the request: {reason}")
        if status in (401, 403):
            return Unavailable(f"{where} refused access ({status}): {reason}; check the API key and its privileges")
        if status == 404:
            return Unavailable(f"{where}: {reason}; the knowledge indices may have been deleted, restart the service to recreate them")
        if status == 409:
            return Unavailable(f"{where}: conflicting concurrent write: {reason}")
        if status == 429 or status >= 500:
            return Unavailable(f"{where} is overloaded or failing ({status}): {reason}")
        return KefuError(f"{where} failed ({status}): {reason}")
    return KefuError(f"{where} failed: {type(exc).__name__}")


def rrf_unsupported(exc: BaseException) -> bool:
    """Whether a failed hybrid search means this cluster cannot run the RRF retriever
    (license without RRF, or a version before retrievers)."""
    if not isinstance(exc, TransportApiError) or exc.meta is None:
        return False
    text = f"{exc.message} {error_reason(exc.body)}".lower()
    if exc.meta.status == 403 and "license" in text:
        return True
    return exc.meta.status == 400 and ("retriever" in text or "rrf" in text)


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


@dataclass
class _Meta:
    """The meta document: committed version, (seq_no, primary_term) for optimistic
    concurrency (None while there is none) and the token of the write that set it."""

    version: int
    seq: tuple[int, int] | None
    write: str


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
        if not _PREFIX_RE.match(index_prefix):
            raise InvalidArgument(f"index prefix {index_prefix!r}: use lower-case letters, digits, '.', '_' and '-'")
        if hybrid_fusion not in FUSIONS:
            raise InvalidArgument(f"hybrid_fusion must be one of {FUSIONS}, got {hybrid_fusion!r}")
        if default_mode not in MODES:
            raise InvalidArgument(f"default mode must be one of {MODES}, got {default_mode!r}")
        if not url and client is None:
            raise InvalidArgument("the Elasticsearch URL is empty (set knowledge.elasticsearch_url)")
        self._url = url
        self._embedder = embedder
        self._answerability = answerability or AnswerabilityModel()
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

    def __len__(self) -> int:
        return len(self._state.entries)

    def get(self, doc_id: str) -> KnowledgeEntry | None:
        return self._state.entries.get(doc_id)

    async def open(self) -> None:
        """Create the indices if missing, read the committed version and every live
        document, and clean up what an interrupted write left behind."""
        await self._ensure_index(self._chunks, index_settings(), index_mappings(self._dims, self._zh_analyzer), check_schema=True)
        await self._ensure_index(self._meta, meta_settings(), meta_mappings(), check_schema=False)
        async with self._lock:
            await self._load((await self._read_meta()).version, reconcile=True)
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
        entries = [p.entry for p in prepared]
        async with self._lock:
            base = await self._prepare_write()
            new = base.version + 1
            docs = chunk_documents(entries, [p.vectors for p in prepared], new)
            await self._write_docs(docs)
            await self._commit(base, new, [i for i, _ in docs])
            st = self._state
            self._state = _State(
                {**st.entries, **{e.id: e for e in entries}},
                {**st.doc_versions, **{e.id: new for e in entries}},
                new,
            )
            await self._purge_older([e.id for e in entries], new)
            return new

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

    async def _read_meta(self) -> _Meta:
        try:
            resp = await self._client.get(index=self._meta, id=META_ID)
        except TransportApiError as exc:
            if exc.meta is not None and exc.meta.status == 404 and isinstance(exc.body, Mapping) and exc.body.get("found") is False:
                return _Meta(0, None, "")
            raise map_error(exc, self._url) from exc
        except TransportError as exc:
            raise map_error(exc, self._url) from exc
        source = resp["_source"]
        return _Meta(int(source.get("kb_version", 0)), (int(resp["_seq_no"]), int(resp["_primary_term"])), str(source.get("write", "")))

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

    async def _prepare_write(self) -> _Meta:
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

    async def _commit(self, base: _Meta, new: int, written: list[str]) -> None:
        """Raise the meta version from ``base.version`` to ``new``: the commit point."""
        token = uuid.uuid4().hex
        document = {"kb_version": new, "write": token}
        try:
            if base.seq is None:
                await self._client.create(index=self._meta, id=META_ID, document=document)
            else:
                await self._client.index(index=self._meta, id=META_ID, document=document, if_seq_no=base.seq[0], if_primary_term=base.seq[1])
            self._dirty = False
            return
        except (TransportApiError, TransportError) as exc:
            failure = exc
        # The outcome may be unknown (a timeout, or a retry of a request that had in
        # fact been applied): the meta document says whether this write committed.
        try:
            now = await self._read_meta()
        except KefuError as exc:
            raise Unavailable(
                f"elasticsearch at {safe_url(self._url)} failed while committing version {new}; "
                f"whether the write was applied is unknown until it answers again ({exc})"
            ) from failure
        if now.write == token:
            self._dirty = False
            return
        await self._rollback(written)
        if isinstance(failure, TransportApiError) and failure.meta is not None and failure.meta.status == 409:
            raise Unavailable(
                f"another process wrote to the knowledge base at the same time (version {base.version} -> {now.version}); "
                "this write was rolled back, retry it"
            ) from failure
        raise map_error(failure, self._url) from failure

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
