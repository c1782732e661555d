"""gRPC face of Knowledge."""

from __future__ import annotations

from typing import AsyncIterator

import grpc

from kefu.v1 import common_pb2, knowledge_pb2, knowledge_pb2_grpc
from services import degraded
from services.errors import grpc_errors
from services.knowledge.core import KnowledgeBase
from services.knowledge.entries import KnowledgeEntry, SearchResult

_KIND = {knowledge_pb2.DOCUMENT_KIND_FAQ: "faq", knowledge_pb2.DOCUMENT_KIND_ARTICLE: "article"}
_MODE = {knowledge_pb2.RETRIEVAL_MODE_HYBRID: "hybrid", knowledge_pb2.RETRIEVAL_MODE_BM25: "bm25", knowledge_pb2.RETRIEVAL_MODE_DENSE: "dense"}


def to_entry(doc: knowledge_pb2.KnowledgeDocument) -> KnowledgeEntry:
    kind = _KIND.get(doc.kind) or ("faq" if doc.questions else "article")
    return KnowledgeEntry(
        id=doc.id, kind=kind, title=doc.title, locale=doc.locale, tags=list(doc.tags),
        questions=list(doc.questions), answer=doc.answer, body=doc.body,
    )


def to_document(entry: KnowledgeEntry) -> knowledge_pb2.KnowledgeDocument:
    kind = {v: k for k, v in _KIND.items()}[entry.kind]
    return knowledge_pb2.KnowledgeDocument(
        id=entry.id, kind=kind, title=entry.title, locale=entry.locale, tags=entry.tags,
        questions=entry.questions, answer=entry.answer, body=entry.body,
    )


def to_proto(result: SearchResult) -> knowledge_pb2.SearchResponse:
    hits = []
    for h in result.hits:
        citation = common_pb2.Citation(
            doc_id=h.doc_id, title=h.title, chunk_id=h.chunk_id, snippet=h.text[:200], score=h.score, kb_version=result.kb_version
        )
        hits.append(
            knowledge_pb2.RetrievalHit(
                doc_id=h.doc_id, chunk_id=h.chunk_id, title=h.title, text=h.text, matched_question=h.matched_question,
                score=h.score, locale=h.locale, tags=h.tags, citation=citation,
                dense_score=h.dense_score, lexical_score=h.lexical_score, answerability=h.answerability,
            )
        )
    return knowledge_pb2.SearchResponse(
        hits=hits, answerable=result.answerable, answerability=result.answerability, kb_version=result.kb_version
    )


class KnowledgeServicer(knowledge_pb2_grpc.KnowledgeServicer):
    def __init__(self, kb: KnowledgeBase) -> None:
        self._kb = kb

    @grpc_errors
    async def Search(self, request: knowledge_pb2.SearchRequest, context: grpc.aio.ServicerContext) -> knowledge_pb2.SearchResponse:
        with degraded.tracking() as fallbacks:
            result = await self._kb.search(
                request.query, locales=list(request.locales), tags=list(request.tags), top_k=request.top_k, mode=_MODE.get(request.mode, ""),
                query_vector=list(request.query_embedding), embedder_id=request.embedder_id,
            )
        response = to_proto(result)
        response.degraded = bool(fallbacks)
        return response

    @grpc_errors
    async def Ingest(
        self, request_iterator: AsyncIterator[knowledge_pb2.IngestRequest], context: grpc.aio.ServicerContext
    ) -> knowledge_pb2.IngestResponse:
        async def documents():
            async for req in request_iterator:
                yield to_entry(req.document)

        ingested, chunks, version = await self._kb.ingest_stream(documents())
        return knowledge_pb2.IngestResponse(ingested=ingested, chunks=chunks, kb_version=version)

    @grpc_errors
    async def Delete(self, request: knowledge_pb2.DeleteRequest, context: grpc.aio.ServicerContext) -> knowledge_pb2.DeleteResponse:
        deleted, not_found, version = await self._kb.delete(list(request.ids))
        return knowledge_pb2.DeleteResponse(deleted=len(deleted), not_found=not_found, kb_version=version)
