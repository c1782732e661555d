"""Conversation sessions on SQLite: one row per session, one per completed turn.

A turn is written in one transaction after it completes, so a cancelled or
failed turn leaves no half-written record.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
  session_id TEXT PRIMARY KEY,
  customer_id TEXT NOT NULL DEFAULT '',
  channel TEXT NOT NULL DEFAULT '',
  created_at TEXT NOT NULL,
  handoff TEXT NOT NULL DEFAULT 'bot',
  state TEXT NOT NULL DEFAULT ''
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
"""


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
class SessionRecord:
    session_id: str
    customer_id: str
    channel: str
    created_at: str
    handoff: str  # bot | requested | agent
    turns: list[TurnRecord] = field(default_factory=list)
    # The task flow's state (services/dialog/flows/state.py) as JSON; "" before any.
    state: str = ""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


class SessionStore:
    def __init__(self, path: Path) -> None:
        self._path = Path(path)
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        with self._conn() as conn:
            conn.executescript(_SCHEMA)
            columns = {row[1] for row in conn.execute("PRAGMA table_info(turns)")}
            if "nlu" not in columns:  # a database written before turns kept NLU's reading
                conn.execute("ALTER TABLE turns ADD COLUMN nlu TEXT NOT NULL DEFAULT '{}'")
            if "state" not in {row[1] for row in conn.execute("PRAGMA table_info(sessions)")}:  # before task flows
                conn.execute("ALTER TABLE sessions ADD COLUMN state TEXT NOT NULL DEFAULT ''")

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self._path, timeout=10)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA foreign_keys=ON")
            self._local.conn = conn
        return conn

    def create(self, *, customer_id: str = "", channel: str = "") -> SessionRecord:
        record = SessionRecord(uuid.uuid4().hex, customer_id, channel, _now(), "bot")
        with self._conn() as conn:
            conn.execute(
                "INSERT INTO sessions(session_id, customer_id, channel, created_at, handoff) VALUES(?,?,?,?,?)",
                (record.session_id, customer_id, channel, record.created_at, record.handoff),
            )
        return record

    def get(self, session_id: str) -> SessionRecord | None:
        conn = self._conn()
        row = conn.execute(
            "SELECT session_id, customer_id, channel, created_at, handoff, state FROM sessions WHERE session_id=?", (session_id,)
        ).fetchone()
        if row is None:
            return None
        record = SessionRecord(*row[:5], state=row[5])
        for t in conn.execute(
            "SELECT turn_index, customer_text, reply_text, intent, actions, citations, created_at, nlu "
            "FROM turns WHERE session_id=? ORDER BY turn_index",
            (session_id,),
        ):
            nlu = json.loads(t[7] or "{}")
            record.turns.append(
                TurnRecord(
                    index=t[0], customer_text=t[1], reply_text=t[2], intent=t[3],
                    actions=[StoredAction(**a) for a in json.loads(t[4])],
                    citations=[StoredCitation(**c) for c in json.loads(t[5])],
                    created_at=t[6],
                    dissatisfaction=float(nlu.get("dissatisfaction", 0.0)),
                    flags=list(nlu.get("flags", [])),
                )
            )
        return record

    def append_turn(self, session_id: str, turn: TurnRecord, *, handoff: str | None = None, state: str | None = None) -> None:
        """Store a completed turn, and the session's new handoff and flow state, in one transaction."""
        with self._conn() as conn:
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
