"""The demo ERP: customers, products, orders and tickets of the kefu demo store, on SQLite
(tickets in PostgreSQL when ``state.postgres_dsn`` is set, see ``DemoStore``).

It stands in for a company's ERP and ticket system behind the same small surface an
adapter to a real one would offer (look up an order, a customer's orders, create a
ticket). Standard library only (psycopg for tickets in PostgreSQL).

* ``DemoStore.seed`` fills a database with generated demo data. The data depend only
  on the seed and the requested sizes (``random.Random(seed)``, a fixed "now" of
  2026-11-01 12:00 China time, no wall clock), so two seeds with the same arguments
  give byte-identical files. The database is built in a temporary file next to the
  target and moved into place with ``os.replace``: a crash never leaves half a database.
* Every call opens its own connection (``timeout=10``, WAL journal), so one store can
  be used from several threads and processes at once; SQLite serializes the writers.
* ``create_ticket`` is idempotent on ``ticket_id``, because Temporal retries
  activities: the second call returns the row the first one wrote. Every ticket write
  is one transaction, on SQLite and on PostgreSQL alike.

Names, phone numbers and addresses are random combinations made up for the demo.
Amounts are integers in CNY cents (fen).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import random
import sqlite3
import tempfile
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator

from services.state_db import state_db

SCHEMA_VERSION = "1"

# "Now" for the generated history: orders are placed in the 60 days before it.
CHINA_TZ = timezone(timedelta(hours=8))
BASE_TIME = datetime(2026, 11, 1, 12, 0, 0, tzinfo=CHINA_TZ)
HISTORY_DAYS = 60

# Shipping rules of the demo store, the same as in its FAQ (faq.yaml: shipping-fees-*).
SHIPPING_FEE_CENTS = 800
FREE_SHIPPING_CENTS = 9900
REMOTE_SHIPPING_FEE_CENTS = 1500
REMOTE_FREE_SHIPPING_CENTS = 19900

ORDER_STATUSES = ("pending_payment", "paid", "shipped", "delivered", "completed", "cancelled", "refunded")
TICKET_STATUSES = ("open", "pending", "escalated", "resolved", "closed")

# Courier code -> (zh name, en name). Orders store the code.
CARRIERS = {
    "SF": ("顺丰速运", "SF Express"),
    "ZTO": ("中通快递", "ZTO Express"),
    "YTO": ("圆通速递", "YTO Express"),
    "JD": ("京东物流", "JD Logistics"),
}
PAYMENT_METHODS = ("alipay", "wechat_pay", "unionpay", "credit_card", "balance", "cod")

TABLES = ("meta", "customers", "products", "orders", "order_items", "tickets")

_CATALOGUE_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS customers (
    customer_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    phone TEXT NOT NULL,
    email TEXT NOT NULL,
    language TEXT NOT NULL,
    city TEXT NOT NULL,
    address TEXT NOT NULL,
    remote_area INTEGER NOT NULL DEFAULT 0,
    level TEXT NOT NULL,
    points INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS products (
    product_id TEXT PRIMARY KEY,
    sku TEXT NOT NULL UNIQUE,
    name_zh TEXT NOT NULL,
    name_en TEXT NOT NULL,
    category TEXT NOT NULL,
    price_cents INTEGER NOT NULL,
    stock INTEGER NOT NULL,
    warranty_months INTEGER NOT NULL,
    returnable_7day INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS orders (
    order_id TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL REFERENCES customers(customer_id),
    status TEXT NOT NULL,
    payment_method TEXT NOT NULL,
    created_at TEXT NOT NULL,
    paid_at TEXT,
    shipped_at TEXT,
    delivered_at TEXT,
    carrier TEXT,
    tracking_no TEXT,
    shipping_address TEXT NOT NULL,
    items_cents INTEGER NOT NULL,
    shipping_cents INTEGER NOT NULL,
    total_cents INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS orders_by_customer ON orders(customer_id, created_at);
CREATE TABLE IF NOT EXISTS order_items (
    order_id TEXT NOT NULL REFERENCES orders(order_id),
    line_no INTEGER NOT NULL,
    product_id TEXT NOT NULL REFERENCES products(product_id),
    quantity INTEGER NOT NULL,
    unit_price_cents INTEGER NOT NULL,
    PRIMARY KEY (order_id, line_no)
);
"""
# Tickets: in the same file, or in PostgreSQL when state.postgres_dsn is set.
_TICKETS_SCHEMA = """CREATE TABLE IF NOT EXISTS tickets (
    ticket_id TEXT PRIMARY KEY,
    session_id TEXT,
    customer_id TEXT NULL,
    category TEXT,
    summary TEXT,
    language TEXT,
    status TEXT DEFAULT 'open',
    created_at TEXT,
    priority TEXT DEFAULT 'normal',
    assignee TEXT DEFAULT '',
    note TEXT DEFAULT '',
    updated_at TEXT DEFAULT '',
    context TEXT DEFAULT ''
);
CREATE INDEX IF NOT EXISTS tickets_by_session ON tickets(session_id);
"""
_SCHEMA = _CATALOGUE_SCHEMA + _TICKETS_SCHEMA

