"""Tickets that could not be opened yet: while the workflow engine is away, a customer's
request for a person is not lost. The ticket keeps the id the customer was given; the
request waits here (beside the sessions, in one SQLite file) and TicketDesk opens it once
Temporal is back, under the same workflow id, so a retry never opens it twice."""

from __future__ import annotations

import sqlite3
import threading
from datetime import datetime, timezone
from pathlib import Path

from temporalio.api.common.v1 import Payload
from temporalio.converter import JSONPlainPayloadConverter

from workflows.tickets.types import TicketRequest

_SCHEMA = """
CREATE TABLE IF NOT EXISTS queued_tickets (
  ticket_id TEXT PRIMARY KEY,
  request TEXT NOT NULL,
  queued_at TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  last_error TEXT NOT NULL DEFAULT ''
)
"""
_JSON = JSONPlainPayloadConverter()


class TicketOutbox:
    def __init__(self, path: Path) -> None:
        self._path = Path(path)
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        with self._conn() as conn:
            conn.execute(_SCHEMA)

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self._path, timeout=10)
            conn.execute("PRAGMA journal_mode=WAL")
            self._local.conn = conn
        return conn

    def queue(self, request: TicketRequest) -> None:
        payload = _JSON.to_payload(request)
        assert payload is not None
        with self._conn() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO queued_tickets(ticket_id, request, queued_at) VALUES (?, ?, ?)",
                (request.ticket_id, payload.data.decode("utf-8"), datetime.now(timezone.utc).isoformat()),
            )

    def pending(self) -> list[TicketRequest]:
        rows = self._conn().execute("SELECT request FROM queued_tickets ORDER BY queued_at").fetchall()
        return [_JSON.from_payload(Payload(metadata={"encoding": b"json/plain"}, data=r[0].encode("utf-8")), TicketRequest) for r in rows]

    def failed(self, ticket_id: str, error: str) -> None:
        with self._conn() as conn:
            conn.execute(
                "UPDATE queued_tickets SET attempts = attempts + 1, last_error = ? WHERE ticket_id = ?", (error[:500], ticket_id)
            )

    def opened(self, ticket_id: str) -> None:
        with self._conn() as conn:
            conn.execute("DELETE FROM queued_tickets WHERE ticket_id = ?", (ticket_id,))
