"""Inputs and outputs of the ticket workflow: single dataclasses, so fields can be added."""

from __future__ import annotations

from dataclasses import dataclass

@dataclass
class TicketRequest:
    ticket_id: str
    session_id: str
    # "handoff" (the customer asked for a person) or "complaint".
    category: str
    # What the customer said, PII-masked, plus context for the agent.
    summary: str
    language: str
    customer_id: str = ""


@dataclass
class TicketReceipt:
    ticket_id: str
    status: str
    created_at: str


def workflow_id_for(ticket_id: str) -> str:
    return f"ticket-{ticket_id}"