# Primary-key order of every table, for a stable content digest.
_ORDER_BY = {
    "meta": "key",
    "customers": "customer_id",
    "products": "product_id",
    "orders": "order_id",
    "order_items": "order_id, line_no",
    "tickets": "ticket_id",
}


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class Customer:
    customer_id: str
    name: str
    phone: str
    email: str
    language: str  # zh | en: the language the customer prefers
    city: str
    address: str
    remote_area: bool
    level: str  # regular | silver | gold | diamond
    points: int
    created_at: str


@dataclass(frozen=True)
class Product:
    product_id: str
    sku: str
    name_zh: str
    name_en: str
    category: str
    price_cents: int
    stock: int
    warranty_months: int
    returnable_7day: bool


@dataclass(frozen=True)
class OrderItem:
    line_no: int
    product_id: str
    name_zh: str
    name_en: str
    quantity: int
    unit_price_cents: int

    @property
    def amount_cents(self) -> int:
        return self.quantity * self.unit_price_cents


@dataclass(frozen=True)
class Order:
    order_id: str
    customer_id: str
    status: str  # one of ORDER_STATUSES
    payment_method: str
    created_at: str
    paid_at: str | None
    shipped_at: str | None
    delivered_at: str | None
    carrier: str | None  # a key of CARRIERS
    tracking_no: str | None
    shipping_address: str
    items_cents: int
    shipping_cents: int
    total_cents: int
    items: list[OrderItem] = field(default_factory=list)


@dataclass(frozen=True)
class NewTicket:
    """A ticket to create. ``ticket_id`` is chosen by the caller, which makes creation
    idempotent; ``created_at`` too, so that a workflow stays deterministic."""

    ticket_id: str
    session_id: str
    category: str
    summary: str
    language: str
    customer_id: str | None = None
    created_at: str = field(kw_only=True)
    # The context packet for the agent (workflows.tickets.types.TicketContext) as JSON.
    context: str = field(default="", kw_only=True)


@dataclass(frozen=True)
class Ticket:
    ticket_id: str
    session_id: str
    customer_id: str | None
    category: str
    summary: str
    language: str
    status: str
    created_at: str
    # Kept in step with the ticket's workflow (SLA escalation, agent, resolution).
    priority: str = "normal"
    assignee: str = ""
    note: str = ""
    updated_at: str = ""
    # Written once at opening: the context packet for the agent, JSON ("" before it existed).
    context: str = ""


# --------------------------------------------------------------------------- the store


