"""Activities of the ticket workflow: adapters to the ticket system (the demo store here)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict

from temporalio import activity

from services.demo.store import DemoStore, NewTicket
from workflows.tickets.types import TicketReceipt, TicketRequest, TicketUpdate


class TicketActivities:
    def __init__(self, store: DemoStore) -> None:
        self._store = store

    @activity.defn(name="open_ticket")
    async def open_ticket(self, request: TicketRequest) -> TicketReceipt:
        # Idempotent on ticket_id: a retried activity returns the row it wrote before.
        created_at = activity.info().started_time.isoformat()
        ticket = await asyncio.to_thread(
            self._store.create_ticket,
            NewTicket(
                ticket_id=request.ticket_id,
                session_id=request.session_id,
                category=request.category,
                summary=request.summary,
                language=request.language,
                customer_id=request.customer_id or None,
                created_at=created_at,
                context=json.dumps(asdict(request.context), ensure_ascii=False),
            ),
        )
        activity.logger.info("ticket %s recorded", ticket.ticket_id)
        return TicketReceipt(ticket_id=ticket.ticket_id, status=ticket.status, created_at=ticket.created_at)

    @activity.defn(name="update_ticket")
    async def update_ticket(self, update: TicketUpdate) -> None:
        # Idempotent: the same values written again change nothing.
        ticket = await asyncio.to_thread(
            self._store.update_ticket, update.ticket_id, status=update.status, priority=update.priority,
            assignee=update.assignee, note=update.note, updated_at=update.updated_at,
        )
        if ticket is None:
            raise ValueError(f"no ticket {update.ticket_id!r} in the store")
