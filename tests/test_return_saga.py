"""Returns, exchanges and refunds as sagas (workflows/returns) on the suite's real Temporal
dev server and kefu worker, against the τ-bench retail store imported into the stack's
home: a confirmed return starts the saga (through StoreOperationWorkflow, as Dialog runs
it), ERP events go in through the Dialog process's ErpEvents service, the customer is told
in their session (zh + en), and the store changes once. Timers are seconds here, not
skipped. The crash test runs its own worker processes on their own task queue."""

from __future__ import annotations

import asyncio
import copy
import json
import os
import secrets
import sqlite3
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

import grpc
import pytest
from temporalio.client import Client
from temporalio.worker import Replayer

from kefu.v1 import erp_pb2, erp_pb2_grpc
from services.config import REPO_ROOT, KefuConfig, load_config, to_env
from services.dialog.sessions import SessionStore
from services.erp.tau_retail import TauRetailStore
from services.processes import ManagedProcess
from workflows.returns.types import ReturnRequest, ReturnState, ReturnTimers, StepCall, StepResult, workflow_id_for
from workflows.returns.workflow import ReturnWorkflow
from workflows.store_ops.types import OperationReceipt, OperationRequest

TAU_DATA = REPO_ROOT.parent / "shared/data/tau_bench_retail/data"
CRASH_MARKER_ENV = "KEFU_TEST_SAGA_CRASH_MARKER"  # not a config field: load_config ignores it
FAST = ReturnTimers(reminder_s=60, expire_s=120)  # long enough not to fire in a test that does not wait for them


# -- fixtures and helpers ------------------------------------------------------------
@pytest.fixture(scope="module")
def store(cfg: KefuConfig) -> Iterator[TauRetailStore]:
    """A fresh τ-bench store where the suite's worker opens it; the demo store afterwards."""
    from services.erp import reset_store
    from services.erp.tau_retail import import_tau_retail

    import_tau_retail(TAU_DATA, cfg.erp_path)
    yield TauRetailStore(cfg.erp_path)
    reset_store(cfg)


_taken: set[str] = set()


def pick_order(store: TauRetailStore, status: str, method: str, *, exchangeable: bool = False):
    """An order in ``status`` paid once with ``method`` not used by another test here; with
    ``exchangeable``, an item of it and another available variant."""
    with sqlite3.connect(store.path) as conn:
        docs = [json.loads(row[0]) for row in conn.execute("SELECT doc FROM orders ORDER BY pos")]
    for doc in docs:
        history = doc.get("payment_history", [])
        if doc["order_id"] in _taken or doc["status"] != status or len(history) != 1 or method not in history[0]["payment_method_id"]:
            continue
        order = store.get_order(doc["order_id"])
        pair = None
        if exchangeable:
            pair = next(
                ((i, v) for i in order.items for v in store.get_product(i.product_id).variants if v.available and v.item_id != i.item_id),
                None,
            )
            if pair is None:
                continue
        _taken.add(order.order_id)
        return order, pair
    raise AssertionError(f"no {status} order paid by {method}")


async def client_for(cfg: KefuConfig) -> Client:
    return await Client.connect(cfg.temporal_address, namespace=cfg.temporal.namespace)


async def confirm(cfg: KefuConfig, operation: str, args: dict, *, session_id: str, customer_id: str, language: str, timers: ReturnTimers) -> OperationReceipt:
    """The customer's confirmed operation, run as Dialog runs it (StoreOperationWorkflow)."""
    client = await client_for(cfg)
    request = OperationRequest(
        operation=operation, args_json=json.dumps(args), session_id=session_id, customer_id=customer_id,
        language=language, timers=timers,
    )
    return await client.execute_workflow(
        "StoreOperationWorkflow", request, id=f"op-{operation}-{secrets.token_hex(6)}", task_queue=cfg.temporal.task_queue,
        result_type=OperationReceipt,
    )


