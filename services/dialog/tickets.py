"""Opening tickets for a human agent through the Temporal ticket workflow."""

from __future__ import annotations

import asyncio
import logging
import secrets
from datetime import datetime, timezone

from services.config import KefuConfig
from services.dialog.ticket_outbox import TicketOutbox
from services.dialog.workflow_desk import WorkflowDesk
from services.errors import Unavailable
from workflows.tickets.sla import sla_for
from workflows.tickets.types import TicketMessage, TicketReceipt, TicketRequest, TicketState, workflow_id_for

log = logging.getLogger(__name__)


def new_ticket_id() -> str:
    """e.g. ``TK20261121-7F3A9C``: the date makes it readable over the phone, the suffix unique."""
    return f"TK{datetime.now(timezone.utc):%Y%m%d}-{secrets.token_hex(3).upper()}"


class TicketDesk(WorkflowDesk):
    """Starts TicketWorkflow (which lives until the ticket closes, its SLAs timed) and
    waits for the ticket to be recorded."""

    def __init__(self, cfg: KefuConfig, *, timeout_s: float = 20.0, outbox: TicketOutbox | None = None, retry_s: float = 5.0) -> None:
        super().__init__(cfg, timeout_s=timeout_s)
        self._sla = cfg.tickets.sla
        self._auto_close_s = cfg.tickets.auto_close_s
        self._outbox = outbox
        self._retry_s = retry_s
        sla_for(self._sla, "default", "normal", self._auto_close_s)  # a bad table fails at start, not on a customer's turn

    async def new_ticket_id(self, session_id: str) -> str:
        """A ticket id for ``session_id`` that no other ticket has: with an outbox, reserved
        in the state database shared by every Dialog process (an id drawn twice is drawn
        again); without one, only as unique as its random suffix."""
        if self._outbox is None:
            return new_ticket_id()
        return await asyncio.to_thread(self._outbox.reserve_id, session_id, new_ticket_id)

    async def open_ticket(self, request: TicketRequest) -> tuple[TicketReceipt, str]:
        """Returns the receipt and the workflow id. With an outbox, a ticket that cannot be
        opened now (Temporal away) is queued under the same id: status "queued"."""
        workflow_id = workflow_id_for(request.ticket_id)
        request.sla = sla_for(self._sla, request.category, request.priority, self._auto_close_s)
        try:
            state = await self._start(request, workflow_id)
        except Unavailable as exc:
            if self._outbox is None:
                raise
            log.warning("ticket %s queued until the workflow engine is back: %s", request.ticket_id, exc)
            await asyncio.to_thread(self._outbox.queue, request)
            return TicketReceipt(ticket_id=request.ticket_id, status="queued", created_at=""), workflow_id
        return TicketReceipt(ticket_id=state.ticket_id, status=state.status, created_at=state.created_at), workflow_id

    async def _start(self, request: TicketRequest, workflow_id: str) -> TicketState:
        return await self._start_and_query(
            "TicketWorkflow", request, workflow_id=workflow_id, query="state", result_type=TicketState,
            ready=lambda st: bool(st.status), what="the ticket workflow",
        )

    async def open_queued(self) -> int:
        """Open the queued tickets that can be opened now; how many were."""
        if self._outbox is None:
            return 0
        opened = 0
        for request in await asyncio.to_thread(self._outbox.pending):
            try:
                await self._start(request, workflow_id_for(request.ticket_id))
            except Unavailable as exc:
                await asyncio.to_thread(self._outbox.failed, request.ticket_id, str(exc))
                break  # still away: try again later, in order
            await asyncio.to_thread(self._outbox.opened, request.ticket_id)
            log.info("queued ticket %s opened", request.ticket_id)
            opened += 1
        return opened

    async def keep_opening_queued(self) -> None:
        """Run for the life of the Dialog process (also opens what an earlier one queued)."""
        while True:
            try:
                await self.open_queued()
            except Exception as exc:  # noqa: BLE001 - the loop must outlive any one failure
                log.warning("opening queued tickets failed: %s", exc)
            await asyncio.sleep(self._retry_s)

    async def note_customer_message(self, workflow_id: str, text: str) -> bool:
        """Signal the customer's message to an open ticket's workflow (``customer_reply``);
        False, logged, when that cannot be done (the ticket closed, Temporal away): the
        customer's turn goes on regardless."""
        try:
            client = await self._connect()
            await asyncio.wait_for(
                client.get_workflow_handle(workflow_id).signal("customer_reply", TicketMessage(author="customer", text=text)),
                timeout=self._timeout_s,
            )
            return True
        except Exception as exc:  # noqa: BLE001 - a note on the ticket must never fail the turn
            log.warning("could not add the customer's message to %s: %s", workflow_id, exc)
            return False
