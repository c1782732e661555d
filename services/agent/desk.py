"""The agent desk: what a human agent does with a conversation kefu handed over.

    queue ─ claim ─> the agent holds the conversation (session handoff "agent")
                     ├─ the customer's messages go to the agent (watch), kefu stays quiet
                     ├─ reply: a message for the customer (the session's message log)
                     ├─ hand back ─> kefu answers again; the ticket stays open, with the note
                     └─ resolve ──> the ticket is resolved; kefu answers again

Two records move together: the session (SessionStore: who holds it, the messages) and
the ticket (its TicketWorkflow, signalled ``assign``, ``agent_reply``, ``hand_back``,
``resolve``; the ticket table follows the workflow). The workflow is signalled first and
the session changed after, so when Temporal cannot be reached nothing changes and the
agent gets UNAVAILABLE; a claim is taken on the session first (one SQLite statement, so
two agents cannot both win) and given back if the signal fails.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import AsyncIterator, Protocol

from temporalio.service import RPCError, RPCStatusCode

from services.agent.context import context_from_json
from services.config import KefuConfig
from services.demo.store import DemoStore, Ticket
from services.dialog.sessions import SessionRecord, SessionStore, TurnRecord
from services.dialog.workflow_desk import WorkflowDesk
from services.errors import FailedPrecondition, NotFound, Unavailable, require_text
from workflows.tickets.types import PRIORITIES, TicketContext, TicketMessage, workflow_id_for

# Ticket statuses an agent can still work on; resolved and closed tickets are done.
WORKABLE = ("open", "pending", "escalated")
MAX_REPLY_CHARS = 4000


@dataclass
class QueueEntry:
    """A handed-over conversation as the queue shows it."""

    ticket: Ticket
    held_by: str
    context: TicketContext


class Signaller(Protocol):
    async def send(self, ticket_id: str, signal: str, message: TicketMessage) -> None: ...


class TicketSignals(WorkflowDesk):
    """Signals to a ticket's TicketWorkflow: UNAVAILABLE when Temporal cannot take them,
    FAILED_PRECONDITION when the ticket's workflow has ended (the ticket closed)."""

    def __init__(self, cfg: KefuConfig, *, timeout_s: float = 10.0) -> None:
        super().__init__(cfg, timeout_s=timeout_s)

    async def send(self, ticket_id: str, signal: str, message: TicketMessage) -> None:
        client = await self._connect()
        handle = client.get_workflow_handle(workflow_id_for(ticket_id))
        try:
            await asyncio.wait_for(handle.signal(signal, message), timeout=self._timeout_s)
        except asyncio.TimeoutError as exc:
            raise Unavailable(f"the workflow engine (Temporal at {self._address}) did not take ticket {ticket_id}'s {signal} in time") from exc
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                raise FailedPrecondition(f"ticket {ticket_id} is closed: its workflow has ended") from exc
            raise Unavailable(f"the workflow engine (Temporal at {self._address}) is unavailable: {exc.message}") from exc


