"""Bad input gets a clear status code and message from every service; nothing leaks a stack trace."""

from __future__ import annotations

import grpc
import pytest

from kefu.v1 import (
    dialog_pb2,
    dialog_pb2_grpc,
    generation_pb2,
    generation_pb2_grpc,
    knowledge_pb2,
    knowledge_pb2_grpc,
    nlu_pb2,
    nlu_pb2_grpc,
)


def _status(call) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        result = call()
        if hasattr(result, "__iter__") and not hasattr(result, "DESCRIPTOR"):
            list(result)
    err = info.value
    assert "Traceback" not in (err.details() or "")
    return err


@pytest.fixture()
def stubs(cfg):
    channels = [grpc.insecure_channel(cfg.target(n)) for n in ("dialog", "nlu", "knowledge", "generation")]
    yield (
        dialog_pb2_grpc.DialogStub(channels[0]),
        nlu_pb2_grpc.NLUStub(channels[1]),
        knowledge_pb2_grpc.KnowledgeStub(channels[2]),
        generation_pb2_grpc.GenerationStub(channels[3]),
    )
    for ch in channels:
        ch.close()


def test_dialog_rejects_empty_and_oversized_text(stubs, cfg):
    dialog = stubs[0]
    err = _status(lambda: dialog.Converse(dialog_pb2.TurnRequest(text="   "), timeout=10))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "empty" in err.details()
    too_long = "退" * (cfg.dialog.max_message_chars + 1)
    err = _status(lambda: dialog.Converse(dialog_pb2.TurnRequest(text=too_long), timeout=10))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "too long" in err.details()


def test_dialog_unknown_session_is_not_found(stubs):
    dialog = stubs[0]
    err = _status(lambda: dialog.Converse(dialog_pb2.TurnRequest(text="你好", session_id="no-such-session"), timeout=10))
    assert err.code() == grpc.StatusCode.NOT_FOUND and "no-such-session" in err.details()
    err = _status(lambda: dialog.GetSession(dialog_pb2.GetSessionRequest(session_id="no-such-session"), timeout=10))
    assert err.code() == grpc.StatusCode.NOT_FOUND


def test_nlu_rejects_bad_text(stubs, cfg):
    nlu = stubs[1]
    assert _status(lambda: nlu.Analyze(nlu_pb2.AnalyzeRequest(text=""), timeout=10)).code() == grpc.StatusCode.INVALID_ARGUMENT
    long = nlu_pb2.AnalyzeRequest(text="a" * (cfg.dialog.max_message_chars + 1))
    assert _status(lambda: nlu.Analyze(long, timeout=10)).code() == grpc.StatusCode.INVALID_ARGUMENT


def test_knowledge_rejects_bad_queries_and_documents(stubs):
    knowledge = stubs[2]
    err = _status(lambda: knowledge.Search(knowledge_pb2.SearchRequest(query=" "), timeout=10))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    err = _status(lambda: knowledge.Search(knowledge_pb2.SearchRequest(query="退货", locales=["fr"]), timeout=10))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "fr" in err.details()
    before = knowledge.Search(knowledge_pb2.SearchRequest(query="退货"), timeout=10).kb_version
    docs = [
        knowledge_pb2.IngestRequest(document=knowledge_pb2.KnowledgeDocument(
            id="ok-doc-zh", kind=knowledge_pb2.DOCUMENT_KIND_FAQ, title="t", locale="zh", questions=["q"], answer="a")),
        knowledge_pb2.IngestRequest(document=knowledge_pb2.KnowledgeDocument(
            id="bad-doc", kind=knowledge_pb2.DOCUMENT_KIND_FAQ, title="t", locale="zh", questions=["q"], answer="")),
    ]
    err = _status(lambda: knowledge.Ingest(iter(docs), timeout=30))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "bad-doc" in err.details()
    # Nothing was ingested half-way: the version did not move, the good document is absent.
    after = knowledge.Search(knowledge_pb2.SearchRequest(query="退货"), timeout=10).kb_version
    assert after == before
    gone = knowledge.Delete(knowledge_pb2.DeleteRequest(ids=["ok-doc-zh"]), timeout=10)
    assert list(gone.not_found) == ["ok-doc-zh"] and gone.deleted == 0


def test_generation_rejects_bad_requests(stubs):
    generation = stubs[3]
    err = _status(lambda: generation.Generate(generation_pb2.GenerateRequest(user_message=""), timeout=10))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    hot = generation_pb2.GenerateRequest(user_message="hi", params=generation_pb2.SamplingParams(temperature=5))
    err = _status(lambda: generation.GenerateStream(hot, timeout=10))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "temperature" in err.details()
