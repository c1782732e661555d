"""The hot-question response cache: unit behaviour, and over gRPC with the real model."""

from __future__ import annotations

import grpc

from kefu.v1 import dialog_pb2, knowledge_pb2, knowledge_pb2_grpc
from services.generation.cache import CachedReply, ResponseCache, normalize_question
from tests.conftest import converse


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _key(q: str, kb: int = 1, intent: str = "shipping_info"):
    return ResponseCache.key(q, intent=intent, language="zh", kb_version=kb, passages=("shipping-fees-zh",))


def test_same_question_in_other_words_of_form_hits():
    assert normalize_question("运费怎么算？") == normalize_question("运费 怎么算?") == normalize_question("ＹＯＵ运费怎么算!!".replace("ＹＯＵ", ""))
    cache = ResponseCache(8, 60)
    cache.put(_key("运费怎么算？"), 1, CachedReply("满 99 元包邮。", "stop", 9))
    assert cache.get(_key("运费 怎么算?"), 1).text == "满 99 元包邮。"
    assert cache.get(_key("运费怎么算？", intent="refund_status"), 1) is None
    assert (cache.hits, cache.misses) == (1, 1) and cache.hit_ratio == 0.5


def test_new_knowledge_version_invalidates_and_stale_puts_are_dropped():
    cache = ResponseCache(8, 60)
    cache.put(_key("运费怎么算？", kb=1), 1, CachedReply("old", "stop", 1))
    assert cache.get(_key("发票怎么开", kb=2), 2) is None  # version 2 seen: version 1 entries go
    assert len(cache) == 0
    cache.put(_key("运费怎么算？", kb=1), 1, CachedReply("late", "stop", 1))  # computed before the change
    assert len(cache) == 0


def test_ttl_and_size_bound():
    clock = Clock()
    cache = ResponseCache(2, 10, clock=clock)
    for q in ("a", "b", "c"):
        cache.put(_key(q), 1, CachedReply(q, "stop", 1))
    assert len(cache) == 2 and cache.get(_key("a"), 1) is None  # least recently used went
    clock.now = 11
    assert cache.get(_key("c"), 1) is None  # expired


def test_repeated_question_is_served_from_the_cache_until_the_knowledge_changes(dialog, cfg, span_sink):
    _, first = converse(dialog, "运费怎么算？")
    _, second = converse(dialog, "运费怎么算?")
    assert [c.doc_id for c in first.citations] == [c.doc_id for c in second.citations] == ["shipping-fees-zh"]
    answer = [a for a in second.actions if a.type == dialog_pb2.ACTION_TYPE_ANSWER][0]
    assert answer.detail.get("cached") == "true"
    assert second.reply_text == first.reply_text

    # Any knowledge change bumps the version: the next ask goes to the model again.
    with grpc.insecure_channel(cfg.target("knowledge")) as ch:
        knowledge = knowledge_pb2_grpc.KnowledgeStub(ch)
        doc = knowledge_pb2.KnowledgeDocument(
            id="cache-test-zh", kind=knowledge_pb2.DOCUMENT_KIND_FAQ, title="缓存测试", locale="zh",
            questions=["缓存测试问题"], answer="缓存测试答案。")
        knowledge.Ingest(iter([knowledge_pb2.IngestRequest(document=doc)]), timeout=30)
        try:
            _, third = converse(dialog, "运费怎么算？")
        finally:
            knowledge.Delete(knowledge_pb2.DeleteRequest(ids=["cache-test-zh"]), timeout=30)
    answer = [a for a in third.actions if a.type == dialog_pb2.ACTION_TYPE_ANSWER][0]
    assert "cached" not in answer.detail
    assert third.citations[0].kb_version > second.citations[0].kb_version

    # The hit rate is exported as a metric.
    assert span_sink.wait_for(lambda _: (span_sink.latest("kefu-generation", "kefu.generation.cache.lookups", result="hit") or 0) >= 1)
    ratio = span_sink.latest("kefu-generation", "kefu.generation.cache.hit_ratio")
    assert ratio is not None and 0 < ratio < 1
