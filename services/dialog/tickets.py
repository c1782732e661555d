"""Opening tickets for a human agent through the Temporal ticket workflow."""

from __future__ import annotations

import asyncio
import secrets
from datetime import datetime, timedelta, timezone

from services.config import KefuConfig
from services.dialog.workflow_desk import WorkflowDesk
from services.errors import Unavailable
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
        client = await self._connect()
        workflow_id = workflow_id_for(request.ticket_id)
        try:
            receipt = await asyncio.wait_for(
                client.execute_workflow(
                    "TicketWorkflow",
                    request,
                    id=workflow_id,
                    task_queue=self._task_queue,
                    result_type=TicketReceipt,
                    execution_timeout=timedelta(seconds=self._timeout_s * 3),
                ),
                timeout=self._timeout_s,
            )
        except asyncio.TimeoutError as exc:
            raise Unavailable("the ticket workflow did not finish in time; is the kefu worker running?") from exc
        except Exception as exc:  # noqa: BLE001 - RPC failures from the Temporal client
            raise Unavailable(f"could not run the ticket workflow: {exc}") from exc
        return receipt, workflow_id