async def until(cfg: KefuConfig, order_id: str, ready: Callable[[ReturnState], bool], timeout: float = 30.0) -> ReturnState:
    handle = (await client_for(cfg)).get_workflow_handle(workflow_id_for(order_id))
    deadline = time.monotonic() + timeout
    while True:
        try:
            state = await handle.query("state", result_type=ReturnState)
        except Exception:  # noqa: BLE001 - not picked up by a worker yet
            state = None
        if state is not None and ready(state):
            return state
        assert time.monotonic() < deadline, f"the saga never got there: {state}"
        await asyncio.sleep(0.2)


def erp(cfg: KefuConfig) -> erp_pb2_grpc.ErpEventsStub:
    return erp_pb2_grpc.ErpEventsStub(grpc.insecure_channel(cfg.target("dialog")))


def report(cfg: KefuConfig, kind: str, order_id: str, *, event_id: str = "", accepted: bool = True, reason: str = "") -> erp_pb2.ErpEventReceipt:
    event = erp_pb2.ErpEvent(event_id=event_id or f"ev-{secrets.token_hex(4)}", kind=kind, order_id=order_id, accepted=accepted, reason=reason)
    return erp(cfg).Report(event, timeout=30)


def refused(cfg: KefuConfig, kind: str, order_id: str, **kw) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as err:
        report(cfg, kind, order_id, **kw)
    return err.value


def told(cfg: KefuConfig, session_id: str, *, count: int = 0, timeout: float = 15.0) -> list[str]:
    """kefu's messages in the session, once there are at least ``count`` (a notice follows
    the saga's step that it reports)."""
    deadline = time.monotonic() + timeout
    while True:
        texts = [m.text for m in SessionStore(cfg.sessions_path).messages(session_id) if m.author == "kefu"]
        if len(texts) >= count or time.monotonic() > deadline:
            return texts
        time.sleep(0.2)


def refunds(store: TauRetailStore, order_id: str) -> list[tuple[float, str]]:
    return [(p.amount, p.payment_method_id) for p in store.get_order(order_id).payments if p.transaction_type == "refund"]


# -- the paths -----------------------------------------------------------------------
def test_return_to_a_card_from_request_to_refund(cfg, store):
    order, _ = pick_order(store, "delivered", "credit_card")
    method = order.payments[0].payment_method_id
    session = SessionStore(cfg.sessions_path).create(customer_id=order.customer_id, channel="test")
    args = {"order_id": order.order_id, "item_ids": [order.items[0].item_id], "payment_method_id": method}

    async def scenario():
        receipt = await confirm(cfg, "return_delivered_order_items", args, session_id=session.session_id,
                                customer_id=order.customer_id, language="zh", timers=FAST)
        assert receipt.done and receipt.saga_workflow_id == workflow_id_for(order.order_id)
        waiting = await until(cfg, order.order_id, lambda s: s.status == "awaiting_parcel")
        assert waiting.rma_id and waiting.label and waiting.refund_amount == pytest.approx(order.items[0].price)
        return waiting

    waiting = asyncio.run(scenario())
    assert any(waiting.rma_id in t and waiting.label in t and "寄回" in t for t in told(cfg, session.session_id, count=1))

    parcel = report(cfg, "parcel_received", order.order_id, event_id="erp-parcel-1")
    assert parcel.outcome == erp_pb2.ERP_EVENT_OUTCOME_ACCEPTED and parcel.workflow_id == workflow_id_for(order.order_id)
    asyncio.run(until(cfg, order.order_id, lambda s: s.status == "inspecting"))
    # The same event again, under its id or under another: nothing changes.
    assert report(cfg, "parcel_received", order.order_id, event_id="erp-parcel-1").outcome == erp_pb2.ERP_EVENT_OUTCOME_DUPLICATE
    assert report(cfg, "parcel_received", order.order_id).outcome == erp_pb2.ERP_EVENT_OUTCOME_DUPLICATE
    assert report(cfg, "inspection_result", order.order_id, accepted=True).outcome == erp_pb2.ERP_EVENT_OUTCOME_ACCEPTED
    pending = asyncio.run(until(cfg, order.order_id, lambda s: s.status == "refund_pending"))
    assert pending.refund_status == "pending" and pending.refund_method == method
    status = erp(cfg).GetReturn(erp_pb2.GetReturnRequest(order_id=order.order_id), timeout=30)
    assert (status.status, status.refund_status, status.running) == ("refund_pending", "pending", True)
    assert refunds(store, order.order_id) == [(order.items[0].price, method)]
    assert store.get_order(order.order_id).status == ("returned" if len(order.items) == 1 else "partially returned")

    assert report(cfg, "refund_completed", order.order_id).outcome == erp_pb2.ERP_EVENT_OUTCOME_ACCEPTED
    done = asyncio.run(until(cfg, order.order_id, lambda s: s.status == "refunded"))
    assert done.refund_status == "completed"
    assert refunds(store, order.order_id) == [(order.items[0].price, method)]  # paid once
    messages = told(cfg, session.session_id, count=4)  # authorised, received, refund issued, refunded
    assert any("已收到" in t for t in messages) and any("已到账" in t for t in messages)
    # After the end: a repeated event is still a duplicate, a new kind changes nothing.
    assert report(cfg, "refund_completed", order.order_id).outcome == erp_pb2.ERP_EVENT_OUTCOME_DUPLICATE
    assert refused(cfg, "shipment_delivered", order.order_id).code() == grpc.StatusCode.FAILED_PRECONDITION


