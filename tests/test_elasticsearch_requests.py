"""The Elasticsearch knowledge backend's pure functions, offline: the request bodies
(mapping, analyzers, chunk documents and bulk lines, the three search modes, client-side
RRF) and reading the answers back (hits, the crash-recovery bookkeeping, failed bulk items,
the error mapping). ``test_elasticsearch_backend.py`` checks that the real client sends
exactly these bodies.
"""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
from elastic_transport import ConnectionError, ConnectionTimeout
from elasticsearch import AuthenticationException, BadRequestError, UnsupportedProductError

from services.errors import InvalidArgument, Unavailable
from services.knowledge import elasticsearch_requests as es
from services.knowledge import elasticsearch_responses as esr
from services.knowledge.entries import KnowledgeEntry, faq_dense
from tests.elasticsearch_fixtures import (
    DIMS, FakeEmbedder, api_meta, asdict_entry, es_error, returns_zh, shipping_en, warranty_article,
)


# -- pure functions: layout -------------------------------------------------------
def test_settings_define_a_chinese_analyzer_without_plugins_and_english():
    settings = es.index_settings()
    assert settings["number_of_shards"] == 1
    zh = settings["analysis"]["analyzer"]["kefu_zh"]
    assert zh["tokenizer"] == "standard" and "cjk_bigram" in zh["filter"] and "cjk_width" in zh["filter"]
    assert settings["analysis"]["analyzer"]["kefu_en"] == {"type": "english"}


def test_mapping_language_fields_vectors_and_stored_entry():
    props = es.index_mappings()["properties"]
    for name in ("doc_id", "chunk_id", "kind", "locale", "tags"):
        assert props[name] == {"type": "keyword"}
    assert props["version"] == {"type": "long"}
    for name in ("title", "text", "questions"):
        assert props[f"{name}_zh"] == {"type": "text", "analyzer": "kefu_zh"}
        assert props[f"{name}_en"] == {"type": "text", "analyzer": "kefu_en"}
    keys = props["keys"]
    assert keys["type"] == "nested"
    vector = keys["properties"]["vector"]
    assert (vector["type"], vector["dims"], vector["similarity"], vector["index"]) == ("dense_vector", 384, "cosine", True)
    assert vector["index_options"]["type"] == "hnsw"  # float vectors: kNN scores are exact cosines
    assert keys["properties"]["vector_b64"] == {"type": "binary"}
    assert props["entry"] == {"type": "object", "enabled": False}
    assert es.index_mappings()["dynamic"] == "strict"
    assert es.index_mappings(zh_analyzer="smartcn")["properties"]["text_zh"]["analyzer"] == "smartcn"
    assert es.meta_mappings()["properties"]["kb_version"] == {"type": "long"}


def test_document_ids_are_stable_and_versioned():
    a = es.chunk_doc_id("shipping-fees-en", "0", 3)
    assert a == es.chunk_doc_id("shipping-fees-en", "0", 3)
    assert a != es.chunk_doc_id("shipping-fees-en", "0", 4) != es.chunk_doc_id("shipping-fees-en", "1", 3)
    assert a.startswith(es.doc_key("shipping-fees-en")) and a.endswith("-v3-0")
    assert len(es.chunk_doc_id("x" * 512, "12", 10**9).encode()) < 100  # _id is limited to 512 bytes
    assert es.tombstone_doc_id("a", 2) not in {es.chunk_doc_id("a", c, 2) for c in ("0", "1")}


async def test_faq_becomes_one_chunk_with_answer_passage_and_question_vectors():
    emb = FakeEmbedder()
    entry = shipping_en()
    progress: list[tuple[int, int]] = []
    vectors = await es.embed_entries(emb, [entry], lambda d, t: progress.append((d, t)))
    assert progress[-1] == (3, 3)  # one passage, two non-blank questions
    assert emb.calls == [("passage: ", [entry.answer]), ("query: ", ["How much is shipping?", "What does delivery cost?"])]

    docs = es.chunk_documents([entry], vectors, version=7)
    assert len(docs) == 1
    _id, src = docs[0]
    assert _id == es.chunk_doc_id(entry.id, "0", 7)
    assert src["doc_id"] == entry.id and src["chunk_id"] == "0" and src["kind"] == "faq" and src["version"] == 7
    assert src["locale"] == "en" and src["tags"] == ["shipping", "fees"]
    assert src["text"] == src["text_en"] == entry.answer and src["title_en"] == entry.title
    assert src["questions"] == src["questions_en"] == ["How much is shipping?", "What does delivery cost?"]
    assert "text_zh" not in src and "questions_zh" not in src
    assert [k["ord"] for k in src["keys"]] == [-1, 0, 1]
    expected = [FakeEmbedder.vector("passage: " + entry.answer), FakeEmbedder.vector("query: How much is shipping?"),
                FakeEmbedder.vector("query: What does delivery cost?")]
    for key, want in zip(src["keys"], expected, strict=True):
        assert np.array_equal(es.decode_vector(key["vector_b64"]), want)  # exact float32 copy
        assert len(key["vector"]) == DIMS and np.allclose(key["vector"], want, atol=1e-6)
    assert KnowledgeEntry(**src["entry"]) == entry
    json.dumps(src)  # serialisable as is

    ops = es.bulk_actions("kb-chunks", docs)
    assert ops == [{"index": {"_index": "kb-chunks", "_id": _id}}, src]


