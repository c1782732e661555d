"""Asking for a person opens a ticket through the real Temporal ticket workflow."""

from __future__ import annotations

import asyncio

import pytest
from temporalio.client import Client, WorkflowExecutionStatus

from kefu.v1 import dialog_pb2
from services.demo.store import DemoStore
from tests.conftest import converse
from workflows.tickets.types import TicketState


@pytest.mark.parametrize(
    "text, language, said", [("我要投诉，转人工", "zh", "我要投诉"), ("I want to talk to a person", "en", "talk to a person")]
)
def test_handoff_turn_opens_a_ticket(dialog, cfg, text, language, said):
    chunks, result = converse(dialog, text)
    types = [a.type for a in result.actions]
    assert dialog_pb2.ACTION_TYPE_CREATE_TICKET in types and dialog_pb2.ACTION_TYPE_HANDOFF in types
    action = next(a for a in result.actions if a.type == dialog_pb2.ACTION_TYPE_CREATE_TICKET)
    assert action.ticket_id and action.ticket_id in result.reply_text
    assert result.handoff == dialog_pb2.HANDOFF_STATE_REQUESTED
    assert result.language == language
    assert "".join(chunks) == result.reply_text

    async def workflow_state():
        client = await Client.connect(cfg.temporal_address, namespace=cfg.temporal.namespace)
        handle = client.get_workflow_handle(action.workflow_id)
        return (await handle.describe()).status, await handle.query("state", result_type=TicketState)

    # The ticket's workflow lives on, its SLA timers running, until the ticket closes.
    status, state = asyncio.run(workflow_state())
    assert status == WorkflowExecutionStatus.RUNNING
    assert (state.ticket_id, state.status, state.breaches) == (action.ticket_id, "open", [])
    assert [e.kind for e in state.timeline] == ["opened"]

    ticket = DemoStore(cfg.store_path).get_ticket(action.ticket_id)
    assert ticket is not None
    assert ticket.session_id == result.session_id
    assert ticket.language == language
    assert said in ticket.summary  # the agent sees what the customer said
    assert ticket.category == ("complaint" if language == "zh" else "handoff")


def test_after_a_handoff_the_customers_messages_reach_the_ticket_masked(dialog, cfg):
    _, first = converse(dialog, "I want to talk to a person")
    action = next(a for a in first.actions if a.type == dialog_pb2.ACTION_TYPE_CREATE_TICKET)
    _, second = converse(dialog, "my phone is 13812345678, the kettle I got leaks", session_id=first.session_id)
    assert dialog_pb2.ACTION_TYPE_CREATE_TICKET not in [a.type for a in second.actions]  # no second ticket

    async def timeline():
        client = await Client.connect(cfg.temporal_address, namespace=cfg.temporal.namespace)
        handle = client.get_workflow_handle(action.workflow_id)
        for _ in range(50):
            state = await handle.query("state", result_type=TicketState)
            if len(state.timeline) > 1:
                return state.timeline
            await asyncio.sleep(0.2)
        return state.timeline

    events = asyncio.run(timeline())
    assert [e.kind for e in events] == ["opened", "customer_reply"]
    assert events[1].actor == "customer" and "kettle" in events[1].text
    assert "13812345678" not in events[1].text and "[PHONE_1]" in events[1].text
