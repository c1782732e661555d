"""kefu's state in PostgreSQL (``KEFU_STATE_POSTGRES_DSN``) beyond the sessions: tickets, the
ticket outbox, the ticket ids Dialog hands out, and the store behind the ERP port (its
documents, operations and after-sales steps), against the real PostgreSQL the suite
starts (the ``postgres`` fixture, tests/conftest.py). Several store objects on one
database stand for several Dialog and worker processes; the ticket tests also run on
SQLite, the embedded default, where the behaviour must be the same."""

from __future__ import annotations

import asyncio
import itertools
import multiprocessing
import sqlite3
import threading
import uuid
from pathlib import Path

import pytest

from services.config import REPO_ROOT, KefuConfig
from services.demo.store import DemoStore, NewTicket, open_demo_store
from services.dialog.ticket_outbox import TicketOutbox, open_outbox
from services.erp import ensure_demo_store, open_store, reset_store
from services.erp.after_sales import AfterSales, AfterSalesRejected
from services.erp.demo_store import DemoRetailStore
from services.erp.tau_retail import StoreUnavailable, export_tau_retail, remove_store, store_format
from services.errors import Unavailable
from services.state_db import StateDB, shared, translate
from workflows.tickets.types import TicketRequest


def _ticket(ticket_id: str, session_id: str, at: str = "2026-12-07T10:00:00+00:00") -> NewTicket:
    return NewTicket(ticket_id=ticket_id, session_id=session_id, category="complaint", summary="customer: 转人工",
                     language="zh", customer_id="C00001", created_at=at, context='{"reason": "asked"}')


def _tag() -> str:
    """Ids of this test's own: the database is shared by the whole run."""
    return uuid.uuid4().hex[:8].upper()


def _seeded(path: Path) -> Path:
    DemoStore.seed(path, customers=3, products=3, orders=3)
    return path


@pytest.fixture(params=["sqlite", "postgres"])
def dsn(request) -> str:
    """"" (SQLite, the embedded default) or the PostgreSQL dsn."""
    return request.getfixturevalue("postgres") if request.param == "postgres" else ""


# --------------------------------------------------------------------------- the dialect


def test_sqlite_statements_are_translated_for_postgres():
    assert translate("SELECT a FROM t WHERE b=? AND c LIKE 'x%'") == "SELECT a FROM t WHERE b=%s AND c LIKE 'x%%'"
    assert translate("INSERT OR IGNORE INTO m(a) VALUES(?) RETURNING id") == "INSERT INTO m(a) VALUES(%s) ON CONFLICT DO NOTHING RETURNING id"
    assert translate("INSERT OR IGNORE INTO m(a) VALUES(?)") == "INSERT INTO m(a) VALUES(%s) ON CONFLICT DO NOTHING"
    assert translate("UPDATE s SET d=MAX(d, ?)") == "UPDATE s SET d=GREATEST(d, %s)"
    assert translate("SELECT lower(json_extract(doc, '$.name.first_name'))") == "SELECT lower((doc::jsonb #>> '{name,first_name}'))"
    assert translate("CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT, n INTEGER, x REAL)") == (
        "CREATE TABLE t (id BIGSERIAL PRIMARY KEY, n BIGINT, x DOUBLE PRECISION)"
    )
    assert translate("SELECT COUNT(*) FROM t WHERE n INTEGER") == "SELECT COUNT(*) FROM t WHERE n INTEGER"  # types only in DDL


def test_a_failed_transaction_writes_nothing(dsn, tmp_path):
    db = StateDB(tmp_path / "state.db", dsn=dsn)
    table = f"atomic_{_tag().lower()}"
    db.create(f"CREATE TABLE IF NOT EXISTS {table} (k TEXT PRIMARY KEY, n INTEGER NOT NULL)")
    with pytest.raises(RuntimeError):
        with db.transaction() as conn:
            conn.execute(f"INSERT INTO {table}(k, n) VALUES (?, ?)", ("a", 1))
            raise RuntimeError("the process fails half-way")
    with db.transaction() as conn:
        conn.execute(f"INSERT INTO {table}(k, n) VALUES (?, ?)", ("b", 2))
    with db.connection() as conn:
        assert conn.execute(f"SELECT k FROM {table}").fetchall() == [("b",)]


