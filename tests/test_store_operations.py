"""Every store side effect is a Temporal workflow, applied once however often it is retried.

Runs against the suite's real Temporal dev server and worker (``cfg`` starts the stack)
and the τ-bench retail store imported into the stack's home. The crash test runs its
own worker processes on their own task queue, so the suite's worker never takes its task.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import secrets
import sys
from pathlib import Path
from typing import Callable, Iterator

import pytest
from temporalio.worker import Replayer

from services.config import REPO_ROOT, KefuConfig, load_config, to_env
from services.dialog.operations import OperationDesk
from services.erp.port import Order, OperationResult
from services.errors import Unavailable
from services.processes import ManagedProcess
from workflows.store_ops.activities import receipt_of
from workflows.store_ops.types import OperationCall, OperationReceipt
from workflows.store_ops.workflow import StoreOperationWorkflow

TAU_DATA = REPO_ROOT.parent / "shared/data/tau_bench_retail/data"
CRASH_MARKER_ENV = "KEFU_TEST_STORE_OPS_CRASH_MARKER"  # not a config field: load_config ignores it

# Real τ-bench records (data/orders.json, data/users.json); each test uses its own orders.
CANCEL_ORDER, CANCEL_CUSTOMER, CANCEL_CARD = "#W6779827", "ethan_lopez_6291", "gift_card_7219486"
CRASH_ORDER, CRASH_CUSTOMER, CRASH_CARD = "#W9318778", "lucas_martin_4549", "gift_card_7728021"
DELIVERED_ORDER, DELIVERED_CUSTOMER = "#W4817420", "ava_moore_2033"
OTHERS_ORDER = "#W8327915"  # ava_lopez_2676's pending order


# -- the worker the crash test runs (in a child process) ---------------------------
def run_test_worker() -> None:
    """A worker for StoreOperationWorkflow on the task queue of the KEFU_* config it is given.

    With ``$KEFU_TEST_STORE_OPS_CRASH_MARKER`` set and that file absent, its activity
    applies the operation, writes the marker and kills the process before returning:
    the store has committed, Temporal never hears back, and retries on another worker."""
    from temporalio import activity
    from temporalio.client import Client
    from temporalio.worker import Worker

    from workflows.store_ops.activities import StoreActivities

    cfg = load_config()
    marker = os.environ.get(CRASH_MARKER_ENV, "")
    real = StoreActivities(cfg)

    @activity.defn(name="apply_store_operation")
    async def apply_then_maybe_crash(call: OperationCall) -> OperationReceipt:
        receipt = await real.apply_store_operation(call)
        if marker and not os.path.exists(marker):
            Path(marker).write_text(f"{call.key} attempt {activity.info().attempt}\n")
            os._exit(17)  # no reply, no cleanup: like a worker killed mid-activity
        return receipt

    async def main() -> None:
        client = await Client.connect(cfg.temporal_address, namespace=cfg.temporal.namespace)
        # No sticky cache: the workflow task after the retried activity goes straight to
        # the normal queue instead of waiting for the dead worker's sticky queue to time out.
        worker = Worker(
            client,
            task_queue=cfg.temporal.task_queue,
            workflows=[StoreOperationWorkflow],
            activities=[apply_then_maybe_crash],
            max_cached_workflows=0,
        )
        async with worker:
            print(f"test worker ready on {cfg.temporal.task_queue} (crash marker {marker or '-'})", flush=True)
            await asyncio.Event().wait()

    asyncio.run(main())


# -- fixtures --------------------------------------------------------------------
@pytest.fixture(scope="module")
def store_path(cfg: KefuConfig) -> Iterator[Path]:
    """A fresh τ-bench store in the stack's home, where the suite's worker opens it;
    removed afterwards, so the other tests see the demo store."""
    from services.erp import reset_store
    from services.erp.tau_retail import import_tau_retail

    import_tau_retail(TAU_DATA, cfg.erp_path)
    yield cfg.erp_path
    reset_store(cfg)


def open_erp(path: Path):
    from services.erp.tau_retail import TauRetailStore

    return TauRetailStore(path)


def balance(path: Path, customer_id: str, method_id: str) -> float:
    customer = open_erp(path).get_customer(customer_id)
    assert customer is not None
    method = next(m for m in customer.payment_methods if m.id == method_id)
    assert method.balance is not None
    return method.balance


def order(path: Path, order_id: str) -> Order:
    found = open_erp(path).get_order(order_id)
    assert found is not None
    return found


def refunds(o: Order) -> list[tuple[float, str]]:
    return [(p.amount, p.payment_method_id) for p in o.payments if p.transaction_type == "refund"]


def paid(o: Order) -> float:
    return round(sum(p.amount for p in o.payments if p.transaction_type == "payment"), 2)


@pytest.fixture()
def test_worker(cfg: KefuConfig, tmp_path: Path) -> Iterator[Callable[..., ManagedProcess]]:
    """``test_worker(own_cfg, crash_marker=None)`` starts ``run_test_worker`` in a child process."""
    started: list[ManagedProcess] = []

    def start(own: KefuConfig, crash_marker: Path | None = None) -> ManagedProcess:
        env = dict(os.environ)
        env.pop("KEFU_CONFIG", None)
        env.update(to_env(own))
        env["PYTHONUNBUFFERED"] = "1"
        env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        env.pop(CRASH_MARKER_ENV, None)
        if crash_marker is not None:
            env[CRASH_MARKER_ENV] = str(crash_marker)
        proc = ManagedProcess(
            f"store-ops-worker-{len(started)}",
            [sys.executable, "-c", "from tests.test_store_operations import run_test_worker; run_test_worker()"],
            log_path=tmp_path / f"store-ops-worker-{len(started)}.log",
            env=env,
            cwd=REPO_ROOT,
        ).start()
        started.append(proc)
        proc.wait_until(lambda: "test worker ready" in proc.log_tail(5), timeout=60)
        return proc

    yield start
    for proc in started:
        proc.stop(timeout=10)


def own_queue(cfg: KefuConfig, **changes: str) -> KefuConfig:
    own = copy.deepcopy(cfg)
    own.temporal.task_queue = f"store-ops-test-{secrets.token_hex(4)}"
    for name, value in changes.items():
        setattr(own, name, value)
    return own


async def workflow_history(cfg: KefuConfig, workflow_id: str):
    from temporalio.client import Client

    client = await Client.connect(cfg.temporal_address, namespace=cfg.temporal.namespace)
    handle = client.get_workflow_handle(workflow_id)
    return (await handle.describe()).status, await handle.fetch_history()


# -- without the stack ----------------------------------------------------------
def test_receipt_carries_the_stores_answer():
    rejected = receipt_of(
        OperationResult(operation="cancel_pending_order", status="rejected", reason="non-pending order cannot be cancelled", code="wrong_status"),
        json.dumps({"order_id": "#W1", "reason": "no longer needed"}),
    )
    assert rejected == OperationReceipt(
        operation="cancel_pending_order", status="rejected", reason="non-pending order cannot be cancelled",
        code="wrong_status", order_id="#W1", price_difference=0.0, result_json="",
    )
    assert not rejected.done


# -- through the suite's worker -------------------------------------------------
def test_cancel_runs_as_a_workflow_and_changes_the_store_once(cfg, store_path):
    from temporalio.client import WorkflowExecutionStatus

    before = order(store_path, CANCEL_ORDER)
    assert before.status == "pending" and before.customer_id == CANCEL_CUSTOMER
    start_balance = balance(store_path, CANCEL_CUSTOMER, CANCEL_CARD)
    amount = paid(before)

    receipt, workflow_id = asyncio.run(
        OperationDesk(cfg).run(
            "cancel_pending_order", {"order_id": CANCEL_ORDER, "reason": "no longer needed"},
            session_id="s-cancel", customer_id=CANCEL_CUSTOMER,
        )
    )
    assert receipt.status == "done", receipt
    assert receipt.done and receipt.operation == "cancel_pending_order" and receipt.order_id == CANCEL_ORDER
    assert workflow_id.startswith("op-cancel_pending_order-")
    reported = json.loads(receipt.result_json)  # Dialog reports from the ERP's answer
    assert reported["order_id"] == CANCEL_ORDER and reported["status"] == "cancelled"

    status, history = asyncio.run(workflow_history(cfg, workflow_id))
    assert status == WorkflowExecutionStatus.COMPLETED
    # The recorded history replays against the workflow code as it is now (deterministic).
    from temporalio.worker import Replayer

    from workflows.store_ops.workflow import StoreOperationWorkflow

    asyncio.run(Replayer(workflows=[StoreOperationWorkflow]).replay_workflow(history))

    after = order(store_path, CANCEL_ORDER)
    assert after.status == "cancelled"
    assert refunds(after) == [(amount, CANCEL_CARD)]
    assert balance(store_path, CANCEL_CUSTOMER, CANCEL_CARD) == pytest.approx(start_balance + amount)

    # The workflow id is the idempotency key: applying it again changes nothing.
    again = open_erp(store_path).apply("cancel_pending_order", {"order_id": CANCEL_ORDER, "reason": "no longer needed"}, key=workflow_id)
    assert again.status == "done"
    assert refunds(order(store_path, CANCEL_ORDER)) == [(amount, CANCEL_CARD)]
    assert balance(store_path, CANCEL_CUSTOMER, CANCEL_CARD) == pytest.approx(start_balance + amount)


def test_rejected_operation_is_a_normal_result_and_changes_nothing(cfg, store_path):
    from temporalio.client import WorkflowExecutionStatus

    before = order(store_path, DELIVERED_ORDER)
    assert before.status == "delivered"
    receipt, workflow_id = asyncio.run(
        OperationDesk(cfg).run(
            "cancel_pending_order", {"order_id": DELIVERED_ORDER, "reason": "ordered by mistake"},
            session_id="s-rejected", customer_id=DELIVERED_CUSTOMER,
        )
    )
    assert receipt.status == "rejected" and not receipt.done
    assert receipt.reason and receipt.code
    assert receipt.order_id == DELIVERED_ORDER
    status, _ = asyncio.run(workflow_history(cfg, workflow_id))
    assert status == WorkflowExecutionStatus.COMPLETED  # a rejection is not a failure
    assert order(store_path, DELIVERED_ORDER) == before


def test_another_customers_order_is_refused(cfg, store_path):
    before = order(store_path, OTHERS_ORDER)
    assert before.status == "pending" and before.customer_id != CANCEL_CUSTOMER
    receipt, _ = asyncio.run(
        OperationDesk(cfg).run(
            "cancel_pending_order", {"order_id": OTHERS_ORDER, "reason": "no longer needed"},
            session_id="s-others", customer_id=CANCEL_CUSTOMER,
        )
    )
    assert receipt.status == "rejected" and "does not belong" in receipt.reason
    assert order(store_path, OTHERS_ORDER) == before


# -- with the test's own workers ------------------------------------------------
def test_no_active_store_fails_clearly(cfg, tmp_path, test_worker):
    own = own_queue(cfg, home=str(tmp_path / "home-without-store"))
    test_worker(own)
    with pytest.raises(Unavailable, match="no active store"):
        asyncio.run(
            OperationDesk(own, timeout_s=20).run(
                "cancel_pending_order", {"order_id": CANCEL_ORDER, "reason": "no longer needed"},
                session_id="s-nostore", customer_id=CANCEL_CUSTOMER,
            )
        )


def test_activity_retried_after_a_worker_crash_applies_once(cfg, store_path, tmp_path, test_worker):
    own = own_queue(cfg)
    marker = tmp_path / "crashed"
    before = order(store_path, CRASH_ORDER)
    assert before.status == "pending" and before.customer_id == CRASH_CUSTOMER
    start_balance = balance(store_path, CRASH_CUSTOMER, CRASH_CARD)
    amount = paid(before)

    crashing = test_worker(own, crash_marker=marker)

    async def scenario() -> tuple[OperationReceipt, str]:
        desk = OperationDesk(own, timeout_s=60)
        running = asyncio.create_task(
            desk.run(
                "cancel_pending_order", {"order_id": CRASH_ORDER, "reason": "ordered by mistake"},
                session_id="s-crash", customer_id=CRASH_CUSTOMER,
            )
        )
        code = await asyncio.to_thread(crashing.wait_exit, 30)
        assert code == 17, f"the crashing worker did not crash: {code}\n{crashing.log_tail()}"
        # The first attempt committed before the crash; Temporal does not know it.
        assert order(store_path, CRASH_ORDER).status == "cancelled"
        await asyncio.to_thread(test_worker, own)  # a healthy worker takes the retry
        return await running

    receipt, workflow_id = asyncio.run(scenario())
    assert marker.read_text().startswith(f"{workflow_id} attempt 1")
    assert receipt.status == "done", receipt
    assert json.loads(receipt.result_json)["status"] == "cancelled"

    status, history = asyncio.run(workflow_history(cfg, workflow_id))
    attempts = [e.activity_task_started_event_attributes.attempt for e in history.events if e.HasField("activity_task_started_event_attributes")]
    assert attempts and max(attempts) >= 2, f"the activity was not retried: {attempts}"

    # The workflow code is deterministic: its history replays without a nondeterminism error.
    asyncio.run(Replayer(workflows=[StoreOperationWorkflow]).replay_workflow(history))

    after = order(store_path, CRASH_ORDER)
    assert after.status == "cancelled"
    assert refunds(after) == [(amount, CRASH_CARD)]  # one refund row, not two
    assert balance(store_path, CRASH_CUSTOMER, CRASH_CARD) == pytest.approx(start_balance + amount)
