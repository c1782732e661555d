"""After-sales steps in the store (services/erp/after_sales.py) on an imported τ-bench
retail store: each step changes the store once however often it is retried, a refused
step changes nothing, and a withdrawn return leaves the order as it was."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from services.config import REPO_ROOT
from services.erp.after_sales import AfterSales, AfterSalesRejected
from services.erp.tau_retail import TauRetailStore, import_tau_retail

TAU_DATA = REPO_ROOT.parent / "shared/data/tau_bench_retail/data"


@pytest.fixture()
def store(tmp_path: Path) -> TauRetailStore:
    import_tau_retail(TAU_DATA, tmp_path / "erp.db")
    return TauRetailStore(tmp_path / "erp.db")


def delivered_order(store: TauRetailStore, method: str, *, exchangeable: bool = False):
    """A delivered order paid once with a ``method`` ("gift_card", "credit_card"); with
    ``exchangeable``, also an item of it and another available variant of its product."""
    with sqlite3.connect(store.path) as conn:
        docs = [json.loads(row[0]) for row in conn.execute("SELECT doc FROM orders ORDER BY pos")]
    for doc in docs:
        history = doc.get("payment_history", [])
        if doc["status"] != "delivered" or len(history) != 1 or method not in history[0]["payment_method_id"]:
            continue
        order = store.get_order(doc["order_id"])
        if not exchangeable:
            return order, None, None
        for item in order.items:
            product = store.get_product(item.product_id)
            other = next((v for v in product.variants if v.available and v.item_id != item.item_id), None)
            if other is not None:
                return order, item, other
    raise AssertionError(f"no delivered order paid by {method}")


def balance(store: TauRetailStore, customer_id: str, method_id: str) -> float:
    return next(m.balance for m in store.get_customer(customer_id).payment_methods if m.id == method_id)


def steps(store: TauRetailStore) -> int:
    with sqlite3.connect(store.path) as conn:
        if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'after_sales_steps'").fetchone():
            return 0  # a refused first step leaves not even the table behind
        return conn.execute("SELECT count(*) FROM after_sales_steps").fetchone()[0]


def test_a_return_refunded_to_a_gift_card_pays_once_at_once(store):
    order, _, _ = delivered_order(store, "gift_card")
    method = order.payments[0].payment_method_id
    item = order.items[0]
    assert store.apply("return_delivered_order_items", {"order_id": order.order_id, "item_ids": [item.item_id], "payment_method_id": method}).done
    desk = AfterSales(store)
    rma = desk.authorize_return(order.order_id, "return", key="return-x/authorize_return")
    assert rma == desk.authorize_return(order.order_id, "return", key="return-x/authorize_return")  # a retry: the same RMA
    assert rma["rma_id"].startswith("RMA-") and rma["amount"] == pytest.approx(item.price) and rma["payment_method_id"] == method
    before = balance(store, order.customer_id, method)

    first = desk.refund(order.order_id, rma["amount"], method, key="return-x/refund", order_status="returned")
    again = desk.refund(order.order_id, rma["amount"], method, key="return-x/refund", order_status="returned")
    assert first == again and first["status"] == "completed"  # a gift card is refunded at once
    assert balance(store, order.customer_id, method) == pytest.approx(before + item.price)  # once, not twice
    after = store.get_order(order.order_id)
    assert after.status == ("returned" if len(order.items) == 1 else "partially returned")
    assert [(p.amount, p.payment_method_id) for p in after.payments if p.transaction_type == "refund"] == [(item.price, method)]
    assert steps(store) == 2
    assert desk.refunds_for(order.order_id) == [desk.get_refund(first["refund_id"])]


def test_a_refund_to_a_card_stays_pending_until_the_provider_confirms_it(store):
    order, _, _ = delivered_order(store, "credit_card")
    method = order.payments[0].payment_method_id
    ids = [i.item_id for i in order.items]
    assert store.apply("return_delivered_order_items", {"order_id": order.order_id, "item_ids": ids, "payment_method_id": method}).done
    desk = AfterSales(store)
    rma = desk.authorize_return(order.order_id, "return", key="r/authorize_return")
    refund = desk.refund(order.order_id, rma["amount"], method, key="r/refund", order_status="returned")
    assert store.get_order(order.order_id).status == "returned"  # every item came back
    assert refund["status"] == "pending" and refund["amount"] == pytest.approx(round(sum(i.price for i in order.items), 2))
    assert desk.complete_refund(refund["refund_id"])["status"] == "completed"
    completed_at = desk.get_refund(refund["refund_id"])["completed_at"]
    assert desk.complete_refund(refund["refund_id"])["completed_at"] == completed_at  # again: nothing changes
    with pytest.raises(AfterSalesRejected) as refused:
        desk.complete_refund("RF-NOSUCH")
    assert refused.value.code == "refund_not_found"


def test_an_expired_return_leaves_the_order_as_it_was(store):
    order, _, _ = delivered_order(store, "credit_card")
    method = order.payments[0].payment_method_id
    assert store.apply(
        "return_delivered_order_items", {"order_id": order.order_id, "item_ids": [order.items[0].item_id], "payment_method_id": method}
    ).done
    desk = AfterSales(store)
    desk.authorize_return(order.order_id, "return", key="e/authorize_return")
    assert desk.cancel_return(order.order_id, key="e/cancel_return") == {"status": "delivered"}
    assert desk.cancel_return(order.order_id, key="e/cancel_return") == {"status": "delivered"}  # a retry
    assert store.get_order(order.order_id) == order
    with pytest.raises(AfterSalesRejected):  # nothing requested any more
        desk.authorize_return(order.order_id, "return", key="e2/authorize_return")


def test_an_exchange_ships_the_replacement_once(store):
    order, item, variant = delivered_order(store, "gift_card", exchangeable=True)
    method = order.payments[0].payment_method_id
    args = {"order_id": order.order_id, "item_ids": [item.item_id], "new_item_ids": [variant.item_id], "payment_method_id": method}
    assert store.apply("exchange_delivered_order_items", args).done
    before = balance(store, order.customer_id, method)
    desk = AfterSales(store)
    assert desk.authorize_return(order.order_id, "exchange", key="x/authorize_return")["item_ids"] == [item.item_id]
    shipped = desk.ship_replacement(order.order_id, key="x/ship_replacement")
    assert shipped == desk.ship_replacement(order.order_id, key="x/ship_replacement")
    after = store.get_order(order.order_id)
    assert after.status == "exchanged"
    assert variant.item_id in [i.item_id for i in after.items]
    assert after.fulfillments[-1].tracking_ids == [shipped["tracking_id"]]
    assert len(after.fulfillments) == len(order.fulfillments) + 1
    difference = round(variant.price - item.price, 2)
    assert shipped["price_difference"] == pytest.approx(difference)
    assert balance(store, order.customer_id, method) == pytest.approx(before - difference)


def test_a_refused_step_changes_nothing(store):
    order, item, variant = delivered_order(store, "gift_card", exchangeable=True)
    desk = AfterSales(store)
    with pytest.raises(AfterSalesRejected) as refused:  # no exchange was requested
        desk.ship_replacement(order.order_id, key="n/ship_replacement")
    assert refused.value.code == "wrong_status"
    method = order.payments[0].payment_method_id
    args = {"order_id": order.order_id, "item_ids": [item.item_id], "new_item_ids": [variant.item_id], "payment_method_id": method}
    assert store.apply("exchange_delivered_order_items", args).done
    requested = store.get_order(order.order_id)
    with sqlite3.connect(store.path) as conn:  # the replacement sold out meanwhile
        doc = json.loads(conn.execute("SELECT doc FROM products WHERE product_id = ?", (item.product_id,)).fetchone()[0])
        doc["variants"][variant.item_id]["available"] = False
        conn.execute("UPDATE products SET doc = ? WHERE product_id = ?", (json.dumps(doc), item.product_id))
    with pytest.raises(AfterSalesRejected) as unavailable:
        desk.ship_replacement(order.order_id, key="n/ship_replacement")
    assert unavailable.value.code == "item_unavailable"
    assert store.get_order(order.order_id) == requested and steps(store) == 0
    with pytest.raises(AfterSalesRejected):
        desk.refund(order.order_id, 1.0, "credit_card_nosuch", key="n/refund")
    with pytest.raises(AfterSalesRejected):  # a key is used for one step only
        desk.authorize_return(order.order_id, "exchange", key="n/x")
        desk.cancel_return(order.order_id, key="n/x")
