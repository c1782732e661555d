"""Conversation sessions on SQLite, or PostgreSQL when ``state.postgres_dsn`` is set
(services/state_db.py): one row per session, one per completed turn, and a log of
messages for the customer that are not replies to a turn.

A turn is written in one transaction after it completes, so a cancelled or
failed turn leaves no half-written record. While a human agent holds a session
(``handoff == "agent"``, ``held_by`` naming them), the agent's replies go to the
message log; so do kefu's own notices from workflows (a refund went through),
added idempotently on a key because Temporal retries activities.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from services.state_db import state_db

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
  session_id TEXT PRIMARY KEY,
  customer_id TEXT NOT NULL DEFAULT '',
  channel TEXT NOT NULL DEFAULT '',
  created_at TEXT NOT NULL,
  handoff TEXT NOT NULL DEFAULT 'bot',
  state TEXT NOT NULL DEFAULT '',
  held_by TEXT NOT NULL DEFAULT '',
  agent_note TEXT NOT NULL DEFAULT '',
  delivered_through INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS turns (
  session_id TEXT NOT NULL REFERENCES sessions(session_id),
  turn_index INTEGER NOT NULL,
  customer_text TEXT NOT NULL,
  reply_text TEXT NOT NULL,
  intent TEXT NOT NULL,
  actions TEXT NOT NULL,
  citations TEXT NOT NULL,
  created_at TEXT NOT NULL,
  nlu TEXT NOT NULL DEFAULT '{}',
  PRIMARY KEY (session_id, turn_index)
);
CREATE TABLE IF NOT EXISTS messages (
  message_id INTEGER PRIMARY KEY AUTOINCREMENT,
  session_id TEXT NOT NULL REFERENCES sessions(session_id),
  author TEXT NOT NULL,
  text TEXT NOT NULL,
  created_at TEXT NOT NULL,
  key TEXT
);
CREATE INDEX IF NOT EXISTS messages_by_session ON messages(session_id, message_id);
CREATE UNIQUE INDEX IF NOT EXISTS messages_by_key ON messages(session_id, key) WHERE key IS NOT NULL;
"""

# Columns added to sessions after they shipped: added in place, sessions kept.
_SESSION_COLUMNS = {
    "state": "TEXT NOT NULL DEFAULT ''",  # task flows
    "held_by": "TEXT NOT NULL DEFAULT ''",  # the agent holding the session
    "agent_note": "TEXT NOT NULL DEFAULT ''",  # the note of the last hand-back or resolution
    "delivered_through": "INTEGER NOT NULL DEFAULT 0",  # last message id delivered in a turn's reply
}


@dataclass
class StoredAction:
    type: str  # answer | abstain | smalltalk | create_ticket | handoff ...
    ticket_id: str = ""
    workflow_id: str = ""
    detail: dict[str, str] = field(default_factory=dict)


@dataclass
class StoredCitation:
    doc_id: str
    title: str
    chunk_id: str
    snippet: str
    score: float
    kb_version: int


@dataclass
class TurnRecord:
    index: int
    customer_text: str  # PII-masked
    reply_text: str
    intent: str
    actions: list[StoredAction]
    citations: list[StoredCitation]
    created_at: str
    # What NLU read in the customer's message: dissatisfaction in [0, 1] (Dialog counts
    # dissatisfied turns in a row) and screening flags such as "prompt_injection".
    dissatisfaction: float = 0.0
    flags: list[str] = field(default_factory=list)


@dataclass
class SessionMessage:
    """A message for the customer outside the turns: a human agent's reply
    (``author`` "agent:<id>") or a notice from kefu (``author`` "kefu")."""

    id: int
    author: str
    text: str
    created_at: str


@dataclass
class SessionRecord:
    session_id: str
    customer_id: str
    channel: str
    created_at: str
    handoff: str  # bot | requested | agent
    turns: list[TurnRecord] = field(default_factory=list)
    # The task flow's state (services/dialog/flows/state.py) as JSON; "" before any.
    state: str = ""
    # The agent holding the session while handoff is "agent"; "" otherwise.
    held_by: str = ""
    # The note the last agent left on handing back or resolving.
    agent_note: str = ""
    # The last message id a turn's reply carried to the customer.
    delivered_through: int = 0
    messages: list[SessionMessage] = field(default_factory=list)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


