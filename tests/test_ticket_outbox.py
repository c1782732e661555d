"""A customer asks for a person while the workflow engine is away: the request is not lost.
The turn answers with the ticket number and says so; the ticket is queued beside the
sessions and opened, under the same number, once Temporal is reachable — here by the next
Dialog process on the same home, as after a restart."""

from __future__ import annotations

import time

import grpc

from kefu.v1 import dialog_pb2, dialog_pb2_grpc
from services.demo.store import DemoStore
from tests.conftest import converse
from tests.triton_fixtures import free_ports


def test_a_handoff_while_temporal_is_away_is_queued_and_opened_later(cfg, lone_service, tmp_path, span_sink):
    home = str(tmp_path / "dialog-home")
    (dead,) = free_ports(1)

    def temporal_away(c) -> None:
        c.home = home
        c.temporal.address = f"127.0.0.1:{dead}"

    _, away = lone_service("dialog", configure=temporal_away)
    with grpc.insecure_channel(away.target("dialog")) as ch:
        chunks, result = converse(dialog_pb2_grpc.DialogStub(ch), "我要投诉，转人工")
    created = next(a for a in result.actions if a.type == dialog_pb2.ACTION_TYPE_CREATE_TICKET)
    assert created.detail["queued"] == "true" and created.ticket_id in result.reply_text
    assert "系统正在恢复" in result.reply_text and result.handoff == dialog_pb2.HANDOFF_STATE_REQUESTED
    assert DemoStore(cfg.store_path).get_ticket(created.ticket_id) is None  # not opened yet
    # An SRE sees it: the Dialog counts the ticket workflow it could not start.
    assert span_sink.wait_for(
        lambda spans: (span_sink.latest("kefu-dialog", "kefu.workflow.failures", workflow="TicketWorkflow") or 0) >= 1, timeout=20
    )

    def temporal_back(c) -> None:
        c.home = home  # the same sessions, and so the same queue

    lone_service("dialog", configure=temporal_back)
    deadline = time.monotonic() + 60
    ticket = None
    while ticket is None and time.monotonic() < deadline:
        ticket = DemoStore(cfg.store_path).get_ticket(created.ticket_id)
        time.sleep(0.5)
    assert ticket is not None, "the queued ticket was opened once Temporal was reachable"
    assert ticket.session_id == result.session_id and ticket.category == "complaint"
