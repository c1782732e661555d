"""The demo ERP: deterministic, idempotent seeding; order lookups; idempotent tickets
visible to other connections and processes."""

from __future__ import annotations

import hashlib
import multiprocessing
import re
import sqlite3
from pathlib import Path

import pytest

from services.demo.store import (
    FREE_SHIPPING_CENTS,
    ORDER_STATUSES,
    REMOTE_FREE_SHIPPING_CENTS,
    REMOTE_SHIPPING_FEE_CENTS,
    SHIPPING_FEE_CENTS,
    DemoStore,
    NewTicket,
    Order,
)


def _file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _ticket(ticket_id: str = "TK-0001", **extra) -> NewTicket:
    fields = dict(
        ticket_id=ticket_id,
        session_id="sess-1",
        category="complaint",
        summary="快递员态度差，顾客要求投诉",
        language="zh",
        customer_id="C00001",
        created_at="2026-11-01T12:30:00+08:00",
    )
    fields.update(extra)
    return NewTicket(**fields)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> DemoStore:
    return DemoStore.seed(tmp_path_factory.mktemp("store") / "store.db")


# --------------------------------------------------------------------------- seeding


def test_seed_is_deterministic(tmp_path: Path) -> None:
    a = DemoStore.seed(tmp_path / "a.db")
    b = DemoStore.seed(tmp_path / "b.db")
    assert a.content_digest() == b.content_digest()
    assert _file_hash(a.path) == _file_hash(b.path)
    other = DemoStore.seed(tmp_path / "c.db", seed=8)
    assert other.content_digest() != a.content_digest()


def test_seed_sizes_and_meta(store: DemoStore) -> None:
    assert store.count("customers") == 50
    assert store.count("products") == 40
    assert store.count("orders") == 200
    assert store.count("order_items") >= 200
    assert store.count("tickets") == 0
    meta = store.meta()
    assert meta["seed"] == "7" and meta["orders"] == "200"
    with pytest.raises(ValueError, match="unknown table"):
        store.count("orders; DROP TABLE orders")