async def test_article_becomes_one_document_per_chunk():
    entry = warranty_article()
    vectors = await es.embed_entries(FakeEmbedder(), [entry])
    docs = es.chunk_documents([entry], vectors, version=2)
    chunk_ids = [c for c, _ in entry.chunks()]
    assert len(chunk_ids) >= 2 and [d[1]["chunk_id"] for d in docs] == chunk_ids
    assert [d[0] for d in docs] == [es.chunk_doc_id(entry.id, c, 2) for c in chunk_ids]
    assert [d[1]["text_zh"] for d in docs] == [t for _, t in entry.chunks()]
    assert "entry" in docs[0][1] and all("entry" not in d[1] for d in docs[1:])
    for (_, src), (_, text) in zip(docs, entry.chunks(), strict=True):
        assert src["questions"] == [] and [k["ord"] for k in src["keys"]] == [-1]
        assert np.array_equal(es.decode_vector(src["keys"][0]["vector_b64"]), FakeEmbedder.vector("passage: " + text))
    with pytest.raises(ValueError):
        es.chunk_documents([entry], [es.EntryVectors(vectors[0].passages[:1], vectors[0].questions)], 2)


async def test_a_passage_of_several_sentences_is_keyed_by_each_too():
    """As in the embedded index: a passage's sentences under its headings are keys of
    their own (ord -2, -3, ...), read back as passage keys (the best one scores)."""
    entry = KnowledgeEntry(id="doc:corporate", kind="article", title="企业采购", locale="zh",
                           body="# 企业采购\n\n## 价格\n\n同一商品 10 件起享企业价。印公司标志的商品每款至少 50 件。生产需要 10 个工作日。")
    vectors = await es.embed_entries(FakeEmbedder(), [entry])
    (doc,) = es.chunk_documents([entry], vectors, version=1)
    (sentences,) = entry.sentence_keys()
    assert sentences == ["企业采购 > 价格: 同一商品 10 件起享企业价。", "企业采购 > 价格: 印公司标志的商品每款至少 50 件。", "企业采购 > 价格: 生产需要 10 个工作日。"]
    keys = doc[1]["keys"]
    assert [k["ord"] for k in keys] == [-1, -2, -3, -4]
    for key, text in zip(keys[1:], sentences, strict=True):
        assert np.array_equal(es.decode_vector(key["vector_b64"]), FakeEmbedder.vector("passage: " + text))
    query = FakeEmbedder.vector("passage: " + sentences[1])
    dense, matched = esr.key_similarity(keys, query, [])
    assert dense == pytest.approx(1.0, abs=1e-5) and matched == ""


def test_tombstones_and_delete_actions():
    docs = es.tombstone_documents(["a", "b"], 5)
    assert docs[0] == (es.tombstone_doc_id("a", 5), {"doc_id": "a", "chunk_id": "-", "kind": "tombstone", "version": 5})
    assert es.delete_actions("i", ["x", "y"]) == [{"delete": {"_index": "i", "_id": "x"}}, {"delete": {"_index": "i", "_id": "y"}}]


# -- pure functions: searches -------------------------------------------------------
QV = FakeEmbedder.vector("query: q")


def _filters_ok(filters, locales, tags, version):
    assert {"range": {"version": {"lte": version}}} in filters
    assert ({"terms": {"locale": list(locales)}} in filters) == bool(locales)
    assert ({"terms": {"tags": list(tags)}} in filters) == bool(tags)


def test_bm25_body():
    body = es.search_body("运费多少", None, "bm25", locales=["zh"], tags=["fees"], top_k=3, max_version=4)
    assert "knn" not in body and "retriever" not in body
    bool_q = body["query"]["bool"]
    mm = bool_q["must"][0]["multi_match"]
    assert mm["query"] == "运费多少" and mm["type"] == "best_fields"
    assert set(mm["fields"]) == {"questions_zh^2", "title_zh^1.5", "text_zh^1"}
    _filters_ok(bool_q["filter"], ["zh"], ["fees"], 4)
    assert body["size"] == es.fetch_size(3) > 3
    assert "keys.vector" in body["_source"]["excludes"] and "entry" in body["_source"]["excludes"]
    every = es.search_body("shipping", None, "bm25", max_version=1)["query"]["bool"]
    assert {f.split("^")[0] for f in every["must"][0]["multi_match"]["fields"]} >= {"text_zh", "text_en", "questions_en"}
    assert every["filter"] == [{"range": {"version": {"lte": 1}}}]


