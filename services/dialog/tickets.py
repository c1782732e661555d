"""Opening tickets for a human agent through the Temporal ticket workflow."""

from __future__ import annotations

import secrets
from datetime import datetime, timezone

from services.config import KefuConfig
from services.dialog.workflow_desk import WorkflowDesk
from workflows.tickets.types import TicketReceipt, TicketRequest, workflow_id_for


def new_ticket_id() -> str:
    """e.g. ``TK20261121-7F3A9C``: the date makes it readable over the phone, the suffix unique."""
    return f"TK{datetime.now(timezone.utc):%Y%m%d}-{secrets.token_hex(3).upper()}"


class TicketDesk(WorkflowDesk):
    """Starts TicketWorkflow and waits for the ticket to be recorded."""

    def __init__(self, cfg: KefuConfig, *, timeout_s: float = 20.0) -> None:
        super().__init__(cfg, timeout_s=timeout_s)

    async def open_ticket(self, request: TicketRequest) -> tuple[TicketReceipt, str]:
        """Returns the receipt and the workflow id."""
        workflow_id = workflow_id_for(request.ticket_id)
        receipt = await self._execute(
            "TicketWorkflow", request, workflow_id=workflow_id, result_type=TicketReceipt, what="the ticket workflow"
        )
        return receipt, workflow_id
