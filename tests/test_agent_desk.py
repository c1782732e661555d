"""The human agent's desk on the real stack (Triton, Temporal dev server, worker, the four
services): a handed-over conversation is queued with its context packet (PII-masked),
claimed, the customer's messages go to the agent and the agent's replies to the customer,
then handed back to kefu or resolved; every step on the ticket's timeline. Also the
``kefu agent`` commands as a subprocess, and the errors agents get."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import grpc
import pytest
from google.protobuf.json_format import MessageToJson
from temporalio.client import Client

from kefu.v1 import agent_pb2, agent_pb2_grpc, dialog_pb2
from services.agent.context import context_packet, order_ids_in
from services.demo.store import DemoStore, NewTicket
from services.dialog.flows.state import FlowState
from services.dialog.replies import reply
from services.dialog.sessions import SessionRecord, SessionStore, TurnRecord
from tests.conftest import converse
from tests.triton_fixtures import free_ports
from workflows.tickets.types import TicketState, workflow_id_for

ROOT = Path(__file__).resolve().parent.parent
PHONE = "13812345678"


# -- the context packet, without the stack --------------------------------------------------


def test_the_context_packet_keeps_what_the_agent_needs_and_no_personal_data():
    session = SessionRecord("s1", "", "web", "2026-11-21T10:00:00+00:00", "bot", turns=[
        TurnRecord(1, "我的订单 KF2026090300101 到哪了？手机 [PHONE_1]", "请提供账户绑定的手机号或邮箱。", "order_status", [], [],
                   "2026-11-21T10:00:00+00:00", dissatisfaction=0.2),
        TurnRecord(2, "还没到，太慢了", "抱歉……", "complaint", [], [], "2026-11-21T10:01:00+00:00", dissatisfaction=0.7),
    ])
    state = FlowState(customer_id="C0007", flow="change_address", requested_slot="confirmation", order_id="KF2026090300102",
                      address={"line": "上海市浦东新区世纪大道88号"}, reason="送错了，联系 13900001111")
    packet = context_packet(session, text="转人工", dissatisfaction=0.9, intent="human_agent", intent_confidence=0.93,
                            state=state, reason="dissatisfied", order_ids=["#W1234567"], keep_turns=2)
    assert packet.order_ids == ["#W1234567", "KF2026090300102", "KF2026090300101"]
    assert packet.dissatisfaction == [0.2, 0.7, 0.9]
    assert [t.index for t in packet.last_turns] == [2, 3] and packet.last_turns[-1].customer_text == "转人工"
    assert (packet.flow, packet.requested_slot, packet.store_customer_id) == ("change_address", "confirmation", "C0007")
    assert packet.slots["address"] == "[ADDRESS]" and "13900001111" not in packet.slots["reason"]
    assert "dissatisfied" in packet.summary and "KF2026090300101" in packet.summary and "change_address" in packet.summary
    assert "世纪大道" not in repr(packet) and "13900001111" not in repr(packet)
    assert order_ids_in(["kf2026090300101 and #W7654321, again KF2026090300101"]) == ["KF2026090300101", "#W7654321"]


# -- on the stack ---------------------------------------------------------------------------


@pytest.fixture()
def agents(cfg) -> Iterator[agent_pb2_grpc.AgentDeskStub]:
    with grpc.insecure_channel(cfg.target("dialog")) as channel:
        yield agent_pb2_grpc.AgentDeskStub(channel)


def _ticket_of(result: dialog_pb2.TurnResult) -> str:
    return next(a.ticket_id for a in result.actions if a.type == dialog_pb2.ACTION_TYPE_CREATE_TICKET)


def _queued(agents, ticket_id: str, *, include_claimed: bool = False) -> agent_pb2.QueuedTicket | None:
    tickets = agents.ListQueue(agent_pb2.ListQueueRequest(include_claimed=include_claimed), timeout=30).tickets
    return next((t for t in tickets if t.ticket_id == ticket_id), None)


def _ticket_state(cfg, ticket_id: str, ready, timeout: float = 30.0) -> TicketState:
    async def poll() -> TicketState:
        client = await Client.connect(cfg.temporal_address, namespace=cfg.temporal.namespace)
        handle = client.get_workflow_handle(workflow_id_for(ticket_id))
        deadline = time.monotonic() + timeout
        while True:
            state = await handle.query("state", result_type=TicketState)
            if ready(state) or time.monotonic() > deadline:
                return state
            await asyncio.sleep(0.2)

    return asyncio.run(poll())


def _turn_with_authors(dialog, text: str, session_id: str) -> tuple[list[tuple[str, str]], dialog_pb2.TurnResult]:
    """One turn: the (author, delta) chunks and the result."""
    chunks, results = [], []
    for event in dialog.Converse(dialog_pb2.TurnRequest(text=text, session_id=session_id, channel="test"), timeout=240):
        if event.HasField("chunk"):
            chunks.append((event.chunk.author, event.chunk.delta))
        else:
            results.append(event.result)
    assert len(results) == 1
    return chunks, results[0]


def test_an_agent_claims_a_handed_over_conversation_replies_and_hands_it_back(dialog, agents, cfg):
    _, first = converse(dialog, f"Where is my order KF2026090300101? My phone is {PHONE}")
    _, handoff = converse(dialog, "I want to talk to a person", session_id=first.session_id)
    session_id, ticket_id = handoff.session_id, _ticket_of(handoff)
    assert handoff.handoff == dialog_pb2.HANDOFF_STATE_REQUESTED

    # Queued with its context packet, PII-masked.
    queued = _queued(agents, ticket_id)
    assert queued is not None and queued.session_id == session_id and queued.held_by == ""
    packet = queued.context
    assert packet.reason == "asked" and packet.intent == handoff.intent.name
    assert "KF2026090300101" in packet.order_ids
    assert [t.index for t in packet.last_turns] == [1, 2] and "talk to a person" in packet.last_turns[-1].customer_text
    assert len(packet.dissatisfaction) == 2 and packet.summary
    assert PHONE not in MessageToJson(queued) and "[PHONE_1]" in packet.last_turns[0].customer_text

    claimed = agents.Claim(agent_pb2.ClaimRequest(agent_id="agent-li", ticket_id=ticket_id), timeout=30).ticket
    assert claimed.held_by == "agent-li" and claimed.context == packet
    assert _queued(agents, ticket_id) is None  # no longer waiting
    assert _queued(agents, ticket_id, include_claimed=True).held_by == "agent-li"

    # While held, the customer's message goes to the agent; kefu does not answer it.
    watch = agents.WatchSession(agent_pb2.WatchSessionRequest(ticket_id=ticket_id, after_turn=2), timeout=120)
    _, held = converse(dialog, "Are you there? The kettle I got leaks", session_id=session_id)
    assert held.handoff == dialog_pb2.HANDOFF_STATE_AGENT
    assert [a.type for a in held.actions] == [dialog_pb2.ACTION_TYPE_AGENT] and not held.citations
    assert held.reply_text == reply("agent_holding", "en") and held.language == "en"
    seen = next(watch)
    assert (seen.session_id, seen.turn_index) == (session_id, 3) and "kettle" in seen.text
    watch.cancel()
    state = _ticket_state(cfg, ticket_id, lambda s: "customer_reply" in [e.kind for e in s.timeline])
    assert [e.kind for e in state.timeline][:2] == ["opened", "assigned"] and state.assignee == "agent-li"
    assert any(e.kind == "customer_reply" and "kettle" in e.text for e in state.timeline)

    # The agent's reply reaches the customer: in the session, on WatchReplies, in the next turn.
    text = "Sorry about that! I'm sending you a replacement kettle today."
    sent = agents.Reply(agent_pb2.AgentReplyRequest(agent_id="agent-li", ticket_id=ticket_id, text=text, request_id="r1"), timeout=30)
    again = agents.Reply(agent_pb2.AgentReplyRequest(agent_id="agent-li", ticket_id=ticket_id, text=text, request_id="r1"), timeout=30)
    assert again.message_id == sent.message_id and sent.session_id == session_id
    stored = dialog.GetSession(dialog_pb2.GetSessionRequest(session_id=session_id), timeout=30)
    assert [(m.id, m.author, m.text) for m in stored.messages] == [(sent.message_id, "agent:agent-li", text)]
    assert stored.held_by == "agent-li" and stored.handoff == dialog_pb2.HANDOFF_STATE_AGENT
    replies = dialog.WatchReplies(dialog_pb2.WatchRepliesRequest(session_id=session_id), timeout=60)
    assert next(replies).text == text
    replies.cancel()
    chunks, delivered = _turn_with_authors(dialog, "ok, thank you", session_id)
    assert delivered.reply_text == text and chunks == [("agent:agent-li", text)]
    assert [m.id for m in delivered.messages] == [sent.message_id]
    _, later = converse(dialog, "when will it arrive?", session_id=session_id)
    assert later.reply_text == reply("agent_holding", "en")  # delivered once, not again
    _ticket_state(cfg, ticket_id, lambda s: "agent_reply" in [e.kind for e in s.timeline])

    # Handed back: kefu answers again, the note on the session and the ticket.
    note = "Replacement kettle shipped; kefu can take it from here."
    back = agents.HandBack(agent_pb2.HandBackRequest(agent_id="agent-li", ticket_id=ticket_id, note=note), timeout=30)
    assert back.handoff == dialog_pb2.HANDOFF_STATE_BOT
    stored = dialog.GetSession(dialog_pb2.GetSessionRequest(session_id=session_id), timeout=30)
    assert (stored.handoff, stored.held_by, stored.agent_note) == (dialog_pb2.HANDOFF_STATE_BOT, "", note)
    _, bot = converse(dialog, "hello", session_id=session_id)
    assert bot.handoff == dialog_pb2.HANDOFF_STATE_BOT and dialog_pb2.ACTION_TYPE_AGENT not in [a.type for a in bot.actions]
    assert bot.reply_text != reply("agent_holding", "en")
    state = _ticket_state(cfg, ticket_id, lambda s: "handed_back" in [e.kind for e in s.timeline])
    assert any(e.kind == "handed_back" and e.text == note and e.actor == "agent-li" for e in state.timeline)
    assert state.status != "resolved"
    assert DemoStore(cfg.store_path).get_ticket(ticket_id).note == note

    # Resolved: the ticket's status, and the timeline's last step.
    agents.Resolve(agent_pb2.ResolveRequest(agent_id="agent-li", ticket_id=ticket_id, note="replacement delivered"), timeout=30)
    state = _ticket_state(cfg, ticket_id, lambda s: s.status == "resolved")
    assert state.status == "resolved" and state.timeline[-1].kind == "resolved"
    assert DemoStore(cfg.store_path).get_ticket(ticket_id).status == "resolved"


def _code(call) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code(), info.value.details()


def test_agents_get_clear_errors(dialog, agents, cfg):
    code, details = _code(lambda: agents.Claim(agent_pb2.ClaimRequest(agent_id="agent-a", ticket_id="TK-NOPE"), timeout=30))
    assert code == grpc.StatusCode.NOT_FOUND and "TK-NOPE" in details
    code, _ = _code(lambda: next(agents.WatchSession(agent_pb2.WatchSessionRequest(ticket_id="TK-NOPE"), timeout=30)))
    assert code == grpc.StatusCode.NOT_FOUND

    _, handoff = converse(dialog, "I want to talk to a person")
    ticket_id = _ticket_of(handoff)
    code, _ = _code(lambda: agents.Claim(agent_pb2.ClaimRequest(agent_id=" ", ticket_id=ticket_id), timeout=30))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    code, details = _code(lambda: agents.Reply(agent_pb2.AgentReplyRequest(agent_id="agent-a", ticket_id=ticket_id, text="hi"), timeout=30))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "claim it first" in details
    agents.Claim(agent_pb2.ClaimRequest(agent_id="agent-a", ticket_id=ticket_id), timeout=30)
    agents.Claim(agent_pb2.ClaimRequest(agent_id="agent-a", ticket_id=ticket_id), timeout=30)  # again: fine
    code, details = _code(lambda: agents.Claim(agent_pb2.ClaimRequest(agent_id="agent-b", ticket_id=ticket_id), timeout=30))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "agent-a" in details
    code, _ = _code(lambda: agents.Reply(agent_pb2.AgentReplyRequest(agent_id="agent-b", ticket_id=ticket_id, text="hi"), timeout=30))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    code, details = _code(lambda: agents.Reply(agent_pb2.AgentReplyRequest(agent_id="agent-a", ticket_id=ticket_id, text="  "), timeout=30))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "text" in details and "Traceback" not in details
    code, _ = _code(lambda: agents.HandBack(agent_pb2.HandBackRequest(agent_id="agent-b", ticket_id=ticket_id), timeout=30))
    assert code == grpc.StatusCode.FAILED_PRECONDITION

    agents.Resolve(agent_pb2.ResolveRequest(agent_id="agent-a", ticket_id=ticket_id, note="duplicate"), timeout=30)
    _ticket_state(cfg, ticket_id, lambda s: s.status == "resolved")
    code, details = _code(lambda: agents.Claim(agent_pb2.ClaimRequest(agent_id="agent-b", ticket_id=ticket_id), timeout=30))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "resolved" in details


def _kefu_agent(cfg, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "services.cli", "agent", *args, "--target", cfg.target("dialog")],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )


def test_the_kefu_agent_commands_work_a_chinese_conversation(dialog, cfg):
    _, handoff = converse(dialog, "我要投诉，转人工")
    session_id, ticket_id = handoff.session_id, _ticket_of(handoff)

    queue = _kefu_agent(cfg, "queue")
    assert queue.returncode == 0 and ticket_id in queue.stdout and "Handed over" in queue.stdout
    claim = _kefu_agent(cfg, "claim", ticket_id, "--as", "agent-wang")
    assert claim.returncode == 0, claim.stderr
    assert "我要投诉" in claim.stdout and "you hold this conversation" in claim.stdout

    _, held = converse(dialog, "还在吗？", session_id=session_id)
    assert held.handoff == dialog_pb2.HANDOFF_STATE_AGENT and held.reply_text == reply("agent_holding", "zh")

    sent = _kefu_agent(cfg, "reply", ticket_id, "-m", "您好，我是客服小王，马上为您处理。", "--as", "agent-wang", "--json")
    assert sent.returncode == 0, sent.stderr
    assert '"message_id"' in sent.stdout
    _, delivered = converse(dialog, "好的", session_id=session_id)
    assert delivered.reply_text == "您好，我是客服小王，马上为您处理。"

    taken = _kefu_agent(cfg, "claim", ticket_id, "--as", "agent-zhao")
    assert taken.returncode == 1 and taken.stderr.strip() == f"kefu agent: FAILED_PRECONDITION: ticket {ticket_id} is held by agent 'agent-wang'"
    missing = _kefu_agent(cfg, "reply", "TK-NOPE", "-m", "hi", "--as", "agent-wang")
    assert missing.returncode == 1 and missing.stderr.startswith("kefu agent: NOT_FOUND:") and len(missing.stderr.splitlines()) == 1

    done = _kefu_agent(cfg, "resolve", ticket_id, "--note", "已补发", "--as", "agent-wang")
    assert done.returncode == 0 and "resolved" in done.stdout
    assert dialog.GetSession(dialog_pb2.GetSessionRequest(session_id=session_id), timeout=30).handoff == dialog_pb2.HANDOFF_STATE_BOT
    assert _ticket_state(cfg, ticket_id, lambda s: s.status == "resolved").status == "resolved"


def test_claiming_while_temporal_is_down_is_unavailable_and_changes_nothing(lone_service, cfg):
    _, own = lone_service("dialog", temporal=free_ports(1)[0])
    sessions = SessionStore(own.sessions_path)
    session = sessions.create(channel="test")
    sessions.append_turn(session.session_id, TurnRecord(1, "转人工", "已为您转接人工客服", "human_agent", [], [], "2026-11-21T10:00:00+00:00"),
                         handoff="requested")
    DemoStore(own.store_path).create_ticket(
        NewTicket("TK-DOWN-1", session.session_id, "handoff", "customer: 转人工", "zh", created_at="2026-11-21T10:00:00+00:00")
    )
    with grpc.insecure_channel(own.target("dialog")) as channel:
        stub = agent_pb2_grpc.AgentDeskStub(channel)
        code, details = _code(lambda: stub.Claim(agent_pb2.ClaimRequest(agent_id="agent-a", ticket_id="TK-DOWN-1"), timeout=60))
    assert code == grpc.StatusCode.UNAVAILABLE and "Temporal" in details and "Traceback" not in details
    after = sessions.get(session.session_id)
    assert (after.handoff, after.held_by) == ("requested", "")
