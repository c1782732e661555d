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
class ContextTurn:
    """One turn of the conversation as the agent reads it (texts PII-masked), with how
    dissatisfied the customer sounded in it (NLU's score in [0, 1])."""

    index: int = 0
    customer_text: str = ""
    reply_text: str = ""
    dissatisfaction: float = 0.0
    at: str = ""


@dataclass
class TicketContext:
    """The context packet handed to the agent with the ticket, so that nobody asks the
    customer again what they already told kefu. Everything in it is PII-masked."""

    # A few lines for the agent: why the handoff, what task, which orders, the last message.
    summary: str = ""
    # "asked" (a person, a complaint) or "dissatisfied" (several unhappy turns in a row).
    reason: str = ""
    # The handoff turn's intent, and the task flow's state (services/dialog/flows/state.py).
    intent: str = ""
    intent_confidence: float = 0.0
    flow: str = ""
    requested_slot: str = ""
    slots: dict[str, str] = field(default_factory=dict)
    # The customer's id in the store once verified ("" before).
    store_customer_id: str = ""
    # Dissatisfaction of every turn, in order, the handoff turn last.
    dissatisfaction: list[float] = field(default_factory=list)
    order_ids: list[str] = field(default_factory=list)
    last_turns: list[ContextTurn] = field(default_factory=list)


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
    # The context packet for the agent (empty in histories from before it existed).
    context: TicketContext = field(default_factory=TicketContext)


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
    customer_reply, handed_back, escalated, resolved, reopened, closed)."""

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