# --------------------------------------------------------------------------- tickets


def test_tickets_written_by_one_process_are_seen_by_another(dsn, tmp_path):
    # Two processes with a demo catalogue each (two pods), one PostgreSQL; on SQLite the
    # processes share one file, as in one home.
    first_path = _seeded(tmp_path / "a" / "store.db")
    second_path = _seeded(tmp_path / "b" / "store.db") if dsn else first_path
    worker, dialog = DemoStore(first_path, dsn=dsn), DemoStore(second_path, dsn=dsn)
    tag = _tag()
    session = f"sess-{tag}"
    one = worker.create_ticket(_ticket(f"TK-{tag}-1", session))
    two = dialog.create_ticket(_ticket(f"TK-{tag}-2", session, at="2026-12-07T10:05:00+00:00"))
    assert dialog.get_ticket(one.ticket_id) == one and worker.get_ticket(two.ticket_id) == two
    for store in (worker, dialog):
        assert [t.ticket_id for t in store.tickets_for_session(session)] == [one.ticket_id, two.ticket_id]
    # A retried activity (in either process) gets the first row back, unchanged.
    assert dialog.create_ticket(_ticket(one.ticket_id, session, at="2026-12-08T00:00:00+00:00")) == one
    assert one.context == '{"reason": "asked"}' and (one.status, one.priority) == ("open", "normal")

    assert worker.set_ticket_status(one.ticket_id, "escalated").status == "escalated"
    assert dialog.get_ticket(one.ticket_id).status == "escalated"
    updated = dialog.update_ticket(two.ticket_id, status="pending", priority="high", assignee="agent-7", note="rang back",
                                   updated_at="2026-12-07T11:00:00+00:00")
    assert worker.get_ticket(two.ticket_id) == updated
    assert (updated.status, updated.priority, updated.assignee, updated.note) == ("pending", "high", "agent-7", "rang back")
    ours = {one.ticket_id, two.ticket_id}
    assert [t.ticket_id for t in worker.active_tickets(("escalated",)) if t.ticket_id in ours] == [one.ticket_id]
    assert {t.ticket_id for t in dialog.active_tickets() if t.ticket_id in ours} == ours
    worker.set_ticket_status(one.ticket_id, "resolved")
    assert [t.ticket_id for t in dialog.active_tickets() if t.ticket_id in ours] == [two.ticket_id]
    assert worker.get_ticket(f"TK-{tag}-none") is None and worker.update_ticket(
        f"TK-{tag}-none", status="open", priority="normal", assignee="", note="", updated_at="") is None
    if dsn:  # the tickets are in PostgreSQL, not in either file
        for path in (first_path, second_path):
            assert sqlite3.connect(path).execute("SELECT COUNT(*) FROM tickets").fetchone()[0] == 0


def test_the_configuration_puts_the_tickets_in_postgres(postgres, tmp_path):
    cfg = KefuConfig()
    cfg.home = str(tmp_path / "home")
    _seeded(cfg.store_path)
    cfg.state.postgres_dsn = postgres
    tag = _tag()
    open_demo_store(cfg).create_ticket(_ticket(f"TK-{tag}", f"sess-{tag}"))
    assert DemoStore(tmp_path / "elsewhere.db", dsn=postgres).get_ticket(f"TK-{tag}") is not None
    assert DemoStore(cfg.store_path).get_ticket(f"TK-{tag}") is None  # not in the home's file


def _create_tickets(path: str, dsn: str, ids: list[str]) -> None:
    store = DemoStore(path, dsn=dsn)
    for ticket_id in ids:
        store.create_ticket(_ticket(ticket_id, "sess-many"))