def test_bad_events_get_a_clear_status_and_change_nothing(cfg, store):
    order, _ = pick_order(store, "delivered", "credit_card")
    args = {"order_id": order.order_id, "item_ids": [order.items[0].item_id], "payment_method_id": order.payments[0].payment_method_id}

    async def scenario():
        await confirm(cfg, "return_delivered_order_items", args, session_id="", customer_id=order.customer_id, language="en", timers=FAST)
        return await until(cfg, order.order_id, lambda s: s.status == "awaiting_parcel")

    asyncio.run(scenario())
    early = refused(cfg, "inspection_result", order.order_id)
    assert early.code() == grpc.StatusCode.FAILED_PRECONDITION and early.details().startswith("inspection_result is not expected"), early.details()
    assert "waits for parcel_received" in early.details()
    assert refused(cfg, "parcel_arrived", order.order_id).code() == grpc.StatusCode.INVALID_ARGUMENT
    assert refused(cfg, "parcel_received", "#W0000000").code() == grpc.StatusCode.NOT_FOUND
    assert refused(cfg, "parcel_received", "").code() == grpc.StatusCode.INVALID_ARGUMENT
    # Not an order id (it would name a workflow): refused before it reaches Temporal.
    for odd in ("#W1\x00", "x" * 65, "a b", "订单/1"):
        assert refused(cfg, "parcel_received", odd).code() == grpc.StatusCode.INVALID_ARGUMENT, odd
    with pytest.raises(grpc.RpcError) as missing:
        erp(cfg).Report(erp_pb2.ErpEvent(kind="parcel_received", order_id=order.order_id), timeout=30)
    assert missing.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    state = asyncio.run(until(cfg, order.order_id, lambda s: True))
    assert state.status == "awaiting_parcel" and state.event_ids == []


