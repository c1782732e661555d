"""Inputs, outputs and state of the ticket workflow: single dataclasses, so fields can be added."""

from __future__ import annotations

from dataclasses import dataclass, field

# Escalation raises a ticket one step, up to the top.
PRIORITIES = ("low", "normal", "high", "urgent")


@dataclass
class TicketSla:
    """Seconds to the first agent reply and to resolution (each breached at most once),
    and from resolution to closing unless the customer reopens."""

    first_response_s: float = 3600.0
    resolution_s: float = 86400.0
    auto_close_s: float = 259200.0


@dataclass
class TicketRequest:
    ticket_id: str
    session_id: str
    # "handoff" (the customer asked for a person), "complaint", "sales"...
    category: str
    # What the customer said, PII-masked, plus context for the agent.
    summary: str
    language: str
    customer_id: str = ""
    priority: str = "normal"
    # Chosen from the configuration (tickets.sla) when the ticket is opened, so the
    # workflow never reads configuration itself.
    sla: TicketSla = field(default_factory=TicketSla)


@dataclass
class TicketReceipt:
    ticket_id: str
    status: str
    created_at: str


@dataclass
class TicketMessage:
    """An agent's or the customer's message on the ticket, or an agent's note."""

    author: str = ""
    text: str = ""


@dataclass
class TicketEvent:
    """One line of the ticket's timeline (``kind``: opened, assigned, agent_reply,
    customer_reply, escalated, resolved, reopened, closed)."""

    kind: str
    at: str
    actor: str = ""
    text: str = ""


@dataclass
class TicketUpdate:
    """What the update_ticket activity writes to the ticket table."""

    ticket_id: str
    status: str
    priority: str
    assignee: str
    note: str
    updated_at: str


@dataclass
class TicketState:
    ticket_id: str = ""
    status: str = ""  # "" until the ticket is recorded, then open, pending, escalated, resolved, closed
    priority: str = "normal"
    assignee: str = ""
    created_at: str = ""
    # SLAs breached, in order ("first_response", "resolution"); each at most once.
    breaches: list[str] = field(default_factory=list)
    timeline: list[TicketEvent] = field(default_factory=list)


def workflow_id_for(ticket_id: str) -> str:
    return f"ticket-{ticket_id}"