def test_dense_body():
    body = es.search_body("q", QV, "dense", locales=["en"], tags=["a", "b"], top_k=4, max_version=9)
    assert "query" not in body and "retriever" not in body
    knn = body["knn"]
    assert knn["field"] == "keys.vector" and knn["k"] == es.fetch_size(4) and knn["num_candidates"] >= knn["k"]
    assert np.allclose(knn["query_vector"], QV) and len(knn["query_vector"]) == DIMS
    _filters_ok(knn["filter"], ["en"], ["a", "b"], 9)
    json.dumps(body)


def test_hybrid_body_uses_the_rrf_retriever_with_filters_in_both_retrievers():
    body = es.search_body("退货", QV, "hybrid", locales=["zh"], tags=["returns"], top_k=3, max_version=2)
    assert "query" not in body and "knn" not in body
    rrf = body["retriever"]["rrf"]
    assert rrf["rank_constant"] == 60 and rrf["rank_window_size"] >= body["size"]
    standard, knn = rrf["retrievers"]
    bool_q = standard["standard"]["query"]["bool"]
    assert bool_q["must"][0]["multi_match"]["query"] == "退货"
    _filters_ok(bool_q["filter"], ["zh"], ["returns"], 2)
    knn = knn["knn"]
    assert knn["field"] == "keys.vector" and knn["k"] == rrf["rank_window_size"] and knn["num_candidates"] >= knn["k"]
    _filters_ok(knn["filter"], ["zh"], ["returns"], 2)
    json.dumps(body)
    with pytest.raises(InvalidArgument):
        es.search_body("q", QV, "fuzzy", max_version=1)


def test_client_side_rrf_matches_the_formula():
    fused = dict(es.rrf_fuse([["a", "b", "c"], ["c", "a"]], rank_constant=60))
    assert fused["a"] == pytest.approx(1 / 61 + 1 / 62)
    assert fused["c"] == pytest.approx(1 / 63 + 1 / 61)
    assert fused["b"] == pytest.approx(1 / 62)
    assert [i for i, _ in es.rrf_fuse([["a", "b", "c"], ["c", "a"]])] == ["a", "c", "b"]
    lexical, dense = es.client_fusion_bodies("q", QV, locales=["en"], top_k=3, max_version=1)
    assert "query" in lexical and "knn" in dense and lexical["size"] == dense["size"] == dense["knn"]["k"]


# -- pure functions: reading back ------------------------------------------------------
def _key(ord_: int, v: np.ndarray) -> dict:
    return {"ord": ord_, "vector_b64": es.encode_vector(v)}


def test_hits_carry_client_side_cosine_and_matched_question_and_drop_superseded_chunks():
    q1, q2, p = (FakeEmbedder.vector(t) for t in ("q1", "q2", "p"))
    query = (0.9 * q2 + 0.1 * p) / np.linalg.norm(0.9 * q2 + 0.1 * p)
    faq = {"doc_id": "f", "chunk_id": "0", "kind": "faq", "version": 3, "title": "T", "text": "answer", "questions": ["one", "two"],
           "locale": "en", "tags": ["x"], "keys": [_key(-1, p), _key(0, q1), _key(1, q2)]}
    old = dict(faq, version=2)
    article = {"doc_id": "a", "chunk_id": "1", "kind": "article", "version": 1, "title": "A", "text": "chunk", "questions": [],
               "locale": "zh", "tags": [], "keys": [{"ord": -1, "vector": p.tolist()}]}
    uncommitted = dict(article, doc_id="new", version=4)
    raw = [(old, 9.0, 1.0), (faq, 8.0, 2.0), (uncommitted, 7.5, 0.0), (article, 7.0, 0.5)]
    hits = esr.build_hits(raw, query, {"f": 3, "a": 1}, top_k=5)
    assert [(h.doc_id, h.chunk_id) for h in hits] == [("f", "0"), ("a", "1")]
    assert hits[0].matched_question == "two"
    # An FAQ entry: its best question's cosine blended with its answer's (as the embedded index does).
    assert hits[0].dense_score == pytest.approx(faq_dense(float(max(q1 @ query, q2 @ query)), float(p @ query)), abs=1e-5)
    assert (hits[0].score, hits[0].lexical_score, hits[0].title, hits[0].tags) == (8.0, 2.0, "T", ["x"])
    assert hits[1].matched_question == "" and hits[1].dense_score == pytest.approx(float(p @ query), abs=1e-5)
    assert esr.build_hits(raw, None, {"f": 3, "a": 1}, top_k=1)[0].dense_score == 0.0  # bm25: no vector compared


