"""Elasticsearch request bodies, for the knowledge backend in ``elasticsearch.py``:
index settings and mappings, chunk documents and bulk actions, search bodies for
each mode and client-side RRF. Pure functions, so every body can be checked
offline; reading the answers back is ``elasticsearch_responses.py``.
"""
from __future__ import annotations

import base64
import dataclasses
import hashlib
import re
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from services.embedding import Embedder
from services.errors import InvalidArgument, KefuError
from services.knowledge.entries import LOCALES, MODES, KnowledgeEntry, Progress


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
INDEX_PREFIX_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,200}$")


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
                    # -1: the chunk's passage; i >= 0: questions[i]; -2, -3, ...: the passage's sentences.
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
    """Embeddings of one entry: a row per chunk (passages), a row per question, and per
    chunk a row per sentence key (an article passage's sentences: KnowledgeEntry.sentence_keys)."""

    passages: np.ndarray
    questions: np.ndarray
    sentences: list[np.ndarray] = dataclasses.field(default_factory=list)


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
    """Passage vectors of every chunk and its sentence keys, and query vectors of every
    question, per entry."""
    chunks = [[text for _, text in e.chunks()] for e in entries]
    questions = [entry_questions(e) for e in entries]
    sentences = [e.sentence_keys() for e in entries]
    total = sum(map(len, chunks)) + sum(map(len, questions)) + sum(len(k) for per in sentences for k in per)
    done = 0

    def step(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(done, total)

    p_all = await _embed_batched(embedder.embed_passages, [t for c in chunks for t in c], dims, step)
    q_all = await _embed_batched(embedder.embed_queries, [q for qs in questions for q in qs], dims, step)
    s_all = await _embed_batched(embedder.embed_passages, [k for per in sentences for ks in per for k in ks], dims, step)
    out, pi, qi, si = [], 0, 0, 0
    for c, qs, per in zip(chunks, questions, sentences, strict=True):
        rows = []
        for ks in per:
            rows.append(s_all[si : si + len(ks)])
            si += len(ks)
        out.append(EntryVectors(p_all[pi : pi + len(c)], q_all[qi : qi + len(qs)], rows))
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
            # The passage's sentences: -2, -3, ... (passage keys, as -1 is).
            keys += [_key(-2 - j, v) for j, v in enumerate(vecs.sentences[n] if n < len(vecs.sentences) else [])]
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