class AgentDesk:
    """The agent's operations over the session store, the ticket table and the ticket
    workflows. Errors are services.errors classes, mapped to gRPC codes by the servicer."""

    def __init__(self, sessions: SessionStore, tickets: DemoStore, signals: Signaller, *, poll_s: float = 0.3) -> None:
        self._sessions = sessions
        self._tickets = tickets
        self._signals = signals
        self._poll_s = poll_s

    # -- reading ---------------------------------------------------------------------------

    def queue(self, *, include_claimed: bool = False, limit: int = 0) -> list[QueueEntry]:
        """Handed-over conversations waiting for an agent (with ``include_claimed``, those
        held too): one per conversation, its newest ticket; most urgent, then oldest, first."""
        statuses = ("open", "escalated", "pending") if include_claimed else ("open", "escalated")
        newest: dict[str, Ticket] = {}
        for ticket in self._tickets.active_tickets(statuses):  # oldest first: the newest stays
            newest[ticket.session_id] = ticket
        holders = self._sessions.holders(list(newest))
        entries = []
        for session_id, ticket in newest.items():
            handoff, held_by = holders.get(session_id, ("", ""))
            if handoff == "requested" or (include_claimed and handoff == "agent"):
                entries.append(self._entry(ticket, held_by))
        entries.sort(key=lambda e: (-_urgency(e.ticket.priority), e.ticket.created_at, e.ticket.ticket_id))
        return entries[:limit] if limit > 0 else entries

    async def watch(self, ticket_id: str, *, after_turn: int | None = None) -> AsyncIterator[tuple[str, TurnRecord]]:
        """(session id, turn) for the customer's turns in the ticket's conversation as they
        are recorded (text PII-masked): those after ``after_turn``, or, when None, only new
        ones. Polls the session store, which the Dialog turns write; runs until the caller
        stops."""
        session = self._session_of(self._ticket(ticket_id))
        after = len(session.turns) if after_turn is None else after_turn
        while True:
            for turn in self._sessions.turns_after(session.session_id, after):
                yield session.session_id, turn
                after = turn.index
            await asyncio.sleep(self._poll_s)

    # -- acting ----------------------------------------------------------------------------

    async def claim(self, agent_id: str, ticket_id: str) -> QueueEntry:
        """Hold the ticket's conversation as ``agent_id`` (again: no change)."""
        agent = _agent(agent_id)
        ticket = self._workable(ticket_id)
        session = self._session_of(ticket)
        if session.handoff == "agent" and session.held_by == agent:
            return self._entry(ticket, agent)
        holder = self._sessions.hold(session.session_id, agent)
        if holder != agent:
            raise FailedPrecondition(f"ticket {ticket_id} is held by agent {holder!r}")
        try:
            await self._signals.send(ticket_id, "assign", TicketMessage(author=agent))
        except BaseException:
            self._sessions.release(session.session_id, agent, handoff=session.handoff)  # as it was
            raise
        return self._entry(ticket, agent)

    async def reply(self, agent_id: str, ticket_id: str, text: str, *, request_id: str = "") -> tuple[int, str]:
        """Send the customer ``text``; returns (message id, session id). The customer gets
        it with their next turn, in GetSession and on WatchReplies."""
        agent = _agent(agent_id)
        text = require_text(text, field="text", max_chars=MAX_REPLY_CHARS)
        ticket = self._workable(ticket_id)
        session = self._held(ticket, agent)
        await self._signals.send(ticket_id, "agent_reply", TicketMessage(author=agent, text=text))
        key = f"agent-reply:{request_id}" if request_id else ""
        return self._sessions.add_message(session.session_id, f"agent:{agent}", text, key=key), session.session_id

    async def hand_back(self, agent_id: str, ticket_id: str, note: str = "") -> SessionRecord:
        """Give the conversation back to kefu; the ticket stays as it is, with the note
        on its timeline and on the session."""
        agent = _agent(agent_id)
        note = (note or "").strip()
        ticket = self._ticket(ticket_id)
        session = self._held(ticket, agent)
        if ticket.status != "closed":  # a closed ticket's workflow has ended; the conversation still goes back
            await self._signals.send(ticket_id, "hand_back", TicketMessage(author=agent, text=note))
        if not self._sessions.release(session.session_id, agent, handoff="bot", note=note):
            raise FailedPrecondition(f"ticket {ticket_id} is no longer held by agent {agent!r}")
        return self._session_of(ticket)

    async def resolve(self, agent_id: str, ticket_id: str, note: str = "") -> SessionRecord | None:
        """Resolve the ticket (by the agent holding it, or any agent while nobody does);
        its conversation, if this is its current ticket, goes back to kefu."""
        agent = _agent(agent_id)
        note = (note or "").strip()
        ticket = self._workable(ticket_id)
        session = self._sessions.get(ticket.session_id)
        if session is not None and session.held_by and session.held_by != agent:
            raise FailedPrecondition(f"ticket {ticket_id} is held by agent {session.held_by!r}")
        await self._signals.send(ticket_id, "resolve", TicketMessage(author=agent, text=note))
        if session is None:
            return None
        current = self._tickets.tickets_for_session(session.session_id)
        if current and current[-1].ticket_id == ticket_id and session.handoff != "bot":
            self._sessions.release(session.session_id, session.held_by, handoff="bot", note=note)
        return self._sessions.get(session.session_id)

    # -- lookups ---------------------------------------------------------------------------

    def _ticket(self, ticket_id: str) -> Ticket:
        ticket = self._tickets.get_ticket((ticket_id or "").strip()) if (ticket_id or "").strip() else None
        if ticket is None:
            raise NotFound(f"ticket {ticket_id!r} does not exist")
        return ticket

    def _workable(self, ticket_id: str) -> Ticket:
        ticket = self._ticket(ticket_id)
        if ticket.status not in WORKABLE:
            raise FailedPrecondition(f"ticket {ticket_id} is {ticket.status}")
        return ticket

    def _session_of(self, ticket: Ticket) -> SessionRecord:
        session = self._sessions.get(ticket.session_id)
        if session is None:
            raise NotFound(f"ticket {ticket.ticket_id}'s conversation {ticket.session_id!r} is not in kefu's session store")
        return session

    def _held(self, ticket: Ticket, agent: str) -> SessionRecord:
        session = self._session_of(ticket)
        if session.handoff != "agent" or not session.held_by:
            raise FailedPrecondition(f"ticket {ticket.ticket_id} is not claimed: claim it first")
        if session.held_by != agent:
            raise FailedPrecondition(f"ticket {ticket.ticket_id} is held by agent {session.held_by!r}")
        return session

    def _entry(self, ticket: Ticket, held_by: str) -> QueueEntry:
        context = context_from_json(ticket.context)
        if not context.summary:  # a ticket from before context packets
            context.summary = ticket.summary
        return QueueEntry(ticket=ticket, held_by=held_by, context=context)


def _agent(agent_id: str) -> str:
    return require_text(agent_id, field="agent_id", max_chars=64)


def _urgency(priority: str) -> int:
    return PRIORITIES.index(priority) if priority in PRIORITIES else PRIORITIES.index("normal")
