"""A dependency that is down gives UNAVAILABLE with a message that names it."""

from __future__ import annotations

import grpc
import pytest

from kefu.v1 import dialog_pb2, dialog_pb2_grpc, generation_pb2, generation_pb2_grpc
from tests.triton_fixtures import free_ports


def test_dialog_without_nlu_is_unavailable(lone_service):
    _, own = lone_service("dialog", nlu=free_ports(1)[0])
    with grpc.insecure_channel(own.target("dialog")) as ch:
        with pytest.raises(grpc.RpcError) as info:
            list(dialog_pb2_grpc.DialogStub(ch).Converse(dialog_pb2.TurnRequest(text="你们的退货政策是什么？"), timeout=30))
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "NLU" in info.value.details()


def test_generation_without_triton_degrades_to_the_passage(lone_service):
    """The model server is down: Generation still answers, from the passage verbatim
    (or a fixed apology without one), and says so."""
    _, own = lone_service("generation", triton_grpc=free_ports(1)[0])
    passage = generation_pb2.Passage(doc_id="returns-7day-en", title="Returns", text="Returns within 7 days.")
    with grpc.insecure_channel(own.target("generation")) as ch:
        stub = generation_pb2_grpc.GenerationStub(ch)
        for _ in range(4):  # past the breaker's threshold too
            chunks = list(stub.GenerateStream(generation_pb2.GenerateRequest(
                user_message="What is your return policy?", language="en", passages=[passage]), timeout=30))
            final = chunks[-1].final
            assert final.degraded and final.finish_reason == "degraded"
            assert "".join(c.delta for c in chunks[:-1]) == final.text == "Returns within 7 days."
        bare = stub.Generate(generation_pb2.GenerateRequest(user_message="你好", language="zh"), timeout=30)
    assert bare.degraded and "人工" in bare.text


def test_dialog_degrades_to_the_faq_answer_when_generation_is_down(lone_service):
    """Knowledge answers but the model cannot: the FAQ answer verbatim, flagged degraded."""
    _, own = lone_service("dialog", generation=free_ports(1)[0])
    with grpc.insecure_channel(own.target("dialog")) as ch:
        events = list(dialog_pb2_grpc.DialogStub(ch).Converse(dialog_pb2.TurnRequest(text="What is your return policy?"), timeout=60))
    result = events[-1].result
    assert result.degraded
    assert [c.doc_id for c in result.citations] == ["returns-7day-en"]
    assert result.reply_text.startswith(result.citations[0].snippet[:50])


def test_dialog_finds_nlu_once_it_comes_up(lone_service):
    """NLU comes up (or back) after Dialog has found it down: the first turn after
    NLU is healthy is answered, not refused while Dialog's channel is still backing
    off from the failed connections."""
    nlu_port = free_ports(1)[0]
    _, own = lone_service("dialog", nlu=nlu_port)
    with grpc.insecure_channel(own.target("dialog")) as ch:
        stub = dialog_pb2_grpc.DialogStub(ch)
        with pytest.raises(grpc.RpcError) as info:
            list(stub.Converse(dialog_pb2.TurnRequest(text="你们的退货政策是什么？"), timeout=30))
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE and "NLU" in info.value.details()
        lone_service("nlu", nlu=nlu_port)  # a real NLU on the port Dialog calls; returns once healthy
        # A question no other test asks: Generation's cache is shared by the session.
        events = list(stub.Converse(dialog_pb2.TurnRequest(text="退货有什么条件"), timeout=60))
    result = events[-1].result
    assert result.intent.name == "return_policy"
    assert [c.doc_id for c in result.citations][:1] == ["returns-7day-zh"]


def test_with_knowledge_down_kefu_says_so_and_still_hands_over(lone_service):
    """Knowledge is away: a question gets the honest "not sure, shall I get a person"
    (degraded), not an error; asking for a person still opens a ticket."""
    from tests.conftest import converse

    (dead,) = free_ports(1)
    _, own = lone_service("dialog", knowledge=dead)
    with grpc.insecure_channel(own.target("dialog")) as ch:
        stub = dialog_pb2_grpc.DialogStub(ch)
        _, asked = converse(stub, "What is your return policy?")
        assert asked.degraded and [a.type for a in asked.actions] == [dialog_pb2.ACTION_TYPE_ABSTAIN]
        assert asked.actions[0].detail["knowledge"] == "unavailable" and asked.reply_text
        _, handed = converse(stub, "I want to talk to a person", session_id=asked.session_id)
        assert handed.handoff == dialog_pb2.HANDOFF_STATE_REQUESTED


def test_a_locked_session_database_is_unavailable_and_loses_nothing(lone_service):
    """Another process holds the sessions database past the busy timeout: the turn is
    UNAVAILABLE with a message that says to retry, nothing is half-written, and the next
    turn after the lock is released goes through."""
    import sqlite3
    from pathlib import Path

    from services.dialog.sessions import SessionStore
    from tests.conftest import converse

    _, own = lone_service("dialog")
    with grpc.insecure_channel(own.target("dialog")) as ch:
        stub = dialog_pb2_grpc.DialogStub(ch)
        _, first = converse(stub, "你好")
        blocker = sqlite3.connect(Path(own.sessions_path), timeout=1, isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")  # held past Dialog's busy timeout
        try:
            with pytest.raises(grpc.RpcError) as err:
                list(stub.Converse(dialog_pb2.TurnRequest(text="在吗", session_id=first.session_id), timeout=120))
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE and "busy" in err.value.details()
        assert [t.index for t in SessionStore(Path(own.sessions_path)).get(first.session_id).turns] == [1]
        _, again = converse(stub, "在吗", session_id=first.session_id)
        assert again.turn_index == 2
