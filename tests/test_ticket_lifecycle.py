"""A ticket's life in TicketWorkflow on the real Temporal dev server and the real kefu
worker: SLA breaches escalate exactly once, signals move the ticket, resolution closes it
after auto_close_s unless reopened, the ticket table follows, and recorded histories
replay (the workflow code is deterministic). SLAs are seconds here, not skipped."""

from __future__ import annotations

import asyncio
import secrets
import time

from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.worker import Replayer

from services.demo.store import DemoStore
from workflows.tickets.types import TicketMessage, TicketRequest, TicketSla, TicketState, workflow_id_for
from workflows.tickets.workflow import TicketWorkflow


def _request(sla: TicketSla, category: str = "complaint") -> TicketRequest:
    ticket_id = f"TKTEST-{secrets.token_hex(4).upper()}"
    return TicketRequest(ticket_id=ticket_id, session_id="s-test", category=category, summary="customer: 我要投诉",
                         language="zh", sla=sla)


async def _client(cfg) -> Client:
    return await Client.connect(cfg.temporal_address, namespace=cfg.temporal.namespace)


async def _until(handle, ready, timeout: float = 30.0) -> TicketState:
    deadline = time.monotonic() + timeout
    while True:
        state = await handle.query("state", result_type=TicketState)
        if ready(state):
            return state
        assert time.monotonic() < deadline, f"ticket state never got there: {state}"
        await asyncio.sleep(0.2)


def test_missed_deadlines_escalate_once_each_and_a_resolved_ticket_closes(cfg):
    async def scenario():
        client = await _client(cfg)
        request = _request(TicketSla(first_response_s=1.0, resolution_s=3.0, auto_close_s=1.0))
        handle = await client.start_workflow(TicketWorkflow.run, request, id=workflow_id_for(request.ticket_id), task_queue=cfg.temporal.task_queue)
        first = await _until(handle, lambda s: s.breaches == ["first_response"])
        assert (first.status, first.priority) == ("escalated", "high")
        both = await _until(handle, lambda s: len(s.breaches) == 2)
        assert (both.breaches, both.priority) == (["first_response", "resolution"], "urgent")
        await asyncio.sleep(2.0)  # no third escalation: each SLA is breached once
        assert (await handle.query("state", result_type=TicketState)).breaches == ["first_response", "resolution"]
        row = DemoStore(cfg.store_path).get_ticket(request.ticket_id)
        assert (row.status, row.priority) == ("escalated", "urgent") and "resolution" in row.note
        await handle.signal("resolve", TicketMessage(author="agent-7", text="已退款"))
        final = await handle.result()
        return request, final

    request, final = asyncio.run(scenario())
    assert final.status == "closed"
    assert [e.kind for e in final.timeline] == ["opened", "escalated", "escalated", "resolved", "closed"]
    row = DemoStore(cfg.store_path).get_ticket(request.ticket_id)
    assert (row.status, row.priority, row.assignee) == ("closed", "urgent", "")


def test_replies_in_time_do_not_escalate_and_a_reopened_ticket_waits_again(cfg):
    async def scenario():
        client = await _client(cfg)
        request = _request(TicketSla(first_response_s=60.0, resolution_s=120.0, auto_close_s=3.0), category="handoff")
        handle = await client.start_workflow(TicketWorkflow.run, request, id=workflow_id_for(request.ticket_id), task_queue=cfg.temporal.task_queue)
        await _until(handle, lambda s: s.status == "open")
        await handle.signal("assign", TicketMessage(author="agent-3"))
        await handle.signal("agent_reply", TicketMessage(author="agent-3", text="Could you send a photo?"))
        pending = await _until(handle, lambda s: s.status == "pending")
        assert pending.assignee == "agent-3"
        await handle.signal("customer_reply", TicketMessage(author="customer", text="photo attached"))
        await _until(handle, lambda s: s.status == "open")
        await handle.signal("resolve", TicketMessage(author="agent-3", text="replacement sent"))
        await _until(handle, lambda s: s.status == "resolved")
        assert DemoStore(cfg.store_path).get_ticket(request.ticket_id).status == "resolved"
        await handle.signal("reopen", TicketMessage(author="customer", text="still broken"))
        reopened = await _until(handle, lambda s: s.status == "open")
        assert DemoStore(cfg.store_path).get_ticket(request.ticket_id).status == "open"
        assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING  # the auto-close was called off
        await handle.signal("resolve", TicketMessage(author="agent-3", text="second replacement"))
        final = await handle.result()
        history = await handle.fetch_history()
        return request, reopened, final, history

    request, reopened, final, history = asyncio.run(scenario())
    assert reopened.breaches == [] and final.breaches == [] and final.priority == "normal"
    assert [e.kind for e in final.timeline] == [
        "opened", "assigned", "agent_reply", "customer_reply", "resolved", "reopened", "resolved", "closed"
    ]
    row = DemoStore(cfg.store_path).get_ticket(request.ticket_id)
    assert (row.status, row.assignee, row.note) == ("closed", "agent-3", "second replacement")
    # The recorded history replays against the workflow code as it is now.
    asyncio.run(Replayer(workflows=[TicketWorkflow]).replay_workflow(history))