def test_a_parcel_that_never_comes_expires_the_return(cfg, store):
    order, _ = pick_order(store, "delivered", "paypal")
    session = SessionStore(cfg.sessions_path).create(customer_id=order.customer_id, channel="test")
    args = {"order_id": order.order_id, "item_ids": [order.items[0].item_id], "payment_method_id": order.payments[0].payment_method_id}

    async def scenario():
        await confirm(cfg, "return_delivered_order_items", args, session_id=session.session_id, customer_id=order.customer_id,
                      language="en", timers=ReturnTimers(reminder_s=1.0, expire_s=3.0))
        return await until(cfg, order.order_id, lambda s: s.status == "expired")

    expired = asyncio.run(scenario())
    assert [e.kind for e in expired.timeline if not e.kind.startswith("told:")] == ["awaiting_parcel", "expired"]
    assert store.get_order(order.order_id) == order  # delivered again, the request withdrawn
    messages = told(cfg, session.session_id, count=3)
    assert len(messages) == 3 and "reminder" in messages[1].lower() and "cancelled" in messages[2]
    assert refused(cfg, "parcel_received", order.order_id).code() == grpc.StatusCode.FAILED_PRECONDITION


def test_goods_that_fail_inspection_are_not_refunded(cfg, store):
    order, _ = pick_order(store, "delivered", "gift_card")
    session = SessionStore(cfg.sessions_path).create(customer_id=order.customer_id, channel="test")
    args = {"order_id": order.order_id, "item_ids": [order.items[0].item_id], "payment_method_id": order.payments[0].payment_method_id}

    async def scenario():
        await confirm(cfg, "return_delivered_order_items", args, session_id=session.session_id, customer_id=order.customer_id,
                      language="en", timers=FAST)
        await until(cfg, order.order_id, lambda s: s.status == "awaiting_parcel")

    asyncio.run(scenario())
    report(cfg, "parcel_received", order.order_id)
    asyncio.run(until(cfg, order.order_id, lambda s: s.status == "inspecting"))
    report(cfg, "inspection_result", order.order_id, accepted=False, reason="the seal is broken and parts are missing")
    rejected = asyncio.run(until(cfg, order.order_id, lambda s: s.status == "rejected"))
    assert rejected.reason == "the seal is broken and parts are missing" and not rejected.refund_id
    assert refunds(store, order.order_id) == [] and store.get_order(order.order_id).status == "delivered"
    assert "the seal is broken" in told(cfg, session.session_id, count=3)[-1]


def test_an_exchange_ships_the_replacement_and_ends_when_delivered(cfg, store):
    order, (item, variant) = pick_order(store, "delivered", "gift_card", exchangeable=True)
    session = SessionStore(cfg.sessions_path).create(customer_id=order.customer_id, channel="test")
    args = {"order_id": order.order_id, "item_ids": [item.item_id], "new_item_ids": [variant.item_id],
            "payment_method_id": order.payments[0].payment_method_id}

    async def scenario():
        receipt = await confirm(cfg, "exchange_delivered_order_items", args, session_id=session.session_id,
                                customer_id=order.customer_id, language="zh", timers=FAST)
        assert receipt.done, receipt
        await until(cfg, order.order_id, lambda s: s.status == "awaiting_parcel" and s.kind == "exchange")

    asyncio.run(scenario())
    report(cfg, "parcel_received", order.order_id)
    asyncio.run(until(cfg, order.order_id, lambda s: s.status == "inspecting"))
    report(cfg, "inspection_result", order.order_id, accepted=True)
    shipped = asyncio.run(until(cfg, order.order_id, lambda s: s.status == "replacement_shipped"))
    after = store.get_order(order.order_id)
    assert after.status == "exchanged" and after.fulfillments[-1].tracking_ids == [shipped.tracking_id]
    assert variant.item_id in [i.item_id for i in after.items]
    assert any(shipped.tracking_id in t and "换货" in t for t in told(cfg, session.session_id, count=3))
    report(cfg, "shipment_delivered", order.order_id)
    asyncio.run(until(cfg, order.order_id, lambda s: s.status == "exchanged"))


