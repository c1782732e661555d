"""Reading Elasticsearch's answers, for the knowledge backend in ``elasticsearch.py``:
failed bulk items, hits from search responses (client-side cosine, matched question,
superseded chunks dropped), the stored state after a crash, and the mapping of client
errors to kefu errors. Pure functions, so every answer can be checked offline; the
requests themselves are built in ``elasticsearch_requests.py``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence
from urllib.parse import urlsplit, urlunsplit

import numpy as np
from elastic_transport import ApiError as TransportApiError
from elastic_transport import ConnectionError as TransportConnectionError
from elastic_transport import ConnectionTimeout, SerializationError, TransportError

from services.errors import InvalidArgument, KefuError, Unavailable
from services.knowledge.elasticsearch_requests import TOMBSTONE, decode_vector
from services.knowledge.entries import KnowledgeEntry, RetrievalHit, faq_dense


# -- bulk answers --------------------------------------------------------------
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


# -- reading results -----------------------------------------------------------
def key_similarity(keys: Sequence[Mapping[str, Any]], query_vector: np.ndarray, questions: Sequence[str]) -> tuple[float, str]:
    """(the chunk's dense score — the cosine of the query with its passage, for an FAQ
    entry blended with its best question's as the embedded index does (``faq_dense``) —
    and the best-matching question or "")."""
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
    p_rows = [i for i in range(len(ords)) if i not in q_rows]
    if q_rows:
        best = max(q_rows, key=lambda i: sims[i])
        matched = questions[ords[best]]
        if p_rows:
            return faq_dense(float(sims[best]), float(max(sims[i] for i in p_rows))), matched
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