def test_reseeding_with_the_same_seed_does_nothing(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    store = DemoStore.seed(path)
    store.create_ticket(_ticket())
    inode, digest = path.stat().st_ino, store.content_digest()
    again = DemoStore.seed(path)
    assert path.stat().st_ino == inode
    assert again.content_digest() == digest
    assert again.get_ticket("TK-0001") is not None


def test_reseeding_with_another_seed_replaces_atomically(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    DemoStore.seed(path, seed=1, customers=5, products=5, orders=10)
    store = DemoStore.seed(path, seed=2, customers=6, products=5, orders=12)
    assert store.meta()["seed"] == "2"
    assert store.count("customers") == 6 and store.count("orders") == 12
    assert store.content_digest() == DemoStore.seed(tmp_path / "fresh.db", seed=2, customers=6, products=5, orders=12).content_digest()
    # No temporary files left behind.
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_seed_never_overwrites_a_foreign_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_text("not a database")
    with pytest.raises(ValueError, match="not a kefu demo store"):
        DemoStore.seed(path)
    assert path.read_text() == "not a database"


def test_uses_wal(store: DemoStore) -> None:
    conn = sqlite3.connect(store.path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()


# --------------------------------------------------------------------------- orders


def _all_order_ids(store: DemoStore) -> list[str]:
    conn = sqlite3.connect(store.path)
    try:
        return [row[0] for row in conn.execute("SELECT order_id FROM orders ORDER BY order_id")]
    finally:
        conn.close()


def test_order_ids_have_the_fixed_format(store: DemoStore) -> None:
    ids = _all_order_ids(store)
    assert len(ids) == 200
    assert all(re.fullmatch(r"KF2026(09|10|11)\d{2}\d{5}", order_id) for order_id in ids)


def _check_order(order: Order, store: DemoStore) -> None:
    assert order.status in ORDER_STATUSES
    assert order.items, order.order_id
    assert [item.line_no for item in order.items] == list(range(1, len(order.items) + 1))
    assert order.items_cents == sum(item.amount_cents for item in order.items)
    assert order.total_cents == order.items_cents + order.shipping_cents
    customer = store.get_customer(order.customer_id)
    assert customer is not None
    fee, free_from = (
        (REMOTE_SHIPPING_FEE_CENTS, REMOTE_FREE_SHIPPING_CENTS) if customer.remote_area else (SHIPPING_FEE_CENTS, FREE_SHIPPING_CENTS)
    )
    assert order.shipping_cents == (0 if order.items_cents >= free_from else fee)
    if order.status in ("shipped", "delivered", "completed", "refunded"):
        assert order.carrier and order.tracking_no and order.shipped_at
    if order.status in ("pending_payment", "cancelled"):
        assert order.shipped_at is None


def test_order_lookup(store: DemoStore) -> None:
    ids = _all_order_ids(store)
    for order_id in ids[::17]:
        order = store.get_order(order_id)
        assert order is not None and order.order_id == order_id
        _check_order(order, store)
        item = order.items[0]
        product = store.get_product(item.product_id)
        assert product is not None and product.name_zh == item.name_zh and product.name_en == item.name_en
    # Customers type order numbers carelessly.
    assert store.get_order(f"  {ids[0].lower()} ") == store.get_order(ids[0])
    assert store.get_order("KF2099010100001") is None


def test_orders_for_customer(store: DemoStore) -> None:
    total = 0
    for n in range(1, 51):
        orders = store.orders_for_customer(f"C{n:05d}")
        assert all(order.customer_id == f"C{n:05d}" for order in orders)
        created = [order.created_at for order in orders]
        assert created == sorted(created, reverse=True)
        total += len(orders)
    assert total == 200
    assert store.orders_for_customer("C99999") == []


# --------------------------------------------------------------------------- tickets


def test_create_ticket_is_idempotent(tmp_path: Path) -> None:
    store = DemoStore.seed(tmp_path / "store.db", customers=3, products=3, orders=3)
    first = store.create_ticket(_ticket())
    assert first.status == "open" and first.customer_id == "C00001"
    # A retried activity, even one that computed slightly different fields, gets the first row.
    again = store.create_ticket(_ticket(summary="changed", created_at="2026-11-01T12:31:00+08:00"))
    assert again == first
    assert store.count("tickets") == 1
    store.create_ticket(_ticket("TK-0002", customer_id=None, language="en"))
    assert store.count("tickets") == 2
    assert store.get_ticket("TK-0002").customer_id is None
    assert [t.ticket_id for t in store.tickets_for_session("sess-1")] == ["TK-0001", "TK-0002"]
    assert store.set_ticket_status("TK-0001", "escalated").status == "escalated"
    assert store.get_ticket("missing") is None


def test_update_ticket_sets_the_workflow_fields_and_is_idempotent(tmp_path: Path) -> None:
    store = DemoStore.seed(tmp_path / "store.db", customers=3, products=3, orders=3)
    store.create_ticket(_ticket())
    fields = dict(status="escalated", priority="high", assignee="agent-7", note="SLA breached", updated_at="2026-12-07T10:00:00+00:00")
    first = store.update_ticket("TK-0001", **fields)
    assert (first.status, first.priority, first.assignee, first.note) == ("escalated", "high", "agent-7", "SLA breached")
    assert store.update_ticket("TK-0001", **fields) == first
    assert store.update_ticket("missing", **fields) is None
    with pytest.raises(ValueError, match="unknown ticket status"):
        store.update_ticket("TK-0001", **{**fields, "status": "lost"})


def test_a_store_from_before_ticket_slas_gains_the_columns_and_keeps_its_tickets(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE tickets (ticket_id TEXT PRIMARY KEY, session_id TEXT, customer_id TEXT NULL, category TEXT,"
                 " summary TEXT, language TEXT, status TEXT DEFAULT 'open', created_at TEXT)")
    conn.execute("INSERT INTO tickets VALUES ('TK-OLD', 's', NULL, 'handoff', 'customer: hi', 'en', 'open', '2026-12-01T00:00:00+00:00')")
    conn.commit()
    conn.close()
    old = DemoStore(path).get_ticket("TK-OLD")
    assert (old.status, old.priority, old.assignee, old.note) == ("open", "normal", "", "")


def test_ticket_is_visible_to_a_second_connection(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    writer = DemoStore.seed(path, customers=3, products=3, orders=3)
    created = writer.create_ticket(_ticket())
    assert DemoStore(path).get_ticket("TK-0001") == created
    conn = sqlite3.connect(path, timeout=10)
    try:
        row = conn.execute("SELECT ticket_id, session_id, status FROM tickets").fetchall()
    finally:
        conn.close()
    assert row == [("TK-0001", "sess-1", "open")]


def _create_tickets(path: str, ids: list[str]) -> None:
    store = DemoStore(path)
    for ticket_id in ids:
        store.create_ticket(_ticket(ticket_id))


def test_tickets_from_several_processes(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    DemoStore.seed(path, customers=3, products=3, orders=3)
    ids = [f"TK-{n:04d}" for n in range(20)]
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=_create_tickets, args=(str(path), ids)) for _ in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=60)
        assert w.exitcode == 0
    store = DemoStore(path)
    assert store.count("tickets") == len(ids)
    assert all(store.get_ticket(ticket_id) is not None for ticket_id in ids)