def test_processes_creating_the_same_tickets_at_once_create_each_once(postgres, tmp_path):
    path = _seeded(tmp_path / "store.db")
    tag = _tag()
    ids = [f"TK-{tag}-{n:02d}" for n in range(15)]
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=_create_tickets, args=(str(path), postgres, ids)) for _ in range(3)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=60)
        assert w.exitcode == 0
    store = DemoStore(path, dsn=postgres)
    assert sorted(t.ticket_id for t in store.tickets_for_session("sess-many") if t.ticket_id.startswith(f"TK-{tag}")) == ids
    assert sqlite3.connect(path).execute("SELECT COUNT(*) FROM tickets").fetchone()[0] == 0  # all in PostgreSQL


# --------------------------------------------------------------------------- ticket ids


def test_an_id_given_to_one_dialog_is_never_given_to_another(dsn, tmp_path):
    tag = _tag()
    first, second = TicketOutbox(tmp_path / "sessions.db", dsn=dsn), TicketOutbox(tmp_path / "sessions.db", dsn=dsn)
    draws = iter([f"TK-{tag}-A", f"TK-{tag}-A", f"TK-{tag}-A", f"TK-{tag}-B"])  # the random suffix repeats
    assert first.reserve_id("s1", lambda: next(draws)) == f"TK-{tag}-A"
    assert second.reserve_id("s2", lambda: next(draws)) == f"TK-{tag}-B"
    with pytest.raises(RuntimeError, match="no free ticket id"):
        first.reserve_id("s3", lambda: f"TK-{tag}-A", tries=3)