class DemoStore:
    """The demo ERP in one SQLite file; with ``dsn`` (``state.postgres_dsn``) its tickets
    live in PostgreSQL instead, shared by every Dialog and worker process, while the
    catalogue (customers, products, orders), generated from the seed, stays in the file.
    Cheap to construct; holds no open SQLite connection."""

    def __init__(self, path: str | os.PathLike[str], *, dsn: str = "") -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as conn:
            _create_schema(conn)
        # The file may be replaced by a new seed (os.replace): a connection per call.
        self._tickets = state_db(self.path, dsn, keep_connections=False)
        if dsn:
            self._tickets.create(_TICKETS_SCHEMA, columns={"tickets": _TICKET_COLUMNS}, name="tickets")

    # -- seeding --------------------------------------------------------------

    @classmethod
    def seed(
        cls,
        path: str | os.PathLike[str],
        *,
        seed: int = 7,
        customers: int = 50,
        products: int = 40,
        orders: int = 200,
    ) -> DemoStore:
        """Create the database at ``path`` filled with demo data, unless it already holds
        exactly this data (same seed and sizes, recorded in ``meta``); then do nothing.

        A database seeded with other arguments is replaced, tickets included (tickets in
        PostgreSQL are not touched): do that only while no process is using it. A file that is not a kefu demo store is never
        overwritten (``ValueError``).
        """
        from services.demo.erp_data import fill_demo_data

        if customers < 1 or products < 3 or orders < 0:
            raise ValueError("need at least 1 customer, 3 products and 0 orders")
        if orders > 99_899:
            raise ValueError("at most 99,899 orders fit the order-number format")
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        wanted = _seed_meta(seed, customers, products, orders)
        # One seeder at a time per database, across processes.
        with _file_lock(target.with_name(target.name + ".lock")):
            existing = _read_meta(target)
            if existing is not None and all(existing.get(k) == v for k, v in wanted.items()):
                return cls(target)
            fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
            os.close(fd)
            tmp = Path(tmp_name)
            try:
                conn = sqlite3.connect(tmp, isolation_level=None)
                try:
                    conn.execute("PRAGMA journal_mode=DELETE")
                    conn.execute("BEGIN")
                    _create_schema(conn)
                    fill_demo_data(conn, random.Random(seed), customers, products, orders)
                    conn.executemany("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", sorted(wanted.items()))
                    conn.execute("COMMIT")
                    # Persisted in the file header: later connections find WAL already on.
                    conn.execute("PRAGMA journal_mode=WAL")
                finally:
                    conn.close()
                with open(tmp, "rb") as fh:
                    os.fsync(fh.fileno())
                os.chmod(tmp, 0o644)  # mkstemp made it private to this user
                if existing is not None:
                    _retire(target)
                os.replace(tmp, target)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
        return cls(target)

    # -- reads ------------------------------------------------------------------

    def get_order(self, order_id: str) -> Order | None:
        with self._connect() as conn:
            row = conn.execute("SELECT * FROM orders WHERE order_id = ?", (order_id.strip().upper(),)).fetchone()
            return _order(conn, row) if row is not None else None

    def orders_for_customer(self, customer_id: str) -> list[Order]:
        """The customer's orders, newest first."""
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT * FROM orders WHERE customer_id = ? ORDER BY created_at DESC, order_id DESC",
                (customer_id,),
            ).fetchall()
            return [_order(conn, row) for row in rows]

    def get_customer(self, customer_id: str) -> Customer | None:
        with self._connect() as conn:
            row = conn.execute("SELECT * FROM customers WHERE customer_id = ?", (customer_id,)).fetchone()
        if row is None:
            return None
        return Customer(**{**dict(row), "remote_area": bool(row["remote_area"])})

    def get_product(self, product_id: str) -> Product | None:
        with self._connect() as conn:
            row = conn.execute("SELECT * FROM products WHERE product_id = ?", (product_id,)).fetchone()
        if row is None:
            return None
        return Product(**{**dict(row), "returnable_7day": bool(row["returnable_7day"])})

    def count(self, table: str) -> int:
        if table not in TABLES:
            raise ValueError(f"unknown table {table!r}; one of {', '.join(TABLES)}")
        if table == "tickets":
            with self._tickets.connection() as conn:
                return int(conn.execute("SELECT COUNT(*) FROM tickets").fetchone()[0])
        with self._connect() as conn:
            return int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])

    def meta(self) -> dict[str, str]:
        with self._connect() as conn:
            return {k: v for k, v in conn.execute("SELECT key, value FROM meta ORDER BY key")}

    def content_digest(self) -> str:
        """SHA-256 over every row of every table in primary-key order: equal digests mean
        equal contents, whatever the file's page layout."""
        digest = hashlib.sha256()
        with self._connect() as conn:
            for table in TABLES:
                digest.update(f"\x00table {table}\x00".encode())
                if table == "tickets":  # wherever they live (the file, or PostgreSQL)
                    with self._tickets.connection() as tickets:
                        rows = tickets.execute(f"SELECT {_TICKET_SELECT} FROM tickets ORDER BY ticket_id").fetchall()
                else:
                    rows = conn.execute(f"SELECT * FROM {table} ORDER BY {_ORDER_BY[table]}").fetchall()
                for row in rows:
                    digest.update(repr(tuple(row)).encode("utf-8"))
                    digest.update(b"\n")
        return digest.hexdigest()

    # -- tickets ----------------------------------------------------------------

    def create_ticket(self, ticket: NewTicket) -> Ticket:
        """Insert the ticket, or return the existing one with the same ``ticket_id``
        unchanged (a retried activity must not create a second ticket)."""
        if not ticket.ticket_id.strip():
            raise ValueError("ticket_id must not be empty")
        with self._tickets.transaction() as conn:
            conn.execute(
                "INSERT INTO tickets(ticket_id, session_id, customer_id, category, summary, language,"
                " status, created_at, context) VALUES (?, ?, ?, ?, ?, ?, 'open', ?, ?)"
                " ON CONFLICT(ticket_id) DO NOTHING",
                (
                    ticket.ticket_id,
                    ticket.session_id,
                    ticket.customer_id,
                    ticket.category,
                    ticket.summary,
                    ticket.language,
                    ticket.created_at,
                    ticket.context,
                ),
            )
            created = _ticket_by_id(conn, ticket.ticket_id)
        assert created is not None
        return created

    def get_ticket(self, ticket_id: str) -> Ticket | None:
        with self._tickets.connection() as conn:
            return _ticket_by_id(conn, ticket_id)

    def tickets_for_session(self, session_id: str) -> list[Ticket]:
        with self._tickets.connection() as conn:
            rows = conn.execute(
                f"SELECT {_TICKET_SELECT} FROM tickets WHERE session_id = ? ORDER BY created_at, ticket_id", (session_id,)
            ).fetchall()
        return [_ticket(row) for row in rows]

    def active_tickets(self, statuses: tuple[str, ...] = ("open", "pending", "escalated")) -> list[Ticket]:
        """Tickets not yet resolved (or in ``statuses``), oldest first: an agent's queue is made from them."""
        unknown = set(statuses) - set(TICKET_STATUSES)
        if unknown:
            raise ValueError(f"unknown ticket status {sorted(unknown)}; one of {', '.join(TICKET_STATUSES)}")
        marks = ",".join("?" * len(statuses))
        with self._tickets.connection() as conn:
            rows = conn.execute(
                f"SELECT {_TICKET_SELECT} FROM tickets WHERE status IN ({marks}) ORDER BY created_at, ticket_id", statuses
            ).fetchall()
        return [_ticket(row) for row in rows]

    def set_ticket_status(self, ticket_id: str, status: str) -> Ticket | None:
        """Set the status (idempotent); ``None`` if there is no such ticket."""
        if status not in TICKET_STATUSES:
            raise ValueError(f"unknown ticket status {status!r}; one of {', '.join(TICKET_STATUSES)}")
        with self._tickets.transaction() as conn:
            conn.execute("UPDATE tickets SET status = ? WHERE ticket_id = ?", (status, ticket_id))
            return _ticket_by_id(conn, ticket_id)

    def update_ticket(self, ticket_id: str, *, status: str, priority: str, assignee: str, note: str, updated_at: str) -> Ticket | None:
        """Set the ticket's workflow-owned fields (idempotent: the same values again change
        nothing); ``None`` if there is no such ticket."""
        if status not in TICKET_STATUSES:
            raise ValueError(f"unknown ticket status {status!r}; one of {', '.join(TICKET_STATUSES)}")
        with self._tickets.transaction() as conn:
            conn.execute(
                "UPDATE tickets SET status = ?, priority = ?, assignee = ?, note = ?, updated_at = ? WHERE ticket_id = ?",
                (status, priority, assignee, note, updated_at, ticket_id),
            )
            return _ticket_by_id(conn, ticket_id)

    # -- plumbing ---------------------------------------------------------------

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        # Autocommit mode (isolation_level=None): writes say BEGIN/COMMIT themselves.
        conn = sqlite3.connect(self.path, timeout=10, isolation_level=None)
        try:
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA foreign_keys=ON")
            yield conn
        finally:
            conn.close()


