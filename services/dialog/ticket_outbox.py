"""Dialog's ticket bookkeeping in the state database (beside the sessions: the SQLite file,
or PostgreSQL when ``state.postgres_dsn`` is set, shared by every Dialog process).

* The ticket ids handed out: each new id is reserved here first, so two Dialog
  processes (or two turns) never give two customers the same ticket number.
* Tickets that could not be opened yet: while the workflow engine is away, a customer's
  request for a person is not lost. The ticket keeps the id the customer was given; the
  request waits here and TicketDesk opens it once Temporal is back, under the same
  workflow id, so a retry, or a second Dialog draining the same queue, never opens it
  twice.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable

from temporalio.api.common.v1 import Payload
from temporalio.converter import JSONPlainPayloadConverter

from services.state_db import state_db
from workflows.tickets.types import TicketRequest

_SCHEMA = """
CREATE TABLE IF NOT EXISTS queued_tickets (
  ticket_id TEXT PRIMARY KEY,
  request TEXT NOT NULL,
  queued_at TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  last_error TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS ticket_ids (
  ticket_id TEXT PRIMARY KEY,
  session_id TEXT NOT NULL,
  reserved_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS ticket_ids_by_time ON ticket_ids(reserved_at)
"""
_JSON = JSONPlainPayloadConverter()
# Ticket ids carry the day they were made (TK20261121-...): a reservation older than
# this can never meet a new id again, and is dropped.
_KEEP_RESERVATIONS = timedelta(days=3)


class TicketOutbox:
    def __init__(self, path: Path | None = None, *, dsn: str = "") -> None:
        if not dsn and path is None:
            raise ValueError("TicketOutbox needs a SQLite path or a PostgreSQL dsn")
        self._db = state_db(path, dsn)
        self._db.create(_SCHEMA, name="ticket_outbox")

    # -- ticket ids -------------------------------------------------------------------

    def reserve_id(self, session_id: str, make: Callable[[], str], *, tries: int = 20) -> str:
        """A new ticket id from ``make`` that no other ticket was given, reserved for
        ``session_id``: an id already reserved (by this process or another) is drawn again."""
        now = datetime.now(timezone.utc)
        for _ in range(tries):
            ticket_id = make()
            with self._db.transaction() as conn:
                got = conn.execute(
                    "INSERT OR IGNORE INTO ticket_ids(ticket_id, session_id, reserved_at) VALUES (?, ?, ?) RETURNING ticket_id",
                    (ticket_id, session_id, now.isoformat()),
                ).fetchone()
                if got is not None:
                    conn.execute("DELETE FROM ticket_ids WHERE reserved_at < ?", ((now - _KEEP_RESERVATIONS).isoformat(),))
                    return ticket_id
        raise RuntimeError(f"no free ticket id after {tries} draws")

    # -- requests queued while the workflow engine is away -------------------------

    def queue(self, request: TicketRequest) -> None:
        payload = _JSON.to_payload(request)
        assert payload is not None
        with self._db.transaction() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO queued_tickets(ticket_id, request, queued_at) VALUES (?, ?, ?)",
                (request.ticket_id, payload.data.decode("utf-8"), datetime.now(timezone.utc).isoformat()),
            )

    def pending(self) -> list[TicketRequest]:
        """The queued requests, oldest first."""
        with self._db.connection() as conn:
            rows = conn.execute("SELECT request FROM queued_tickets ORDER BY queued_at, ticket_id").fetchall()
        return [_JSON.from_payload(Payload(metadata={"encoding": b"json/plain"}, data=r[0].encode("utf-8")), TicketRequest) for r in rows]

    def attempts(self, ticket_id: str) -> tuple[int, str] | None:
        """(failed attempts, the last error) of a queued ticket; None when it is not queued."""
        with self._db.connection() as conn:
            row = conn.execute("SELECT attempts, last_error FROM queued_tickets WHERE ticket_id = ?", (ticket_id,)).fetchone()
        return (int(row[0]), str(row[1])) if row is not None else None

    def failed(self, ticket_id: str, error: str) -> None:
        with self._db.transaction() as conn:
            conn.execute(
                "UPDATE queued_tickets SET attempts = attempts + 1, last_error = ? WHERE ticket_id = ?", (error[:500], ticket_id)
            )

    def opened(self, ticket_id: str) -> None:
        with self._db.transaction() as conn:
            conn.execute("DELETE FROM queued_tickets WHERE ticket_id = ?", (ticket_id,))


def open_outbox(cfg) -> TicketOutbox:  # noqa: ANN001 - KefuConfig
    """The configured outbox: PostgreSQL when ``state.postgres_dsn`` is set, else beside the sessions in the home."""
    return TicketOutbox(cfg.sessions_path, dsn=cfg.state.postgres_dsn)
