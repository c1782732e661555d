"""Where kefu keeps its state: a SQLite file (the embedded default) or PostgreSQL, when
``state.postgres_dsn`` (``KEFU_STATE_POSTGRES_DSN``) is set, so that several Dialog and
worker processes share it.

The stores (sessions, tickets, the ticket outbox, the store adapter's documents) write
their statements once, in SQLite's dialect; ``StateDB`` runs them on either database,
and on PostgreSQL ``_Postgres`` translates the few that differ:

* ``?`` parameters (and a literal ``%``, doubled for psycopg); no ``?`` may stand
  inside a string literal;
* ``INSERT OR IGNORE`` -> ``INSERT ... ON CONFLICT DO NOTHING`` (``RETURNING`` kept);
* two-argument ``MAX(a, b)`` / ``MIN(a, b)`` -> ``GREATEST`` / ``LEAST``;
* ``json_extract(col, '$.a.b')`` -> ``(col::jsonb #>> '{a,b}')`` (documents stay TEXT,
  so their keys keep their order);
* in ``CREATE TABLE`` / ``ALTER TABLE``: ``INTEGER PRIMARY KEY AUTOINCREMENT`` ->
  ``BIGSERIAL PRIMARY KEY``, ``INTEGER`` -> ``BIGINT`` and ``REAL`` -> ``DOUBLE
  PRECISION`` (SQLite's are 64-bit).

Transactions are real on both: ``transaction()`` is ``BEGIN IMMEDIATE`` ... ``COMMIT``
on SQLite (one writer at a time, rolled back on any error) and a PostgreSQL transaction
(rolled back on any error); with ``lock`` it also takes a PostgreSQL advisory lock of
that name for the transaction, which serializes those writers across processes as
``BEGIN IMMEDIATE`` does on SQLite (for read-modify-write of JSON documents).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import re
import sqlite3
import threading
from pathlib import Path
from typing import Any, Iterator

Connection = Any  # sqlite3.Connection or _Postgres: execute(sql, params), executemany(sql, rows)



@contextlib.contextmanager
def sqlite_snapshot(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """Reads on ``conn`` (autocommit SQLite) that see one state of the file; nothing written."""
    conn.execute("BEGIN")
    try:
        yield conn
    finally:
        if conn.in_transaction:
            conn.execute("ROLLBACK")

class StateDB:
    """A SQLite file at ``path``, or PostgreSQL at ``dsn`` when one is given.

    ``keep_connections``: each thread keeps one connection open (the default). A store
    whose SQLite file may be replaced on disk (``os.replace``) passes False, to open one
    per call; on PostgreSQL the connections are always kept, one per thread and process.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *, dsn: str = "", keep_connections: bool = True) -> None:
        self.dsn = dsn
        self.path = Path(path) if path is not None and not dsn else None
        if not dsn:
            if path is None:
                raise ValueError("a state database needs a SQLite path or a PostgreSQL dsn")
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._keep = keep_connections or bool(dsn)
        self._local = threading.local()
        self._created: set[str] = set()
        self._create_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"StateDB({'PostgreSQL ' + _safe_dsn(self.dsn) if self.dsn else str(self.path)})"

    # -- connections ------------------------------------------------------------------

    @contextlib.contextmanager
    def connection(self) -> Iterator[Connection]:
        """A connection in autocommit mode: each statement is its own transaction."""
        if self._keep:
            yield self._kept()
            return
        conn = self._open()
        try:
            yield conn
        finally:
            conn.close()

    @contextlib.contextmanager
    def transaction(self, *, lock: str = "") -> Iterator[Connection]:
        """One write transaction: committed when the block ends, rolled back on any error
        (nothing half-written). SQLite takes the write lock at once (``BEGIN IMMEDIATE``);
        PostgreSQL also takes the advisory lock ``lock`` when given."""
        with self.connection() as conn:
            if self.dsn:
                with conn.transaction():
                    if lock:
                        conn.execute("SELECT pg_advisory_xact_lock(?)", (_lock_key(lock),))
                    yield conn
                return
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[Connection]:
        """Reads that see one consistent state of the database; writes nothing."""
        with self.connection() as conn:
            if self.dsn:
                outermost = not conn.in_transaction
                with conn.transaction(force_rollback=True):
                    if outermost:
                        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                    yield conn
                return
            with sqlite_snapshot(conn):
                yield conn

    def create(self, schema: str, *, columns: dict[str, dict[str, str]] | None = None, name: str = "") -> None:
        """Create ``schema``'s tables and indexes (``IF NOT EXISTS`` statements separated by
        ``;``) and add the ``columns`` ({table: {column: declaration}}) a database written
        before them lacks, keeping its rows. With ``name``, done once per process. On
        PostgreSQL in one transaction under an advisory lock, so processes starting
        together do not race on the catalogue."""
        if name and name in self._created:
            return
        with self._create_lock:
            if name and name in self._created:
                return
            with self.transaction(lock="kefu-schema") as conn:
                for statement in schema.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                for table, wanted in (columns or {}).items():
                    if self.dsn:
                        for column, decl in wanted.items():
                            conn.execute(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column} {decl}")
                        continue
                    have = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
                    for column, decl in wanted.items():
                        if column not in have:
                            conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")
            if name:
                self._created.add(name)

    # -- plumbing ---------------------------------------------------------------------

    def _kept(self) -> Connection:
        conn = getattr(self._local, "conn", None)
        # A connection made before a fork belongs to the parent; a broken one (the server
        # restarted) is replaced on the next call.
        if conn is not None and (getattr(self._local, "pid", None) != os.getpid() or getattr(conn, "broken", False)):
            conn = None
        if conn is None:
            conn = self._open()
            self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    def _open(self) -> Connection:
        if self.dsn:
            return _Postgres(self.dsn)
        # Autocommit (isolation_level=None): transactions are begun explicitly.
        conn = sqlite3.connect(self.path, timeout=10, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA foreign_keys=ON")
        return conn


_SHARED: dict[str, StateDB] = {}
_SHARED_LOCK = threading.Lock()


def shared(dsn: str) -> StateDB:
    """The process's ``StateDB`` for a PostgreSQL ``dsn``: every store on it shares one
    connection per thread, and creates its tables once."""
    with _SHARED_LOCK:
        db = _SHARED.get(dsn)
        if db is None:
            db = _SHARED[dsn] = StateDB(dsn=dsn)
        return db


def state_db(path: str | os.PathLike[str], dsn: str = "", *, keep_connections: bool = True) -> StateDB:
    """PostgreSQL when ``dsn`` is given (the process's shared one), else the SQLite file at ``path``."""
    return shared(dsn) if dsn else StateDB(path, keep_connections=keep_connections)


def _lock_key(name: str) -> int:
    return int.from_bytes(hashlib.blake2b(name.encode("utf-8"), digest_size=8).digest(), "big", signed=True)


def _safe_dsn(dsn: str) -> str:
    """The dsn without its password, for messages."""
    return re.sub(r"(://[^:/@]*):[^@]*@", r"\1:***@", dsn)


# --------------------------------------------------------------------------- PostgreSQL

_INSERT_OR_IGNORE = re.compile(r"^\s*INSERT\s+OR\s+IGNORE\s+", re.IGNORECASE)
_RETURNING = re.compile(r"\sRETURNING\s", re.IGNORECASE)
_TWO_ARG = re.compile(r"\b(MAX|MIN)\(\s*([\w.]+)\s*,", re.IGNORECASE)
_JSON_EXTRACT = re.compile(r"json_extract\(\s*([\w.]+)\s*,\s*'\$\.([\w.]+)'\s*\)", re.IGNORECASE)
_DDL = re.compile(r"^\s*(CREATE\s+TABLE|ALTER\s+TABLE)\b", re.IGNORECASE)


@functools.lru_cache(maxsize=512)
def translate(statement: str) -> str:
    """A statement in kefu's SQLite dialect as PostgreSQL takes it (psycopg placeholders)."""
    sql = statement.replace("%", "%%")
    if _DDL.match(sql):
        sql = re.sub(r"\bINTEGER\s+PRIMARY\s+KEY\s+AUTOINCREMENT\b", "BIGSERIAL PRIMARY KEY", sql, flags=re.IGNORECASE)
        sql = re.sub(r"\bINTEGER\b", "BIGINT", sql, flags=re.IGNORECASE)
        sql = re.sub(r"\bREAL\b", "DOUBLE PRECISION", sql, flags=re.IGNORECASE)
    if _INSERT_OR_IGNORE.match(sql):
        sql = _INSERT_OR_IGNORE.sub("INSERT ", sql, count=1)
        found = _RETURNING.search(sql)
        if found:
            sql = sql[: found.start()] + " ON CONFLICT DO NOTHING" + sql[found.start():]
        else:
            sql = sql.rstrip() + " ON CONFLICT DO NOTHING"
    sql = _TWO_ARG.sub(lambda m: ("GREATEST(" if m.group(1).upper() == "MAX" else "LEAST(") + m.group(2) + ",", sql)
    sql = _JSON_EXTRACT.sub(lambda m: f"({m.group(1)}::jsonb #>> '{{{','.join(m.group(2).split('.'))}}}')", sql)
    return sql.replace("?", "%s")


class _Postgres:
    """A psycopg connection in autocommit mode that takes kefu's SQLite-dialect statements
    (see ``translate``); ``transaction()`` is psycopg's (nested: a savepoint)."""

    def __init__(self, dsn: str) -> None:
        import psycopg

        self._conn = psycopg.connect(dsn, autocommit=True)

    def execute(self, statement: str, params: tuple | list = ()):  # noqa: ANN201 - psycopg cursor
        return self._conn.execute(translate(statement), tuple(params))

    def executemany(self, statement: str, rows) -> None:  # noqa: ANN001 - iterable of tuples
        with self._conn.cursor() as cursor:
            cursor.executemany(translate(statement), [tuple(r) for r in rows])

    def transaction(self, *, force_rollback: bool = False):  # noqa: ANN201 - psycopg Transaction
        return self._conn.transaction(force_rollback=force_rollback)

    @property
    def in_transaction(self) -> bool:
        from psycopg.pq import TransactionStatus

        return self._conn.info.transaction_status != TransactionStatus.IDLE

    @property
    def broken(self) -> bool:
        return self._conn.broken or self._conn.closed

    def close(self) -> None:
        self._conn.close()