def test_resolve_state_recovers_from_interrupted_writes():
    a1, a2 = asdict_entry(shipping_en()), asdict_entry(shipping_en(), answer="new answer")
    rows = [
        {"doc_id": "shipping-fees-en", "chunk_id": "0", "kind": "faq", "version": 1, "entry": a1},
        {"doc_id": "shipping-fees-en", "chunk_id": "0", "kind": "faq", "version": 2, "entry": a2},  # replaced, cleanup missed v1
        {"doc_id": "b", "chunk_id": "0", "kind": "faq", "version": 1, "entry": asdict_entry(returns_zh(), id="b")},
        {"doc_id": "b", "chunk_id": "-", "kind": "tombstone", "version": 3},  # deleted at 3
        {"doc_id": "c", "chunk_id": "0", "kind": "faq", "version": 4, "entry": asdict_entry(returns_zh(), id="c")},  # never committed
        {"doc_id": "w", "chunk_id": "0", "kind": "article", "version": 3, "entry": asdict_entry(warranty_article(), id="w")},
        {"doc_id": "w", "chunk_id": "1", "kind": "article", "version": 3},
    ]
    state = esr.resolve_state(rows, committed=3)
    assert set(state.entries) == {"shipping-fees-en", "w"}
    assert state.entries["shipping-fees-en"].answer == "new answer"
    assert state.doc_versions == {"shipping-fees-en": 2, "w": 3}
    assert state.uncommitted and state.stale == {2: ["shipping-fees-en"]} and state.tombstones == {3: ["b"]}
    assert esr.resolve_state(rows, committed=4).entries["c"].id == "c"


# -- pure functions: errors --------------------------------------------------------------
def test_error_mapping():
    url = "https://elastic:secret@es.example:9200"
    down = esr.map_error(ConnectionError("Connection error", errors=(OSError("Connect call failed"),)), url)
    assert isinstance(down, Unavailable) and str(down).startswith("elasticsearch at https://es.example:9200 unreachable")
    assert "secret" not in str(down)
    slow = esr.map_error(ConnectionTimeout("timed out"), url)
    assert isinstance(slow, Unavailable) and "unreachable" in str(slow)
    bad = esr.map_error(BadRequestError("parsing_exception", api_meta(400), es_error(400, "parsing_exception", "unknown query [mach]")), url)
    assert isinstance(bad, InvalidArgument) and "unknown query [mach]" in str(bad)
    auth = esr.map_error(AuthenticationException("security_exception", api_meta(401), es_error(401, "security_exception", "bad key")), url)
    assert isinstance(auth, Unavailable) and "API key" in str(auth)
    busy = esr.map_error(BadRequestError("x", api_meta(503), es_error(503, "unavailable_shards_exception", "no shard")), url)
    assert isinstance(busy, Unavailable) and "503" in str(busy)
    other = esr.map_error(UnsupportedProductError("not es", api_meta(200), {}), url)
    assert isinstance(other, Unavailable) and "not answer as Elasticsearch" in str(other)
    for err in (down, slow, bad, auth, busy, other):
        assert "Traceback" not in str(err)
    lic = BadRequestError("security_exception", api_meta(403), es_error(403, "security_exception",
                          "current license is non-compliant for [Reciprocal Rank Fusion (RRF)]"))
    assert esr.rrf_unsupported(lic) and not esr.rrf_unsupported(bad)


def test_bulk_item_errors_name_the_document():
    docs = [("id1", {"doc_id": "d1", "chunk_id": "0"}), ("id2", {"doc_id": "d2", "chunk_id": "0"})]
    resp = {"errors": True, "items": [
        {"index": {"_id": "id1", "status": 201}},
        {"index": {"_id": "id2", "status": 400, "error": {"type": "mapper_parsing_exception", "reason": "failed to parse [keys.vector]"}}},
    ]}
    errors = esr.bulk_item_errors(resp)
    assert errors == [("id2", 400, "mapper_parsing_exception", "failed to parse [keys.vector]")]
    err = esr.bulk_error(errors, docs)
    assert isinstance(err, InvalidArgument) and "'d2'" in str(err) and "1 of 2" in str(err)
    assert isinstance(esr.bulk_error([("id1", 429, "es_rejected_execution_exception", "queue full")], docs), Unavailable)


def test_base64_copy_is_little_endian_float32():
    v = np.arange(4, dtype=np.float32)
    assert base64.b64decode(es.encode_vector(v)) == v.astype("<f4").tobytes()