def test_dialogs_drawing_ids_at_once_get_different_ones(postgres):
    # Eight "processes" (threads, each with its own connection) draw from only 40 ids.
    tag = _tag()
    space = [f"TK-{tag}-{n:02d}" for n in range(40)]
    got: list[str] = []
    lock = threading.Lock()

    def dialog(n: int) -> None:
        outbox = TicketOutbox(dsn=postgres)
        draws = itertools.cycle(space[n:] + space[:n])
        for _ in range(5):
            ticket_id = outbox.reserve_id(f"s{n}", lambda: next(draws), tries=40)
            with lock:
                got.append(ticket_id)

    threads = [threading.Thread(target=dialog, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(got) == 40 and len(set(got)) == 40


# --------------------------------------------------------------------------- the outbox


def _request(ticket_id: str) -> TicketRequest:
    return TicketRequest(ticket_id=ticket_id, session_id=f"sess-{ticket_id}", category="complaint", summary="customer: 转人工",
                         language="zh", customer_id="C00001")


def test_a_ticket_queued_by_one_dialog_is_opened_by_another(dsn, tmp_path):
    from services.dialog.tickets import TicketDesk

    cfg = KefuConfig()
    cfg.home = str(tmp_path / "home")
    cfg.state.postgres_dsn = dsn
    away, back = open_outbox(cfg), open_outbox(cfg)  # two Dialog processes
    tag = _tag()
    ours = [f"TK-{tag}-1", f"TK-{tag}-2"]
    for ticket_id in ours:
        away.queue(_request(ticket_id))
    away.queue(_request(ours[0]))  # queued twice: kept once
    assert [r.ticket_id for r in back.pending() if r.ticket_id in ours] == ours
    assert back.pending()[0].session_id.startswith("sess-")

    desk = TicketDesk(cfg, outbox=back)
    started: list[str] = []
    temporal_up = False

    async def start(request, workflow_id):  # noqa: ANN001 - the desk's Temporal call, stood in for
        if not temporal_up:
            raise Unavailable("the workflow engine is unavailable")
        started.append(workflow_id)

    desk._start = start  # type: ignore[method-assign]
    assert asyncio.run(desk.open_queued()) == 0  # still away: nothing opened, nothing lost
    assert [r.ticket_id for r in away.pending() if r.ticket_id in ours] == ours
    assert away.attempts(ours[0]) == (1, "the workflow engine is unavailable")
    temporal_up = True
    asyncio.run(desk.open_queued())
    assert [w for w in started if tag in w] == [f"ticket-{ours[0]}", f"ticket-{ours[1]}"]
    assert not [r for r in away.pending() if r.ticket_id in ours] and away.attempts(ours[0]) is None


# --------------------------------------------------------------------------- the store behind the ERP port


def _pods(tmp_path: Path, dsn: str) -> list[KefuConfig]:
    """The configurations of two processes (a Dialog and a worker, say) with homes of their
    own and one PostgreSQL."""
    cfgs = []
    for name in ("dialog", "worker"):
        cfg = KefuConfig()
        cfg.home = str(tmp_path / name)
        cfg.state.postgres_dsn = dsn
        cfgs.append(cfg)
    return cfgs


def _orders(store, status: str) -> list:  # noqa: ANN001 - a store behind the port
    found = []
    for n in range(1, 51):
        found += [o for o in store.list_orders(f"C{n:05d}") if o.status == status]
    return found


def _applied(dsn: str) -> int:
    with shared(dsn).connection() as conn:
        return int(conn.execute("SELECT COUNT(*) FROM applied_operations").fetchone()[0])


def test_the_store_is_one_store_for_every_process(postgres, tmp_path):
    dialog_cfg, worker_cfg = _pods(tmp_path, postgres)
    reset_store(dialog_cfg)  # as `kefu up` and the chart's init container do
    assert not dialog_cfg.erp_path.exists() and not worker_cfg.erp_path.exists()  # not in either home
    assert ensure_demo_store(worker_cfg) is False  # the other process finds it: kept
    a, b = open_store(dialog_cfg), open_store(worker_cfg)
    assert isinstance(a, DemoRetailStore) and isinstance(b, DemoRetailStore)
    assert a.counts() == b.counts() and b.counts()["orders"] > 100 and b.counts()["applied_operations"] == 0
    assert b.find_customer_by_email(" USER0001@example.com") == "C00001"  # json_extract on PostgreSQL
    assert b.find_customer_by_phone(a.get_customer("C00001").phone) == "C00001"
    assert b.list_orders("C00001") == a.list_orders("C00001") and len(a.list_orders("C00001")) >= 2

    pending = _orders(a, "pending")
    order, other = pending[0], pending[1]
    args = {"order_id": order.order_id, "reason": "no longer needed"}
    assert a.check("cancel_pending_order", args).done and b.get_order(order.order_id).status == "pending"  # check writes nothing
    done = a.apply("cancel_pending_order", args, key="wf-cancel-1")
    assert done.done and b.get_order(order.order_id).status == "cancelled" and _applied(postgres) == 1
    again = b.apply("cancel_pending_order", args, key="wf-cancel-1")  # the activity retried, in the other process
    assert again.done and again.order == done.order and _applied(postgres) == 1
    misused = b.apply("cancel_pending_order", {**args, "order_id": other.order_id}, key="wf-cancel-1")
    assert misused.code == "invalid_arguments" and a.get_order(other.order_id).status == "pending"
    refused = b.apply("cancel_pending_order", args, key="wf-cancel-2")
    assert refused.code == "wrong_status" and _applied(postgres) == 1  # a rejection records nothing


def test_operations_from_several_processes_on_one_order_are_serialized(postgres, tmp_path):
    cfg, _ = _pods(tmp_path, postgres)
    reset_store(cfg)
    orders = [o.order_id for o in _orders(open_store(cfg), "pending")[:4]]
    results: dict[str, list[str]] = {o: [] for o in orders}
    barrier = threading.Barrier(2 * len(orders))

    def cancel(order_id: str, n: int) -> None:
        store = open_store(cfg)  # a connection of its own
        barrier.wait()
        result = store.apply("cancel_pending_order", {"order_id": order_id, "reason": "ordered by mistake"}, key=f"wf-{order_id}-{n}")
        results[order_id].append(result.status if result.done else result.code)

    threads = [threading.Thread(target=cancel, args=(o, n)) for o in orders for n in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    # Without the write lock both would read "pending" and both would cancel (and refund).
    assert {o: sorted(r) for o, r in results.items()} == {o: ["done", "wrong_status"] for o in orders}
    store = open_store(cfg)
    for order_id in orders:
        assert len([p for p in store.get_order(order_id).payments if p.transaction_type == "refund"]) == 1


def test_after_sales_steps_are_shared_once_only_and_all_or_nothing(postgres, tmp_path, monkeypatch):
    import services.erp.after_sales as after_sales_module

    dialog_cfg, worker_cfg = _pods(tmp_path, postgres)
    reset_store(dialog_cfg)
    store, elsewhere = open_store(dialog_cfg), open_store(worker_cfg)
    order = next(
        o for o in _orders(store, "delivered")
        if store.check("return_delivered_order_items", _return_args(o)).done and "gift_card" not in o.payments[0].payment_method_id
    )
    assert store.apply("return_delivered_order_items", _return_args(order), key="wf-return").done
    first, second = AfterSales(store), AfterSales(elsewhere)
    authorized = first.authorize_return(order.order_id, "return", key="ret/authorize")
    assert second.authorize_return(order.order_id, "return", key="ret/authorize") == authorized
    before = elsewhere.get_order(order.order_id)

    def broken_clock() -> str:
        raise RuntimeError("the process fails after the order was written")

    monkeypatch.setattr(after_sales_module, "_now", broken_clock)
    with pytest.raises(RuntimeError):  # the refund line was written, then the step failed: rolled back
        second.refund(order.order_id, authorized["amount"], authorized["payment_method_id"], key="ret/refund", order_status="returned")
    monkeypatch.undo()
    assert elsewhere.get_order(order.order_id) == before and first.refunds_for(order.order_id) == []
    with pytest.raises(AfterSalesRejected):
        first.refund(order.order_id, 1.0, "no_such_method", key="ret/bad")

    refund = second.refund(order.order_id, authorized["amount"], authorized["payment_method_id"], key="ret/refund", order_status="returned")
    assert first.refund(order.order_id, authorized["amount"], authorized["payment_method_id"], key="ret/refund",
                        order_status="returned") == refund  # retried in the other process: paid once
    assert refund["status"] == "pending" and [r["refund_id"] for r in first.refunds_for(order.order_id)] == [refund["refund_id"]]
    after = store.get_order(order.order_id)
    assert after.status in ("returned", "partially returned")
    assert len([p for p in after.payments if p.transaction_type == "refund"]) == 1
    assert first.complete_refund(refund["refund_id"])["status"] == "completed"
    assert second.get_refund(refund["refund_id"])["status"] == "completed"


def _return_args(order) -> dict:  # noqa: ANN001 - port.Order
    return {"order_id": order.order_id, "item_ids": [order.items[0].item_id], "payment_method_id": order.payments[0].payment_method_id}


def test_export_import_and_reset_on_postgres(postgres, tmp_path):
    from services.erp.demo_store import build_demo_store

    cfg, other = _pods(tmp_path, postgres)
    reset_store(cfg)
    # The same documents as the demo store built in a file, keys in their order (text equal).
    build_demo_store(cfg.store_path, tmp_path / "file-erp.db")
    export_tau_retail(cfg.erp_path, tmp_path / "from-postgres", fmt=None, dsn=postgres)
    export_tau_retail(tmp_path / "file-erp.db", tmp_path / "from-file", fmt=None)
    for name in ("users.json", "orders.json", "products.json"):
        assert (tmp_path / "from-postgres" / name).read_text(encoding="utf-8") == (tmp_path / "from-file" / name).read_text(encoding="utf-8")
    held = open_store(other)  # a process holding the store object while it is removed
    assert remove_store(cfg.erp_path, dsn=postgres) is True and remove_store(cfg.erp_path, dsn=postgres) is False
    assert store_format(cfg.erp_path, dsn=postgres) is None and open_store(other) is None
    with pytest.raises(StoreUnavailable):
        held.apply("cancel_pending_order", {"order_id": "KF2026110100299", "reason": "no longer needed"})
    # Two processes starting at once (the chart's init containers) build it once.
    built: list[bool] = []
    barrier = threading.Barrier(2)

    def start(c: KefuConfig) -> None:
        barrier.wait()
        built.append(ensure_demo_store(c))

    threads = [threading.Thread(target=start, args=(c,)) for c in (cfg, other)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(built) == [False, True] and open_store(cfg).format == "demo"


def test_the_store_commands_work_on_postgres(postgres, tmp_path, monkeypatch, capsys):
    from services.cli import main

    monkeypatch.delenv("KEFU_CONFIG", raising=False)
    monkeypatch.setenv("KEFU_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("KEFU_STATE_POSTGRES_DSN", postgres)
    assert main(["store", "reset"]) == 0
    assert "the demo store is active in PostgreSQL" in capsys.readouterr().out
    assert main(["store", "show"]) == 0
    assert "store: demo in PostgreSQL" in capsys.readouterr().out
    assert not (tmp_path / "home" / "erp.db").exists()


def test_an_unreachable_postgres_is_unavailable_not_internal(tmp_path):
    import grpc
    import psycopg

    from services.dialog.sessions import SessionStore
    from services.errors import state_error
    from tests.triton_fixtures import free_ports

    (port,) = free_ports(1)
    with pytest.raises(psycopg.OperationalError) as failed:
        SessionStore(dsn=f"postgresql://kefu@127.0.0.1:{port}/kefu?connect_timeout=2")
    mapped = state_error(failed.value)
    assert isinstance(mapped, Unavailable) and mapped.code == grpc.StatusCode.UNAVAILABLE and "PostgreSQL" in str(mapped)
    assert state_error(ValueError("x")).__class__ is ValueError
    assert isinstance(state_error(sqlite3.OperationalError("database is locked")), Unavailable)


TAU_DATA = REPO_ROOT.parent / "shared" / "data" / "tau_bench_retail" / "data"


@pytest.mark.skipif(not (TAU_DATA / "orders.json").is_file(), reason=f"τ-bench retail data not found at {TAU_DATA}")
def test_a_tau_bench_store_imported_into_postgres_exports_its_input(postgres, tmp_path):
    import json

    from services.erp.tau_retail import FORMAT, TauRetailStore, import_tau_retail

    assert import_tau_retail(TAU_DATA, tmp_path / "unused.db", dsn=postgres) == {"customers": 500, "orders": 1000, "products": 50}
    assert store_format(tmp_path / "unused.db", dsn=postgres) == FORMAT and not (tmp_path / "unused.db").exists()
    export_tau_retail(tmp_path / "unused.db", tmp_path / "out", dsn=postgres)
    for name in ("users.json", "orders.json", "products.json"):
        source = json.loads((TAU_DATA / name).read_text(encoding="utf-8"))
        back = json.loads((tmp_path / "out" / name).read_text(encoding="utf-8"))
        assert back == source and list(back) == list(source), name
        if name == "orders.json":  # key order inside a record too (the documents are TEXT, not jsonb)
            assert list(back["#W2611340"]) == list(source["#W2611340"])
            assert list(back["#W2611340"]["address"]) == ["address1", "address2", "city", "country", "state", "zip"]
    store = TauRetailStore(tmp_path / "unused.db", dsn=postgres)
    user_id, user = next(iter(json.loads((TAU_DATA / "users.json").read_text(encoding="utf-8")).items()))
    name = user["name"]
    assert store.find_customer_by_name_zip(f" {name['first_name'].upper()}", name["last_name"], user["address"]["zip"]) == user_id
    assert store.find_customer_by_email(user["email"]) == user_id and store.get_customer(user_id).email == user["email"]
