"""τ-bench's retail store behind the ERP port, on SQLite (or PostgreSQL, see below).

``kefu store import --format tau-retail DIR`` turns τ-bench's ``users.json``,
``orders.json`` and ``products.json`` into one SQLite file (``import_tau_retail``);
``TauRetailStore`` reads it and changes it with the seven τ-bench operations (their rules
and the documents' reading as records: services/erp/tau_rules.py);
``export_tau_retail`` writes the three files back, so that a store changed by kefu can
be compared with the database τ-bench's own tools would have produced.

Why it is built this way:

* Every record is kept as τ-bench's JSON document, keys in their original order, and
  each operation edits that document exactly as τ-bench's tool does (same fields, same
  values, same float arithmetic and rounding). Export is then a dump of the documents,
  and an unchanged store exports its input value for value.
* Every call opens its own connection (``timeout=10``, WAL journal) and holds nothing
  between calls: the store is safe from several threads and processes, and a store
  file replaced on disk by a new import (``os.replace``) is what the next call reads.
  Calls hold ``<store>.lock`` shared while connected; import and reset take it
  exclusive. SQLite finds a database's ``-wal`` and ``-shm`` files by name, so a
  connection still open on the old file could otherwise write its log into the new
  one's; with the lock no connection is open while the file changes.
* ``apply`` validates and writes in one ``BEGIN IMMEDIATE`` transaction, so two
  concurrent operations on one order are serialized and a rejected one writes nothing.
  With a non-empty ``key`` (Temporal's workflow id) it records the result; the same key
  again returns that result and changes nothing, because activities are retried.
* With a PostgreSQL ``dsn`` (``state.postgres_dsn``) the same tables live in PostgreSQL,
  shared by every Dialog and worker process (services/state_db.py runs the statements):
  an import replaces the documents in one transaction, reset removes them in one, and
  every write transaction takes the advisory lock ``kefu-store`` first, so writers are
  serialized as ``BEGIN IMMEDIATE`` serializes them on SQLite; reads that need one
  snapshot (export, ``check``) run in a REPEATABLE READ transaction. The documents
  stay TEXT, so their keys keep their order.

Standard library only (psycopg for PostgreSQL).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sqlite3
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from services.erp.port import (
    ADDRESS_FIELDS,
    Customer,
    OperationResult,
    Order,
    Product,
)
from services.erp.tau_rules import (  # noqa: F401 - ORDER_*_FIELDS: read from here by after_sales and others
    ORDER_EXTRA_FIELDS,
    ORDER_INFO_FIELDS,
    _clean_args,
    _customer,
    _execute,
    _order,
    _product,
    _rejected,
)
from services.state_db import StateDB, shared, sqlite_snapshot

FORMAT = "tau-retail"
SCHEMA_VERSION = "1"
# The three τ-bench files, by table.
DATA_FILES = {"users": "users.json", "orders": "orders.json", "products": "products.json"}

# ``pos`` keeps each file's record order: export writes the records back in it (rowids
# of tables without an INTEGER PRIMARY KEY may change on VACUUM, so they are not used).
_SCHEMA = """
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE users (
    user_id TEXT PRIMARY KEY,
    pos INTEGER NOT NULL,
    doc TEXT NOT NULL
);
CREATE TABLE orders (
    order_id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    pos INTEGER NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX orders_by_user ON orders(user_id);
CREATE TABLE products (
    product_id TEXT PRIMARY KEY,
    pos INTEGER NOT NULL,
    doc TEXT NOT NULL
);
CREATE TABLE applied_operations (
    key TEXT PRIMARY KEY,
    operation TEXT NOT NULL,
    args TEXT NOT NULL,
    result TEXT NOT NULL,
    applied_at TEXT NOT NULL
)
"""


# The same tables in PostgreSQL, created once per process (the after-sales tables too,
# services/erp/after_sales.py, so that an import can empty them).
_PG_SCHEMA = _SCHEMA.replace("CREATE TABLE ", "CREATE TABLE IF NOT EXISTS ").replace("CREATE INDEX ", "CREATE INDEX IF NOT EXISTS ")
_TABLES = ("meta", "users", "orders", "products", "applied_operations", "after_sales_steps", "refunds")
# The advisory lock every write transaction on PostgreSQL takes (see the module docstring).
_WRITE_LOCK = "kefu-store"


class StoreUnavailable(RuntimeError):
    """The store file is gone (``kefu store reset``) or is not a τ-bench retail store."""


def _postgres(dsn: str) -> StateDB:
    """The process's PostgreSQL state database with the store's tables."""
    from services.erp.after_sales import _TABLES as AFTER_SALES_TABLES

    db = shared(dsn)
    db.create(_PG_SCHEMA + ";" + ";".join(AFTER_SALES_TABLES), name="tau-retail")
    return db


# --------------------------------------------------------------------------- the store


class TauRetailStore:
    """The τ-bench retail store in one SQLite file built by ``import_tau_retail``, or in
    PostgreSQL at ``dsn`` (then ``path`` is not used).

    Cheap to construct; holds no open SQLite connection. Calls on a file that no longer
    exists raise ``StoreUnavailable`` (the file is never created here: only an import
    makes one); on PostgreSQL, writes to a removed store do.
    """

    format = FORMAT
    currency = "USD"

    def __init__(self, path: str | os.PathLike[str], *, dsn: str = "") -> None:
        self.path = Path(path)
        self.dsn = dsn
        self._db = _postgres(dsn) if dsn else None

    def close(self) -> None:
        """Nothing to release (every call has its own connection); here for callers that
        close whatever store they opened."""

    # -- reads ------------------------------------------------------------------

    def find_customer_by_email(self, email: str) -> str | None:
        wanted = email.strip().lower()
        if not wanted:
            return None
        with self._connect() as conn:
            row = conn.execute(
                "SELECT user_id FROM users WHERE lower(json_extract(doc, '$.email')) = ? ORDER BY pos LIMIT 1", (wanted,)
            ).fetchone()
        return row[0] if row is not None else None

    def find_customer_by_name_zip(self, first_name: str, last_name: str, zip_code: str) -> str | None:
        first, last, zip_code = first_name.strip().lower(), last_name.strip().lower(), zip_code.strip()
        if not (first and last and zip_code):
            return None
        with self._connect() as conn:
            row = conn.execute(
                "SELECT user_id FROM users WHERE lower(trim(json_extract(doc, '$.name.first_name'))) = ?"
                " AND lower(trim(json_extract(doc, '$.name.last_name'))) = ?"
                " AND trim(json_extract(doc, '$.address.zip')) = ? ORDER BY pos LIMIT 1",
                (first, last, zip_code),
            ).fetchone()
        return row[0] if row is not None else None

    def find_customer_by_phone(self, phone: str) -> str | None:
        """By the digits of a phone number (τ-bench's users have none; the demo store's do)."""
        digits = "".join(ch for ch in phone if ch.isdigit())
        if not digits:
            return None
        with self._connect() as conn:
            row = conn.execute(
                "SELECT user_id FROM users WHERE json_extract(doc, '$.phone') = ? ORDER BY pos LIMIT 1", (digits,)
            ).fetchone()
        return row[0] if row is not None else None

    def get_customer(self, customer_id: str) -> Customer | None:
        with self._connect() as conn:
            doc = _user_doc(conn, customer_id)
        return _customer(customer_id, doc) if doc is not None else None

    def list_orders(self, customer_id: str) -> list[Order]:
        """The customer's orders in the order of the customer's ``orders`` list (orders
        of the customer missing from that list follow, in file order)."""
        with self._snapshot() as conn:  # one snapshot for both reads
            user = _user_doc(conn, customer_id)
            rows = conn.execute("SELECT order_id, doc FROM orders WHERE user_id = ? ORDER BY pos", (customer_id,)).fetchall()
        listed = [str(o) for o in user.get("orders", [])] if user is not None else []
        rank = {order_id: i for i, order_id in reversed(list(enumerate(listed)))}
        rows.sort(key=lambda row: rank.get(row[0], len(listed)))  # stable: the rest keep file order
        return [_order(json.loads(doc)) for _, doc in rows]

    def get_order(self, order_id: str) -> Order | None:
        with self._connect() as conn:
            doc = _order_doc(conn, order_id)
        return _order(doc) if doc is not None else None

    def get_product(self, product_id: str) -> Product | None:
        with self._connect() as conn:
            doc = _product_doc(conn, product_id)
        return _product(doc) if doc is not None else None

    def list_products(self) -> list[tuple[str, str]]:
        """(product_id, name) of every product type, by name as τ-bench lists them."""
        with self._connect() as conn:
            rows = conn.execute("SELECT product_id, json_extract(doc, '$.name') FROM products").fetchall()
        return sorted(((str(pid), str(name)) for pid, name in rows), key=lambda p: (p[1], p[0]))

    def counts(self) -> dict[str, int]:
        """Number of customers, orders, products and applied (keyed) operations."""
        with self._connect() as conn:
            return {
                name: int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
                for name, table in (
                    ("customers", "users"),
                    ("orders", "orders"),
                    ("products", "products"),
                    ("applied_operations", "applied_operations"),
                )
            }

    def meta(self) -> dict[str, str]:
        with self._connect() as conn:
            return {k: v for k, v in conn.execute("SELECT key, value FROM meta ORDER BY key")}

    # -- changes ----------------------------------------------------------------

    def check(self, operation: str, args: dict[str, Any]) -> OperationResult:
        """Validate ``operation`` without writing. A passing check answers ``status="done"``
        (it would be done) with the order or customer as the operation would leave it and
        the price difference; a failing one is the rejection ``apply`` would give."""
        clean = _clean_args(operation, args)
        if isinstance(clean, OperationResult):
            return clean
        with self._snapshot() as conn:  # rolled back: nothing is written
            docs = _Docs(conn)
            return _execute(docs, operation, clean)

    def apply(self, operation: str, args: dict[str, Any], *, key: str = "") -> OperationResult:
        """Run ``operation`` in one transaction. A rejection writes nothing and is not
        recorded. With ``key``, the result is recorded and the same key again returns it
        unchanged (the same key with another operation or other arguments is rejected)."""
        clean = _clean_args(operation, args)
        if isinstance(clean, OperationResult):
            return clean
        args_json = json.dumps(clean, sort_keys=True, ensure_ascii=False)
        # A rejection, or a key seen before, returns before anything is written.
        with self.transaction() as conn:
            if key:
                row = conn.execute(
                    "SELECT operation, args, result FROM applied_operations WHERE key = ?", (key,)
                ).fetchone()
                if row is not None:
                    if row[0] != operation or row[1] != args_json:
                        return _rejected(
                            operation, "invalid_arguments", f"key {key!r} was already used for another {row[0]} call"
                        )
                    return _result_from_record(json.loads(row[2]))
            docs = _Docs(conn)
            result = _execute(docs, operation, clean)
            if not result.done:
                return result
            docs.write()
            if key:
                conn.execute(
                    "INSERT INTO applied_operations(key, operation, args, result, applied_at) VALUES (?, ?, ?, ?, ?)",
                    (key, operation, args_json, json.dumps(docs.record(result), ensure_ascii=False), _now()),
                )
            return result

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction on the store (``BEGIN IMMEDIATE`` on the file; on
        PostgreSQL a transaction holding the store's write lock), committed when the block
        ends without an error and rolled back otherwise: for the parts of an adapter that
        keep their own tables beside the documents (after-sales)."""
        if self._db is not None:
            with self._db.transaction(lock=_WRITE_LOCK) as conn:
                if conn.execute("SELECT 1 FROM meta WHERE key = 'format'").fetchone() is None:
                    raise StoreUnavailable("no store in PostgreSQL (import one with `kefu store import`)")
                yield conn
            return
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    # -- plumbing ---------------------------------------------------------------

    @contextlib.contextmanager
    def _snapshot(self) -> Iterator[sqlite3.Connection]:
        """Reads that see one state of the store; nothing is written (rolled back)."""
        if self._db is not None:
            with self._db.snapshot() as conn:
                yield conn
            return
        with self._connect() as conn, sqlite_snapshot(conn):
            yield conn

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        if self._db is not None:
            with self._db.connection() as conn:
                yield conn
            return
        # Shared lock for the whole connection: an import or reset (exclusive) waits for
        # it, so no connection is ever open on a file while it is replaced or removed.
        if not self.path.parent.is_dir():
            raise StoreUnavailable(f"no τ-bench retail store at {self.path} (import one with `kefu store import`)")
        with _file_lock(self.path, shared=True):
            # mode=rw: a missing file is an error, never silently created empty.
            if not self.path.is_file():
                raise StoreUnavailable(f"no τ-bench retail store at {self.path} (import one with `kefu store import`)")
            try:
                conn = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=rw", uri=True, timeout=10, isolation_level=None)
            except sqlite3.OperationalError as exc:
                raise StoreUnavailable(f"cannot open the store at {self.path}: {exc}") from exc
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                yield conn
            finally:
                conn.close()


# --------------------------------------------------------------------------- documents


def _user_doc(conn: sqlite3.Connection, user_id: str) -> dict[str, Any] | None:
    row = conn.execute("SELECT doc FROM users WHERE user_id = ?", (user_id,)).fetchone()
    return json.loads(row[0]) if row is not None else None


def _order_doc(conn: sqlite3.Connection, order_id: str) -> dict[str, Any] | None:
    row = conn.execute("SELECT doc FROM orders WHERE order_id = ?", (order_id,)).fetchone()
    return json.loads(row[0]) if row is not None else None


def _product_doc(conn: sqlite3.Connection, product_id: str) -> dict[str, Any] | None:
    row = conn.execute("SELECT doc FROM products WHERE product_id = ?", (product_id,)).fetchone()
    return json.loads(row[0]) if row is not None else None


class _Docs:
    """The documents one operation reads, loaded once and edited in place; ``write``
    stores the edited ones (``UPDATE``, so record order is kept)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.orders: dict[str, dict[str, Any] | None] = {}
        self.users: dict[str, dict[str, Any] | None] = {}
        self.products: dict[str, dict[str, Any] | None] = {}
        self.dirty_orders: set[str] = set()
        self.dirty_users: set[str] = set()

    def order(self, order_id: str) -> dict[str, Any] | None:
        if order_id not in self.orders:
            self.orders[order_id] = _order_doc(self.conn, order_id)
        return self.orders[order_id]

    def user(self, user_id: str) -> dict[str, Any] | None:
        if user_id not in self.users:
            self.users[user_id] = _user_doc(self.conn, user_id)
        return self.users[user_id]

    def product(self, product_id: str) -> dict[str, Any] | None:
        if product_id not in self.products:
            self.products[product_id] = _product_doc(self.conn, product_id)
        return self.products[product_id]

    def write(self) -> None:
        for order_id in sorted(self.dirty_orders):
            doc = self.orders[order_id]
            self.conn.execute("UPDATE orders SET doc = ? WHERE order_id = ?", (_dumps(doc), order_id))
        for user_id in sorted(self.dirty_users):
            doc = self.users[user_id]
            self.conn.execute("UPDATE users SET doc = ? WHERE user_id = ?", (_dumps(doc), user_id))

    def record(self, result: OperationResult) -> dict[str, Any]:
        """What ``applied_operations`` keeps: enough to give the same result back."""
        order_id = result.order.order_id if result.order is not None else None
        user_id = result.customer.customer_id if result.customer is not None else None
        return {
            "operation": result.operation,
            "status": result.status,
            "reason": result.reason,
            "code": result.code,
            "price_difference": result.price_difference,
            "order": self.orders.get(order_id) if order_id is not None else None,
            "user_id": user_id,
            "user": self.users.get(user_id) if user_id is not None else None,
        }


def _result_from_record(record: dict[str, Any]) -> OperationResult:
    user = record.get("user")
    return OperationResult(
        operation=record["operation"],
        status=record["status"],
        reason=record.get("reason", ""),
        code=record.get("code", ""),
        order=_order(record["order"]) if record.get("order") is not None else None,
        customer=_customer(record["user_id"], user) if user is not None else None,
        price_difference=float(record.get("price_difference") or 0.0),
    )


def _dumps(doc: Any) -> str:
    return json.dumps(doc, ensure_ascii=False)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")



# --------------------------------------------------------------------------- import / export


def import_tau_retail(data_dir: str | os.PathLike[str], target_path: str | os.PathLike[str], *, dsn: str = "") -> dict[str, int]:
    """Build the store at ``target_path`` (or in PostgreSQL at ``dsn``) from τ-bench's
    three files in ``data_dir``.

    Every file is read and checked before anything is written (``ValueError`` naming the
    file and the record). The database is built in a temporary file next to the target
    and moved into place with ``os.replace`` (in PostgreSQL: replaced in one
    transaction): a running kefu's next call reads the new store, and a failed import
    leaves the old one. A target that is not a kefu ERP store is never overwritten.
    Returns the counts of customers, orders and products.
    """
    source = Path(data_dir)
    if not source.is_dir():
        raise ValueError(f"{source}: not a directory (expected τ-bench's users.json, orders.json and products.json in it)")
    data = {table: _load_json(source / name) for table, name in DATA_FILES.items()}
    _validate(source, data)

    counts = write_documents(data, target_path, fmt=FORMAT, source=str(source.resolve()), dsn=dsn)
    assert counts is not None
    return counts


def write_documents(
    data: dict[str, dict[str, Any]], target_path: str | os.PathLike[str], *, fmt: str, source: str = "", dsn: str = "",
    only_if_absent: bool = False,
) -> dict[str, int] | None:
    """Write users, orders and products documents as the store at ``target_path``
    (format ``fmt``): built in a temporary file, moved into place with ``os.replace``;
    with ``dsn``, the store in PostgreSQL, replaced in one transaction. With
    ``only_if_absent``, a store already there is kept (None), decided under the same lock."""
    if dsn:
        return _write_postgres(data, dsn, fmt=fmt, source=source, only_if_absent=only_if_absent)
    target = Path(target_path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with _file_lock(target, create=True):
        if only_if_absent and _store_format(target) is not None:
            return None
        if target.exists() and _store_format(target) is None and target.stat().st_size > 0:
            raise ValueError(f"{target} exists and is not a kefu ERP store; not overwriting it")
        fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            conn = sqlite3.connect(tmp, isolation_level=None)
            try:
                conn.execute("PRAGMA journal_mode=DELETE")
                conn.execute("BEGIN")
                for statement in _SCHEMA.split(";"):
                    conn.execute(statement)
                conn.executemany(
                    "INSERT INTO users(user_id, pos, doc) VALUES (?, ?, ?)",
                    ((uid, pos, _dumps(doc)) for pos, (uid, doc) in enumerate(data["users"].items())),
                )
                conn.executemany(
                    "INSERT INTO orders(order_id, user_id, pos, doc) VALUES (?, ?, ?, ?)",
                    ((oid, doc["user_id"], pos, _dumps(doc)) for pos, (oid, doc) in enumerate(data["orders"].items())),
                )
                conn.executemany(
                    "INSERT INTO products(product_id, pos, doc) VALUES (?, ?, ?)",
                    ((pid, pos, _dumps(doc)) for pos, (pid, doc) in enumerate(data["products"].items())),
                )
                counts, meta = _counts_and_meta(data, fmt, source)
                conn.executemany("INSERT INTO meta(key, value) VALUES (?, ?)", sorted(meta.items()))
                conn.execute("COMMIT")
                # Persisted in the file header: later connections find WAL already on.
                conn.execute("PRAGMA journal_mode=WAL")
            finally:
                conn.close()
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o644)  # mkstemp made it private to this user
            _retire(target)
            os.replace(tmp, target)
            _drop_logs(target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    return counts


def _counts_and_meta(data: dict[str, dict[str, Any]], fmt: str, source: str) -> tuple[dict[str, int], dict[str, str]]:
    counts = {"customers": len(data["users"]), "orders": len(data["orders"]), "products": len(data["products"])}
    meta = {
        "format": fmt,
        "schema_version": SCHEMA_VERSION,
        "imported_at": _now(),
        "source": source,
        **{k: str(v) for k, v in counts.items()},
    }
    return counts, meta


def _write_postgres(data: dict[str, dict[str, Any]], dsn: str, *, fmt: str, source: str, only_if_absent: bool) -> dict[str, int] | None:
    """The store in PostgreSQL replaced by ``data`` in one transaction (under the store's
    write lock): the next call sees the new store, a failure leaves the old one. The
    after-sales records go with the old documents, as with a new file."""
    counts, meta = _counts_and_meta(data, fmt, source)
    with _postgres(dsn).transaction(lock=_WRITE_LOCK) as conn:
        if only_if_absent and conn.execute("SELECT 1 FROM meta WHERE key = 'format'").fetchone() is not None:
            return None
        for table in _TABLES:
            conn.execute(f"DELETE FROM {table}")
        conn.executemany(
            "INSERT INTO users(user_id, pos, doc) VALUES (?, ?, ?)",
            [(uid, pos, _dumps(doc)) for pos, (uid, doc) in enumerate(data["users"].items())],
        )
        conn.executemany(
            "INSERT INTO orders(order_id, user_id, pos, doc) VALUES (?, ?, ?, ?)",
            [(oid, doc["user_id"], pos, _dumps(doc)) for pos, (oid, doc) in enumerate(data["orders"].items())],
        )
        conn.executemany(
            "INSERT INTO products(product_id, pos, doc) VALUES (?, ?, ?)",
            [(pid, pos, _dumps(doc)) for pos, (pid, doc) in enumerate(data["products"].items())],
        )
        conn.executemany("INSERT INTO meta(key, value) VALUES (?, ?)", sorted(meta.items()))
    return counts


def export_tau_retail(
    store_path: str | os.PathLike[str], out_dir: str | os.PathLike[str], *, fmt: str | None = FORMAT, dsn: str = ""
) -> dict[str, int]:
    """Write ``users.json``, ``orders.json`` and ``products.json`` of the store at
    ``store_path`` (or in PostgreSQL at ``dsn``) into ``out_dir``, in τ-bench's schema
    and record order, with every change applied. All three come from one snapshot; each
    file is replaced atomically. Returns the counts of customers, orders and products."""
    path = Path(store_path)
    found = store_format(path, dsn=dsn)
    if found is None or (fmt is not None and found != fmt):
        where = "in PostgreSQL" if dsn else f"at {path}"
        raise ValueError(f"no τ-bench retail store {where} (import one with `kefu store import`)")
    store = TauRetailStore(path, dsn=dsn)
    data: dict[str, dict[str, Any]] = {}
    with store._snapshot() as conn:
        for table, key in (("users", "user_id"), ("orders", "order_id"), ("products", "product_id")):
            data[table] = {row[0]: json.loads(row[1]) for row in conn.execute(f"SELECT {key}, doc FROM {table} ORDER BY pos").fetchall()}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for table, name in DATA_FILES.items():
        target = out / name
        fd, tmp_name = tempfile.mkstemp(dir=out, prefix=f".{name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(data[table], fh, indent=4, ensure_ascii=False)
                fh.write("\n")
            os.chmod(tmp_name, 0o644)
            os.replace(tmp_name, target)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise
    return {"customers": len(data["users"]), "orders": len(data["orders"]), "products": len(data["products"])}


def store_format(path: str | os.PathLike[str], *, dsn: str = "") -> str | None:
    """The ``format`` recorded in the store at ``path`` (or in PostgreSQL at ``dsn``);
    None when there is no file (no store) or it is not a kefu ERP store. Never writes (a
    foreign SQLite file is left as it is)."""
    if dsn:
        with _postgres(dsn).connection() as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()
        return str(row[0]) if row is not None else None
    path = Path(path)
    if not path.parent.is_dir():
        return None
    with _file_lock(path, shared=True):
        return _store_format(path)


def remove_store(path: str | os.PathLike[str], *, dsn: str = "") -> bool:
    """Remove the store at ``path`` (and its WAL files); True if there was one. It waits
    for the calls in progress, then unlinks in one step: the next call finds no store.
    With ``dsn``, the store in PostgreSQL is emptied in one transaction."""
    if dsn:
        with _postgres(dsn).transaction(lock=_WRITE_LOCK) as conn:
            existed = conn.execute("SELECT 1 FROM meta WHERE key = 'format'").fetchone() is not None
            for table in _TABLES:
                conn.execute(f"DELETE FROM {table}")
        return existed
    target = Path(path)
    if not target.parent.is_dir():
        return False
    with _file_lock(target):
        existed = target.exists()
        _retire(target)
        target.unlink(missing_ok=True)
        _drop_logs(target)
    return existed


def _store_format(path: Path) -> str | None:
    if not path.is_file() or path.stat().st_size == 0:
        return None
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=rw", uri=True, timeout=10)
        try:
            row = conn.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()
        finally:
            conn.close()
    except sqlite3.DatabaseError:
        return None
    return str(row[0]) if row is not None else None


def _retire(path: Path) -> None:
    """Fold the write-ahead log of a database about to be replaced or removed into it
    (called under the exclusive lock, so no other kefu connection is open)."""
    if path.is_file() and path.stat().st_size > 0:
        try:
            conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=rw", uri=True, timeout=10)
            try:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                conn.close()
        except sqlite3.DatabaseError:
            pass  # not a database: nothing to fold


def _drop_logs(path: Path) -> None:
    """Remove the WAL and shared-memory files of the database that was at ``path``: a
    leftover log must never be applied to the file now there (SQLite finds them by name)."""
    for suffix in ("-wal", "-shm"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)


@contextlib.contextmanager
def _file_lock(target: Path, *, shared: bool = False, create: bool = False, timeout_s: float = 30.0) -> Iterator[None]:
    """The store's lock file (``<store>.lock``), across threads and processes: every call
    holds it shared while its connection is open; an import or reset holds it exclusive
    to replace or remove the file. Waits at most ``timeout_s`` (``StoreUnavailable``)."""
    if create:
        target.parent.mkdir(parents=True, exist_ok=True)
    try:
        fh = open(target.with_name(target.name + ".lock"), "a+b")
    except OSError as exc:
        raise StoreUnavailable(f"cannot open the lock file of the store at {target}: {exc.strerror or exc}") from exc
    with fh:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fh.fileno(), (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise StoreUnavailable(f"the store at {target} is busy (an import or reset is running); try again") from None
                time.sleep(0.005)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


# --------------------------------------------------------------------------- validation


def _load_json(path: Path) -> Any:
    if not path.is_file():
        raise ValueError(f"{path}: no such file (a τ-bench retail data folder has {', '.join(DATA_FILES.values())})")
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from exc
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _validate(source: Path, data: dict[str, Any]) -> None:
    """τ-bench's shapes, checked up front: every operation can then rely on them."""
    for table, name in DATA_FILES.items():
        if not isinstance(data[table], dict):
            raise ValueError(f"{source / name}: expected a JSON object mapping ids to records, not a {type(data[table]).__name__}")

    def need(ok: bool, name: str, what: str) -> None:
        if not ok:
            raise ValueError(f"{source / name}: {what}")

    def address_ok(value: Any) -> bool:
        return isinstance(value, dict) and all(isinstance(value.get(f), str) for f in ADDRESS_FIELDS)

    for uid, user in data["users"].items():
        where = f"user {uid!r}"
        need(isinstance(user, dict), "users.json", f"{where} is not an object")
        name = user.get("name")
        need(
            isinstance(name, dict) and isinstance(name.get("first_name"), str) and isinstance(name.get("last_name"), str),
            "users.json",
            f"{where}: 'name' must have 'first_name' and 'last_name' strings",
        )
        need(address_ok(user.get("address")), "users.json", f"{where}: 'address' must have string {', '.join(ADDRESS_FIELDS)}")
        need(isinstance(user.get("email"), str), "users.json", f"{where}: 'email' must be a string")
        methods = user.get("payment_methods")
        need(isinstance(methods, dict), "users.json", f"{where}: 'payment_methods' must be an object")
        for mid, method in methods.items():
            need(
                isinstance(method, dict) and isinstance(method.get("source"), str),
                "users.json",
                f"{where}: payment method {mid!r} must be an object with a 'source'",
            )
            if method["source"] == "gift_card":
                need(_is_number(method.get("balance")), "users.json", f"{where}: gift card {mid!r} needs a numeric 'balance'")
        orders = user.get("orders")
        need(
            isinstance(orders, list) and all(isinstance(o, str) for o in orders),
            "users.json",
            f"{where}: 'orders' must be a list of order ids",
        )

    for oid, order in data["orders"].items():
        where = f"order {oid!r}"
        need(isinstance(order, dict), "orders.json", f"{where} is not an object")
        need(order.get("order_id") == oid, "orders.json", f"{where}: 'order_id' must equal its key")
        need(
            order.get("user_id") in data["users"],
            "orders.json",
            f"{where}: user {order.get('user_id')!r} is not in users.json",
        )
        need(address_ok(order.get("address")), "orders.json", f"{where}: 'address' must have string {', '.join(ADDRESS_FIELDS)}")
        need(isinstance(order.get("status"), str), "orders.json", f"{where}: 'status' must be a string")
        items = order.get("items")
        need(isinstance(items, list), "orders.json", f"{where}: 'items' must be a list")
        for item in items:
            need(
                isinstance(item, dict)
                and isinstance(item.get("item_id"), str)
                and isinstance(item.get("product_id"), str)
                and _is_number(item.get("price"))
                and isinstance(item.get("options"), dict),
                "orders.json",
                f"{where}: every item needs 'item_id', 'product_id', a numeric 'price' and 'options'",
            )
        need(isinstance(order.get("fulfillments"), list), "orders.json", f"{where}: 'fulfillments' must be a list")
        history = order.get("payment_history")
        need(isinstance(history, list), "orders.json", f"{where}: 'payment_history' must be a list")
        for payment in history:
            need(
                isinstance(payment, dict)
                and isinstance(payment.get("transaction_type"), str)
                and _is_number(payment.get("amount"))
                and isinstance(payment.get("payment_method_id"), str),
                "orders.json",
                f"{where}: every payment needs 'transaction_type', a numeric 'amount' and 'payment_method_id'",
            )

    for pid, product in data["products"].items():
        where = f"product {pid!r}"
        need(isinstance(product, dict), "products.json", f"{where} is not an object")
        need(product.get("product_id") == pid, "products.json", f"{where}: 'product_id' must equal its key")
        need(isinstance(product.get("name"), str), "products.json", f"{where}: 'name' must be a string")
        variants = product.get("variants")
        need(isinstance(variants, dict), "products.json", f"{where}: 'variants' must be an object")
        for vid, variant in variants.items():
            need(
                isinstance(variant, dict)
                and isinstance(variant.get("available"), bool)
                and _is_number(variant.get("price"))
                and isinstance(variant.get("options"), dict),
                "products.json",
                f"{where}: variant {vid!r} needs 'options', a boolean 'available' and a numeric 'price'",
            )
