"""Inputs and outputs of the store-operation workflow: single dataclasses of plain
fields (arguments and results as JSON strings), so Temporal's default converter
carries them unchanged and fields can be added later."""

from __future__ import annotations

from dataclasses import dataclass, field

from workflows.returns.types import ReturnTimers
from workflows.tickets.types import TicketSla


@dataclass
class OperationRequest:
    # An ERP port operation (services/erp/port.py OPERATIONS), e.g. "cancel_pending_order".
    operation: str
    # Its arguments as JSON, named as in τ-bench's tools.json: {"order_id": "#W...", ...}.
    args_json: str
    session_id: str
    # The verified customer the operation is for; "" when Dialog did not identify one.
    customer_id: str = ""
    # For what follows a return, an exchange or a cancellation (the return saga): the
    # language the customer is told in, its timers and the SLA of a ticket for finance.
    language: str = "en"
    timers: ReturnTimers = field(default_factory=ReturnTimers)
    finance_sla: TicketSla = field(default_factory=TicketSla)


@dataclass
class OperationCall:
    """What the activity gets: the operation plus the idempotency key (the workflow id),
    so every retry of the activity applies the same key and the store applies it once."""

    operation: str
    args_json: str
    key: str
    customer_id: str = ""


@dataclass
class OperationReceipt:
    operation: str
    status: str  # done | rejected
    # Why it was rejected (English, from the store) and its short code; "" when done.
    reason: str = ""
    code: str = ""
    order_id: str = ""
    # What the customer pays (>0) or gets back (<0) for item changes.
    price_difference: float = 0.0
    # The order (or, for modify_user_address, the customer) after the operation, as JSON,
    # so Dialog reports from the ERP's answer instead of from what it asked for.
    result_json: str = ""
    # The return saga that follows a done return, exchange or cancellation ("" for none).
    saga_workflow_id: str = ""

    @property
    def done(self) -> bool:
        return self.status == "done"


def new_workflow_id(operation: str, suffix: str) -> str:
    """``op-<operation>-<suffix>``: one workflow (and one idempotency key) per confirmed operation."""
    return f"op-{operation}-{suffix}"
