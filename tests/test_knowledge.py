"""Knowledge over gRPC with the real embedder: ingest, search, delete, versions."""

from __future__ import annotations

import grpc
import pytest

from kefu.v1 import knowledge_pb2, knowledge_pb2_grpc


@pytest.fixture()
def knowledge(cfg):
    with grpc.insecure_channel(cfg.target("knowledge")) as ch:
        yield knowledge_pb2_grpc.KnowledgeStub(ch)


def _faq(doc_id: str, locale: str, questions: list[str], answer: str) -> knowledge_pb2.IngestRequest:
    return knowledge_pb2.IngestRequest(document=knowledge_pb2.KnowledgeDocument(
        id=doc_id, kind=knowledge_pb2.DOCUMENT_KIND_FAQ, title=doc_id, locale=locale, tags=["test"],
        questions=questions, answer=answer))


@pytest.mark.parametrize(
    "query, locale, expected",
    [("退货政策是怎样的", "zh", "returns-7day-zh"), ("how much is shipping", "en", "shipping-fees-en"), ("买东西要付多少运费", "zh", "shipping-fees-zh")],
)
def test_questions_hit_the_right_faq(knowledge, query, locale, expected):
    result = knowledge.Search(knowledge_pb2.SearchRequest(query=query, locales=[locale], top_k=3), timeout=30)
    assert result.hits[0].doc_id == expected, [h.doc_id for h in result.hits]
    assert all(h.locale == locale for h in result.hits)
    assert result.hits[0].citation.doc_id == expected
    assert result.hits[0].citation.kb_version == result.kb_version


def test_ingest_search_delete_round_trip(knowledge):
    before = knowledge.Search(knowledge_pb2.SearchRequest(query="x"), timeout=30).kb_version
    reply = knowledge.Ingest(iter([
        _faq("pets-policy-en", "en", ["Can I bring my dog to the pickup point?"], "Dogs on a leash are welcome at all pickup points."),
        _faq("pets-policy-zh", "zh", ["可以带狗去自提点吗？"], "自提点欢迎牵绳的狗狗。"),
    ]), timeout=60)
    assert reply.ingested == 2 and reply.kb_version == before + 1
    hit = knowledge.Search(knowledge_pb2.SearchRequest(query="may I bring my dog to pick up my parcel", tags=["test"]), timeout=30).hits[0]
    assert hit.doc_id == "pets-policy-en"
    assert hit.text.startswith("Dogs on a leash")

    gone = knowledge.Delete(knowledge_pb2.DeleteRequest(ids=["pets-policy-en", "pets-policy-zh", "never-was"]), timeout=30)
    assert gone.deleted == 2 and list(gone.not_found) == ["never-was"] and gone.kb_version == reply.kb_version + 1
    after = knowledge.Search(knowledge_pb2.SearchRequest(query="may I bring my dog", tags=["test"]), timeout=30)
    assert [h.doc_id for h in after.hits] == []