def open_demo_store(cfg) -> DemoStore:  # noqa: ANN001 - KefuConfig
    """The demo ERP of the configuration: its tickets in PostgreSQL when ``state.postgres_dsn`` is set."""
    return DemoStore(cfg.store_path, dsn=cfg.state.postgres_dsn)


_TICKET_FIELDS = tuple(f.name for f in fields(Ticket))
_TICKET_SELECT = ", ".join(_TICKET_FIELDS)


def _ticket(row: tuple) -> Ticket:
    return Ticket(**dict(zip(_TICKET_FIELDS, row, strict=True)))


def _ticket_by_id(conn, ticket_id: str) -> Ticket | None:  # noqa: ANN001 - a StateDB connection
    row = conn.execute(f"SELECT {_TICKET_SELECT} FROM tickets WHERE ticket_id = ?", (ticket_id,)).fetchone()
    return _ticket(row) if row is not None else None


def _order(conn: sqlite3.Connection, row: sqlite3.Row) -> Order:
    items = [
        OrderItem(**dict(item))
        for item in conn.execute(
            "SELECT i.line_no, i.product_id, p.name_zh, p.name_en, i.quantity, i.unit_price_cents"
            " FROM order_items i JOIN products p ON p.product_id = i.product_id"
            " WHERE i.order_id = ? ORDER BY i.line_no",
            (row["order_id"],),
        )
    ]
    return Order(**dict(row), items=items)


