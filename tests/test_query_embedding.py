"""One embedding per turn (issue 25): NLU returns the e5 query embedding of the masked
message with its embedder's id, Knowledge searches with it instead of embedding the
question again, and a Dialog turn answered from the knowledge runs Triton's embedder once.
Real services on the session's Triton; the embedder calls are counted by Triton itself."""

from __future__ import annotations

import json
import time
import urllib.request

import grpc
import numpy as np
import pytest

from kefu.v1 import dialog_pb2, dialog_pb2_grpc, knowledge_pb2, knowledge_pb2_grpc, nlu_pb2, nlu_pb2_grpc
from services.config import KefuConfig
from services.serving.embedder_weights import model_id
from tests.conftest import converse


@pytest.fixture()
def nlu(cfg):
    with grpc.insecure_channel(cfg.target("nlu")) as ch:
        yield nlu_pb2_grpc.NLUStub(ch)


@pytest.fixture()
def knowledge(cfg):
    with grpc.insecure_channel(cfg.target("knowledge")) as ch:
        yield knowledge_pb2_grpc.KnowledgeStub(ch)


def _analyze(nlu, text: str) -> nlu_pb2.AnalyzeResponse:
    return nlu.Analyze(nlu_pb2.AnalyzeRequest(text=text), timeout=60)


def _search(knowledge, query: str, locale: str, **vector) -> knowledge_pb2.SearchResponse:
    return knowledge.Search(knowledge_pb2.SearchRequest(query=query, locales=[locale], top_k=5, **vector), timeout=60)


def _same_hits(a: knowledge_pb2.SearchResponse, b: knowledge_pb2.SearchResponse) -> None:
    assert [h.doc_id for h in a.hits] == [h.doc_id for h in b.hits]
    assert [h.matched_question for h in a.hits] == [h.matched_question for h in b.hits]
    # Triton may batch the two embeddings with other requests: equal to float precision.
    np.testing.assert_allclose([h.dense_score for h in a.hits], [h.dense_score for h in b.hits], atol=1e-4)
    assert a.answerable == b.answerable and a.answerability == pytest.approx(b.answerability, abs=1e-4)


def _embedder_inferences(triton_server) -> int:
    """How many texts Triton's embedder model has embedded since it started (its statistics)."""
    cfg, server = triton_server
    with urllib.request.urlopen(f"{server.http_url}/v2/models/{cfg.models.embedder_model}/stats", timeout=10) as resp:
        stats = json.load(resp)
    return sum(int(m.get("inference_count", 0)) for m in stats.get("model_stats", []))


def _settled_inferences(triton_server) -> int:
    """:func:`_embedder_inferences` once the count has settled (Triton records a batch's
    statistics just after its responses: a count read right after a call may miss it)."""
    last, still, deadline = _embedder_inferences(triton_server), 0, time.monotonic() + 15
    while still < 4 and time.monotonic() < deadline:
        time.sleep(0.25)
        now = _embedder_inferences(triton_server)
        still, last = (still + 1, last) if now == last else (0, now)
    return last


def _embedded_since(triton_server, before: int) -> int:
    """Texts embedded since ``before`` (a settled count), once the count has settled."""
    return _settled_inferences(triton_server) - before


@pytest.mark.parametrize("text", ["退货运费谁出？我的手机号是13812345678", "What is your return policy?"])
def test_nlu_returns_the_embedding_of_the_masked_text_and_its_embedder(cfg, nlu, knowledge, text):
    u = _analyze(nlu, text)
    vector = np.asarray(u.query_embedding, dtype=np.float32)
    assert vector.shape == (384,) and np.isfinite(vector).all()
    assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-3)
    assert u.embedder_id == model_id(cfg.models.embedder_weights)
    assert "13812345678" not in u.masked_text
    # It is the embedding of masked_text: Knowledge searching that text finds the same.
    _same_hits(_search(knowledge, u.masked_text, u.language), _search(
        knowledge, u.masked_text, u.language, query_embedding=u.query_embedding, embedder_id=u.embedder_id))


def test_knowledge_with_nlus_vector_returns_the_same_hits_without_embedding_again(nlu, knowledge, triton_server):
    u = _analyze(nlu, "买东西要付多少运费")
    before = _settled_inferences(triton_server)
    reused = _search(knowledge, u.masked_text, "zh", query_embedding=u.query_embedding, embedder_id=u.embedder_id)
    assert _embedded_since(triton_server, before) == 0
    before = _settled_inferences(triton_server)
    embedded = _search(knowledge, u.masked_text, "zh")
    assert _embedded_since(triton_server, before) == 1  # the counter sees Knowledge's own embedding
    assert reused.hits[0].doc_id == "shipping-fees-zh"
    _same_hits(reused, embedded)
    assert not reused.degraded and not embedded.degraded


def test_a_malformed_vector_from_knowledges_embedder_is_invalid_argument(nlu, knowledge):
    u = _analyze(nlu, "How much is shipping?")
    for bad, words in ((list(u.query_embedding)[:100], "100 values"), (list(u.query_embedding) + [0.0], "385 values"),
                       ([float("nan")] + list(u.query_embedding)[1:], "not finite"),
                       ([float("inf")] + list(u.query_embedding)[1:], "not finite")):
        with pytest.raises(grpc.RpcError) as err:
            _search(knowledge, u.masked_text, "en", query_embedding=bad, embedder_id=u.embedder_id)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, bad[:3]
        assert words in err.value.details() and "Traceback" not in err.value.details()


def test_a_vector_from_another_embedder_is_ignored_and_the_query_embedded_again(nlu, knowledge, triton_server):
    u = _analyze(nlu, "退货政策是怎样的")
    misleading = _analyze(nlu, "买东西要付多少运费").query_embedding  # a vector for another question
    without = _search(knowledge, u.masked_text, "zh")
    for other in ("multilingual-e5-large", ""):
        before = _settled_inferences(triton_server)
        found = _search(knowledge, u.masked_text, "zh", query_embedding=misleading, embedder_id=other)
        assert _embedded_since(triton_server, before) == 1
        assert found.hits[0].doc_id == "returns-7day-zh"
        _same_hits(found, without)
    # Another embedder's vectors may have another length: not an error, ignored too.
    found = _search(knowledge, u.masked_text, "zh", query_embedding=[0.1] * 768, embedder_id="multilingual-e5-base")
    _same_hits(found, without)


def test_a_turn_answered_from_the_knowledge_embeds_the_message_once(lone_service, triton_server):
    """NLU embeds the masked message for its intents; Knowledge searches with that vector
    instead of embedding the message a second time (Triton's statistics count the texts)."""

    def verbatim(own: KefuConfig) -> None:
        own.dialog.answer_style = "verbatim"  # no language model: only the turn's embeddings count

    _, own = lone_service("dialog", configure=verbatim)
    with grpc.insecure_channel(own.target("dialog")) as channel:
        stub = dialog_pb2_grpc.DialogStub(channel)
        for question in ("运费怎么算？", "How long does shipping take?"):
            before = _settled_inferences(triton_server)
            _, result = converse(stub, question)
            assert [a.type for a in result.actions] == [dialog_pb2.ACTION_TYPE_ANSWER], result.reply_text
            assert result.citations and result.citations[0].doc_id.startswith("shipping")
            assert not result.degraded
            assert _embedded_since(triton_server, before) == 1, question