def test_an_exchange_that_cannot_ship_is_refunded_instead_and_finance_gets_a_ticket(cfg, store):
    from services.demo.store import DemoStore

    order, (item, variant) = pick_order(store, "delivered", "gift_card", exchangeable=True)
    method = order.payments[0].payment_method_id
    session = SessionStore(cfg.sessions_path).create(customer_id=order.customer_id, channel="test")
    args = {"order_id": order.order_id, "item_ids": [item.item_id], "new_item_ids": [variant.item_id], "payment_method_id": method}

    async def scenario():
        assert (await confirm(cfg, "exchange_delivered_order_items", args, session_id=session.session_id,
                              customer_id=order.customer_id, language="en", timers=FAST)).done
        await until(cfg, order.order_id, lambda s: s.status == "awaiting_parcel")

    asyncio.run(scenario())
    with sqlite3.connect(store.path) as conn:  # the replacement sells out while the parcel travels
        doc = json.loads(conn.execute("SELECT doc FROM products WHERE product_id = ?", (item.product_id,)).fetchone()[0])
        doc["variants"][variant.item_id]["available"] = False
        conn.execute("UPDATE products SET doc = ? WHERE product_id = ?", (json.dumps(doc), item.product_id))
    report(cfg, "parcel_received", order.order_id)
    asyncio.run(until(cfg, order.order_id, lambda s: s.status == "inspecting"))
    report(cfg, "inspection_result", order.order_id)
    state = asyncio.run(until(cfg, order.order_id, lambda s: s.status == "needs_attention"))
    # Compensated: the goods came back and no replacement can ship, so their value is refunded.
    assert refunds(store, order.order_id) == [(item.price, method)]
    assert store.get_order(order.order_id).status == ("returned" if len(order.items) == 1 else "partially returned")
    assert state.refund_status == "completed"
    ticket = None
    for _ in range(75):
        ticket = DemoStore(cfg.store_path).get_ticket(state.ticket_id)
        if ticket is not None:
            break
        time.sleep(0.2)
    assert ticket is not None and ticket.category == "finance" and "no longer available" in ticket.summary
    assert state.ticket_id in told(cfg, session.session_id, count=4)[-1]


@pytest.mark.parametrize("method, final", [("credit_card", "refund_pending"), ("gift_card", "refunded")])
def test_a_cancellation_refund_is_tracked_until_paid(cfg, store, method, final):
    order, _ = pick_order(store, "pending", method)

    async def scenario():
        receipt = await confirm(cfg, "cancel_pending_order", {"order_id": order.order_id, "reason": "no longer needed"},
                                session_id="", customer_id=order.customer_id, language="en", timers=FAST)
        assert receipt.done and receipt.saga_workflow_id
        return await until(cfg, order.order_id, lambda s: s.status == final)

    state = asyncio.run(scenario())
    assert state.kind == "cancellation" and state.refund_amount == pytest.approx(order.payments[0].amount)
    if final == "refund_pending":
        report(cfg, "refund_completed", order.order_id)
        assert asyncio.run(until(cfg, order.order_id, lambda s: s.status == "refunded")).refund_status == "completed"
    assert refunds(store, order.order_id) == [(order.payments[0].amount, order.payments[0].payment_method_id)]


# -- a worker killed in the middle of the saga ----------------------------------------
def run_saga_test_worker() -> None:
    """The return saga on the task queue of the KEFU_* config it is given. With
    ``$KEFU_TEST_SAGA_CRASH_MARKER`` set and that file absent, the refund step is applied
    in the store, the marker written and the process killed before Temporal hears back."""
    from temporalio import activity
    from temporalio.worker import Worker

    from workflows.returns.activities import AfterSalesActivities

    cfg = load_config()
    marker = os.environ.get(CRASH_MARKER_ENV, "")
    real = AfterSalesActivities(cfg)

    @activity.defn(name="after_sales_step")
    async def step_then_maybe_crash(call: StepCall) -> StepResult:
        result = await real.after_sales_step(call)
        if call.step == "refund" and marker and not os.path.exists(marker):
            Path(marker).write_text(f"{call.key} attempt {activity.info().attempt}\n")
            os._exit(17)  # no reply, no cleanup: like a worker killed mid-activity
        return result

    async def main() -> None:
        client = await Client.connect(cfg.temporal_address, namespace=cfg.temporal.namespace)
        worker = Worker(
            client, task_queue=cfg.temporal.task_queue, workflows=[ReturnWorkflow],
            activities=[step_then_maybe_crash, real.notify_customer], max_cached_workflows=0,
        )
        async with worker:
            print(f"saga test worker ready on {cfg.temporal.task_queue}", flush=True)
            await asyncio.Event().wait()

    asyncio.run(main())


