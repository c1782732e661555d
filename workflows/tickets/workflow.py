"""TicketWorkflow: a ticket from opening to closing, with its SLAs.

    open_ticket (activity) ─> open ─ agent reply ─> pending ─ customer reply ─> open ...
                                 └─ SLA breached ─> escalated (priority one step up, a note)
    resolve ─> resolved ─ reopen ─> open ...
                     └─ auto_close_s without a reopen ─> closed (the workflow ends)

Deadlines run from the opening: the first agent reply within ``sla.first_response_s``,
resolution within ``sla.resolution_s``; each breach escalates exactly once. Signals
(``assign``, ``agent_reply``, ``customer_reply``, ``hand_back``, ``resolve``, ``reopen``,
each a TicketMessage) are queued by their handlers and applied by the run loop, which writes the
ticket table through the ``update_ticket`` activity, so the table reflects the workflow.
The ``state`` query gives status, priority, assignee, breaches and the timeline, as
written to the table (a step shows in the query once the table holds it).
"""

from __future__ import annotations

import copy
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from workflows.tickets.types import (
        PRIORITIES,
        TicketEvent,
        TicketMessage,
        TicketReceipt,
        TicketRequest,
        TicketState,
        TicketUpdate,
    )

_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=200), maximum_attempts=10)


@workflow.defn(name="TicketWorkflow")
class TicketWorkflow:
    def __init__(self) -> None:
        self._state = TicketState()
        # What the ``state`` query answers: published once the ticket table holds it, so a
        # reader who saw a status in the query finds it in the table too.
        self._published = TicketState()
        self._inbox: list[tuple[str, TicketMessage]] = []
        self._replied = False
        self._note = ""

    @workflow.run
    async def run(self, request: TicketRequest) -> TicketState:
        receipt = await workflow.execute_activity(
            "open_ticket", request, result_type=TicketReceipt, start_to_close_timeout=timedelta(seconds=30), retry_policy=_RETRY
        )
        st = self._state
        st.ticket_id, st.created_at = receipt.ticket_id, receipt.created_at
        st.priority = request.priority if request.priority in PRIORITIES else "normal"
        st.status = receipt.status
        self._log("opened", "kefu", request.category)
        self._publish()
        sla = request.sla
        opened = workflow.now()
        while True:
            if st.status == "resolved":
                if not await self._next(timedelta(seconds=sla.auto_close_s)):
                    st.status = "closed"
                    self._log("closed", "kefu", "closed automatically after resolution")
                    await self._write()
                    return st
                continue
            due = []
            if not self._replied and "first_response" not in st.breaches:
                due.append((opened + timedelta(seconds=sla.first_response_s), "first_response"))
            if "resolution" not in st.breaches:
                due.append((opened + timedelta(seconds=sla.resolution_s), "resolution"))
            if not due:
                await self._next(None)
                continue
            at, breach = min(due)
            remaining = (at - workflow.now()).total_seconds()
            if remaining > 0 and await self._next(timedelta(seconds=remaining)):
                continue
            await self._escalate(breach)

    # -- signals and query -----------------------------------------------------------

    @workflow.signal(name="assign")
    def assign(self, message: TicketMessage) -> None:
        self._inbox.append(("assign", message))

    @workflow.signal(name="agent_reply")
    def agent_reply(self, message: TicketMessage) -> None:
        self._inbox.append(("agent_reply", message))

    @workflow.signal(name="customer_reply")
    def customer_reply(self, message: TicketMessage) -> None:
        self._inbox.append(("customer_reply", message))

    @workflow.signal(name="resolve")
    def resolve(self, message: TicketMessage) -> None:
        self._inbox.append(("resolve", message))

    @workflow.signal(name="reopen")
    def reopen(self, message: TicketMessage) -> None:
        self._inbox.append(("reopen", message))

    @workflow.signal(name="hand_back")
    def hand_back(self, message: TicketMessage) -> None:
        """The agent gave the conversation back to kefu; the ticket stays as it is and
        keeps the agent's note."""
        self._inbox.append(("hand_back", message))

    @workflow.query(name="state")
    def state(self) -> TicketState:
        return self._published

    # -- the loop's steps ---------------------------------------------------------------

    async def _next(self, timeout: timedelta | None) -> bool:
        """Wait for signals (at most ``timeout``) and apply them; False when the time ran out."""
        try:
            await workflow.wait_condition(lambda: bool(self._inbox), timeout=timeout)
        except TimeoutError:
            return False
        while self._inbox:
            kind, message = self._inbox.pop(0)
            if self._apply(kind, message):
                await self._write()
        return True

    def _apply(self, kind: str, message: TicketMessage) -> bool:
        """Apply one signal to the state; whether the ticket row changes."""
        st = self._state
        if kind == "assign":
            st.assignee = message.author
        elif kind == "agent_reply":
            self._replied = True
            if st.status == "open":
                st.status = "pending"
        elif kind == "customer_reply":
            if st.status == "pending":
                st.status = "open"
        elif kind == "resolve":
            if st.status == "resolved":
                return False
            st.status = "resolved"
            self._note = message.text
        elif kind == "reopen":
            if st.status != "resolved":
                return False  # only a resolved ticket is reopened
            st.status = "open"
        elif kind == "hand_back":
            self._note = message.text
        names = {"resolve": "resolved", "reopen": "reopened", "assign": "assigned", "hand_back": "handed_back"}
        self._log(names.get(kind, kind), message.author, message.text)
        return True

    async def _escalate(self, breach: str) -> None:
        st = self._state
        st.breaches.append(breach)
        st.priority = PRIORITIES[min(PRIORITIES.index(st.priority) + 1, len(PRIORITIES) - 1)]
        if st.status != "resolved":
            st.status = "escalated"
        self._note = f"SLA breached: {breach.replace('_', ' ')}; priority raised to {st.priority}"
        self._log("escalated", "kefu", self._note)
        await self._write()

    def _log(self, kind: str, actor: str, text: str) -> None:
        self._state.timeline.append(TicketEvent(kind=kind, at=workflow.now().isoformat(), actor=actor, text=text))

    async def _write(self) -> None:
        st = self._state
        await workflow.execute_activity(
            "update_ticket",
            TicketUpdate(st.ticket_id, st.status, st.priority, st.assignee, self._note, workflow.now().isoformat()),
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=_RETRY,
        )
        self._publish()

    def _publish(self) -> None:
        self._published = copy.deepcopy(self._state)