# Columns added to tickets after schema 1 shipped: added in place, tickets kept.
_TICKET_COLUMNS = {
    "priority": "TEXT DEFAULT 'normal'", "assignee": "TEXT DEFAULT ''", "note": "TEXT DEFAULT ''", "updated_at": "TEXT DEFAULT ''",
    "context": "TEXT DEFAULT ''",
}


def _create_schema(conn: sqlite3.Connection) -> None:
    for statement in _SCHEMA.split(";"):
        if statement.strip():
            conn.execute(statement)
    have = {row[1] for row in conn.execute("PRAGMA table_info(tickets)")}
    for name, decl in _TICKET_COLUMNS.items():
        if name not in have:
            conn.execute(f"ALTER TABLE tickets ADD COLUMN {name} {decl}")
    conn.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', ?)", (SCHEMA_VERSION,))


def _seed_meta(seed: int, customers: int, products: int, orders: int) -> dict[str, str]:
    return {
        "schema_version": SCHEMA_VERSION,
        "seed": str(seed),
        "customers": str(customers),
        "products": str(products),
        "orders": str(orders),
        "base_time": BASE_TIME.isoformat(),
    }


def _read_meta(path: Path) -> dict[str, str] | None:
    """``meta`` of an existing kefu store; ``None`` if there is no file (or an empty one).

    Raises ``ValueError`` for a file that is not a kefu demo store.
    """
    if not path.exists() or path.stat().st_size == 0:
        return None
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=10)
        try:
            rows = conn.execute("SELECT key, value FROM meta").fetchall()
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise ValueError(f"{path} exists and is not a kefu demo store ({exc}); not overwriting it") from exc
    meta = dict(rows)
    if "schema_version" not in meta:
        raise ValueError(f"{path} exists and is not a kefu demo store (no schema_version); not overwriting it")
    return meta


def _retire(path: Path) -> None:
    """Fold and empty the write-ahead log of a database about to be replaced, so that no
    stale WAL frames are ever applied to the new file."""
    conn = sqlite3.connect(path, timeout=10)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    with open(path, "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


# --------------------------------------------------------------------------- demo data
