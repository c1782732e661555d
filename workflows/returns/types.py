"""Inputs, outputs and state of the return saga: single dataclasses of plain fields with
defaults, so Temporal's default converter carries them and fields can be added later."""

from __future__ import annotations

from dataclasses import dataclass, field

from workflows.tickets.types import TicketSla

KINDS = ("return", "exchange", "cancellation")
# What ERPs report, in the order a saga expects them.
EVENT_KINDS = ("parcel_received", "inspection_result", "refund_completed", "shipment_delivered")


@dataclass
class ReturnTimers:
    """Seconds from the authorisation to the reminder to send the parcel, and to the
    expiry of the return (request withdrawn, order delivered again, customer told)."""

    reminder_s: float = 259200.0
    expire_s: float = 1209600.0


@dataclass
class ReturnRequest:
    order_id: str
    kind: str  # return | exchange | cancellation
    session_id: str = ""
    customer_id: str = ""
    language: str = "en"
    timers: ReturnTimers = field(default_factory=ReturnTimers)
    # SLA of the ticket opened for finance when a step cannot finish by itself.
    finance_sla: TicketSla = field(default_factory=TicketSla)


@dataclass
class ErpEvent:
    """One thing an ERP reports about an order's return, exchange or refund."""

    event_id: str
    kind: str  # one of EVENT_KINDS
    order_id: str
    # inspection_result: whether the returned goods were accepted, and why not.
    accepted: bool = False
    reason: str = ""
    occurred_at: str = ""


@dataclass
class ErpEventOutcome:
    outcome: str  # accepted | duplicate
    status: str  # the saga's status when the event was taken


@dataclass
class StepCall:
    """One after-sales step in the store (services/erp/after_sales.py), idempotent on ``key``."""

    step: str  # authorize_return | cancel_return | refund | ship_replacement | track_cancellation
    order_id: str
    key: str
    kind: str = ""
    amount: float = 0.0
    payment_method_id: str = ""
    order_status: str = ""


@dataclass
class StepResult:
    ok: bool
    # When not ok: the store's refusal (code, reason in English).
    code: str = ""
    reason: str = ""
    # The step's record as JSON (rma_id, label, refund_id, tracking_id...).
    result_json: str = ""
    currency: str = ""


@dataclass
class Notice:
    """A message to the customer in their session (shown in GetSession and WatchReplies);
    ``key`` makes a retried notice appear once."""

    session_id: str
    key: str
    text: str


@dataclass
class ReturnEvent:
    kind: str
    at: str
    text: str = ""


@dataclass
class ReturnState:
    order_id: str = ""
    kind: str = ""
    # "" before the saga started, then: awaiting_parcel, inspecting, refund_pending,
    # replacement_shipped, and the ends refunded, exchanged, expired, rejected, needs_attention.
    status: str = ""
    rma_id: str = ""
    label: str = ""
    refund_id: str = ""
    refund_amount: float = 0.0
    refund_method: str = ""
    refund_status: str = ""  # pending | completed
    tracking_id: str = ""
    currency: str = ""
    # Why the goods were rejected, or why a person has to finish it.
    reason: str = ""
    ticket_id: str = ""
    # Event ids taken, so a repeated report changes nothing.
    event_ids: list[str] = field(default_factory=list)
    timeline: list[ReturnEvent] = field(default_factory=list)


def workflow_id_for(order_id: str) -> str:
    """``return-<order id>``: one saga per order at a time, found from the order alone."""
    return f"return-{order_id.lstrip('#')}"