def _start_worker(own: KefuConfig, log: Path, crash_marker: Path | None) -> ManagedProcess:
    env = dict(os.environ)
    env.pop("KEFU_CONFIG", None)
    env.update(to_env(own))
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.pop(CRASH_MARKER_ENV, None)
    if crash_marker is not None:
        env[CRASH_MARKER_ENV] = str(crash_marker)
    proc = ManagedProcess(
        log.stem, [sys.executable, "-c", "from tests.test_return_saga import run_saga_test_worker; run_saga_test_worker()"],
        log_path=log, env=env, cwd=REPO_ROOT,
    ).start()
    proc.wait_until(lambda: "saga test worker ready" in proc.log_tail(5), timeout=60)
    return proc


def test_a_worker_killed_mid_saga_refunds_once_and_the_history_replays(cfg, store, tmp_path):
    order, _ = pick_order(store, "delivered", "gift_card")
    method = order.payments[0].payment_method_id
    balance = next(m.balance for m in store.get_customer(order.customer_id).payment_methods if m.id == method)
    assert store.apply(
        "return_delivered_order_items", {"order_id": order.order_id, "item_ids": [order.items[0].item_id], "payment_method_id": method}
    ).done
    own = copy.deepcopy(cfg)
    own.temporal.task_queue = f"saga-test-{secrets.token_hex(4)}"
    marker = tmp_path / "crashed"
    workers = [_start_worker(own, tmp_path / "saga-worker-0.log", marker)]
    try:
        async def scenario():
            client = await client_for(cfg)
            handle = await client.start_workflow(
                "ReturnWorkflow", ReturnRequest(order_id=order.order_id, kind="return", language="en", timers=FAST),
                id=workflow_id_for(order.order_id), task_queue=own.temporal.task_queue, result_type=ReturnState,
            )
            await until(cfg, order.order_id, lambda s: s.status == "awaiting_parcel")
            report(cfg, "parcel_received", order.order_id)
            await until(cfg, order.order_id, lambda s: s.status == "inspecting")
            report(cfg, "inspection_result", order.order_id)
            code = await asyncio.to_thread(workers[0].wait_exit, 30)
            assert code == 17, f"the worker did not crash in the refund step: {code}\n{workers[0].log_tail()}"
            # The refund committed in the store before the crash; Temporal does not know it.
            assert refunds(store, order.order_id) == [(order.items[0].price, method)]
            workers.append(await asyncio.to_thread(_start_worker, own, tmp_path / "saga-worker-1.log", None))
            final = await asyncio.wait_for(handle.result(), timeout=60)
            return final, await handle.fetch_history()

        final, history = asyncio.run(scenario())
    finally:
        for proc in workers:
            proc.stop(timeout=10)
    assert marker.read_text().startswith(f"{workflow_id_for(order.order_id)}/refund attempt 1")
    assert final.status == "refunded" and final.refund_status == "completed"
    assert refunds(store, order.order_id) == [(order.items[0].price, method)]  # once, not twice
    after = next(m.balance for m in store.get_customer(order.customer_id).payment_methods if m.id == method)
    assert after == pytest.approx(balance + order.items[0].price)
    attempts = [e.activity_task_started_event_attributes.attempt for e in history.events if e.HasField("activity_task_started_event_attributes")]
    assert max(attempts) >= 2, f"the refund step was not retried: {attempts}"
    asyncio.run(Replayer(workflows=[ReturnWorkflow]).replay_workflow(history))