class SessionStore:
    """Sessions in a SQLite file (the embedded default), or in PostgreSQL when ``dsn`` is
    given (``postgresql://...``), where several Dialog processes see the same sessions.
    The statements are written once, in SQLite's dialect (services/state_db.py runs them
    on either)."""

    def __init__(self, path: Path | None = None, *, dsn: str = "") -> None:
        if not dsn and path is None:
            raise ValueError("SessionStore needs a SQLite path or a PostgreSQL dsn")
        self._db = state_db(path, dsn)
        self._db.create(
            _SCHEMA, columns={"turns": {"nlu": "TEXT NOT NULL DEFAULT '{}'"}, "sessions": _SESSION_COLUMNS}, name="sessions"
        )

    def create(self, *, customer_id: str = "", channel: str = "") -> SessionRecord:
        record = SessionRecord(uuid.uuid4().hex, customer_id, channel, _now(), "bot")
        with self._db.transaction() as conn:
            conn.execute(
                "INSERT INTO sessions(session_id, customer_id, channel, created_at, handoff) VALUES(?,?,?,?,?)",
                (record.session_id, customer_id, channel, record.created_at, record.handoff),
            )
        return record

    def get(self, session_id: str) -> SessionRecord | None:
        with self._db.connection() as conn:
            row = conn.execute(
                "SELECT session_id, customer_id, channel, created_at, handoff, state, held_by, agent_note, delivered_through "
                "FROM sessions WHERE session_id=?",
                (session_id,),
            ).fetchone()
        if row is None:
            return None
        record = SessionRecord(*row[:5], state=row[5], held_by=row[6], agent_note=row[7], delivered_through=row[8])
        record.turns = self.turns_after(session_id, 0)
        record.messages = self.messages(session_id)
        return record

    def turns_after(self, session_id: str, after_index: int) -> list[TurnRecord]:
        """The session's turns with an index above ``after_index``, in order."""
        with self._db.connection() as conn:
            rows = conn.execute(
                "SELECT turn_index, customer_text, reply_text, intent, actions, citations, created_at, nlu "
                "FROM turns WHERE session_id=? AND turn_index>? ORDER BY turn_index",
                (session_id, after_index),
            ).fetchall()
        return [_turn(t) for t in rows]

    def append_turn(
        self, session_id: str, turn: TurnRecord, *, handoff: str | None = None, state: str | None = None, delivered_through: int = 0
    ) -> None:
        """Store a completed turn, and the session's new handoff and flow state, and the
        last message its reply delivered, in one transaction."""
        with self._db.transaction() as conn:
            conn.execute(
                "INSERT INTO turns(session_id, turn_index, customer_text, reply_text, intent, actions, citations, created_at, nlu) "
                "VALUES(?,?,?,?,?,?,?,?,?)",
                (
                    session_id, turn.index, turn.customer_text, turn.reply_text, turn.intent,
                    json.dumps([asdict(a) for a in turn.actions], ensure_ascii=False),
                    json.dumps([asdict(c) for c in turn.citations], ensure_ascii=False),
                    turn.created_at,
                    json.dumps({"dissatisfaction": round(turn.dissatisfaction, 4), "flags": turn.flags}, ensure_ascii=False),
                ),
            )
            if handoff:
                conn.execute("UPDATE sessions SET handoff=? WHERE session_id=?", (handoff, session_id))
            if state is not None:
                conn.execute("UPDATE sessions SET state=? WHERE session_id=?", (state, session_id))
            if delivered_through:
                conn.execute(
                    "UPDATE sessions SET delivered_through=MAX(delivered_through, ?) WHERE session_id=?", (delivered_through, session_id)
                )

    # -- messages outside the turns ---------------------------------------------------

    def add_message(self, session_id: str, author: str, text: str, *, key: str = "") -> int:
        """Add a message for the customer; returns its id. With a ``key``, adding again
        (a retried activity) returns the first message's id and adds nothing; keys are
        unique per session. ``LookupError`` for an unknown session."""
        if not author.strip() or not text.strip():
            raise ValueError("a session message needs an author and a text")
        with self._db.transaction() as conn:
            if conn.execute("SELECT 1 FROM sessions WHERE session_id=?", (session_id,)).fetchone() is None:
                raise LookupError(f"session {session_id!r} does not exist")
            cursor = conn.execute(
                "INSERT OR IGNORE INTO messages(session_id, author, text, created_at, key) VALUES(?,?,?,?,?) RETURNING message_id",
                (session_id, author, text, _now(), key or None),
            )
            added = cursor.fetchone()
            if added is not None:
                return int(added[0])
            row = conn.execute("SELECT message_id FROM messages WHERE session_id=? AND key=?", (session_id, key)).fetchone()
            return int(row[0])

    def messages(self, session_id: str, after_id: int = 0) -> list[SessionMessage]:
        """The session's messages with an id above ``after_id``, oldest first."""
        with self._db.connection() as conn:
            rows = conn.execute(
                "SELECT message_id, author, text, created_at FROM messages WHERE session_id=? AND message_id>? ORDER BY message_id",
                (session_id, after_id),
            ).fetchall()
        return [SessionMessage(*row) for row in rows]

    # -- a human agent holding the session ------------------------------------------------

    def hold(self, session_id: str, agent: str) -> str:
        """Hand the session to ``agent`` (handoff "agent") unless another agent holds it;
        returns who holds it afterwards ("" for an unknown session). One statement, so
        two agents claiming at once cannot both win."""
        with self._db.transaction() as conn:
            conn.execute(
                "UPDATE sessions SET handoff='agent', held_by=? WHERE session_id=? AND held_by IN ('', ?)", (agent, session_id, agent)
            )
            row = conn.execute("SELECT held_by FROM sessions WHERE session_id=?", (session_id,)).fetchone()
        return row[0] if row else ""

    def release(self, session_id: str, agent: str, *, handoff: str = "bot", note: str | None = None) -> bool:
        """Take the session from ``agent`` ("" when nobody holds it) and set ``handoff``,
        keeping the agent's ``note``; False when ``agent`` was not the holder."""
        with self._db.transaction() as conn:
            cursor = conn.execute(
                "UPDATE sessions SET handoff=?, held_by='', agent_note=COALESCE(?, agent_note) WHERE session_id=? AND held_by=?",
                (handoff, note, session_id, agent),
            )
        return cursor.rowcount == 1

    def holders(self, session_ids: list[str]) -> dict[str, tuple[str, str]]:
        """``{session_id: (handoff, held_by)}`` for those of ``session_ids`` that exist."""
        out: dict[str, tuple[str, str]] = {}
        with self._db.connection() as conn:
            for start in range(0, len(session_ids), 500):
                chunk = session_ids[start:start + 500]
                rows = conn.execute(
                    f"SELECT session_id, handoff, held_by FROM sessions WHERE session_id IN ({','.join('?' * len(chunk))})", chunk
                ).fetchall()
                out.update({row[0]: (row[1], row[2]) for row in rows})
        return out


def _turn(t: tuple) -> TurnRecord:
    nlu = json.loads(t[7] or "{}")
    return TurnRecord(
        index=t[0], customer_text=t[1], reply_text=t[2], intent=t[3],
        actions=[StoredAction(**a) for a in json.loads(t[4])],
        citations=[StoredCitation(**c) for c in json.loads(t[5])],
        created_at=t[6],
        dissatisfaction=float(nlu.get("dissatisfaction", 0.0)),
        flags=list(nlu.get("flags", [])),
    )


def open_sessions(cfg) -> SessionStore:  # noqa: ANN001 - KefuConfig (imported lazily by callers)
    """The configured session store: PostgreSQL when ``state.postgres_dsn`` is set, else SQLite in the home."""
    return SessionStore(cfg.sessions_path, dsn=cfg.state.postgres_dsn)
