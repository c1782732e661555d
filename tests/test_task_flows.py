"""Task conversations through the whole stack: Dialog → NLU → flow engine → Temporal
workflow → the τ-bench retail store imported with the ERP port. Each test talks to the
real Dialog service and checks the store itself afterwards."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Iterator

import pytest

from kefu.v1 import dialog_pb2
from services.config import REPO_ROOT, KefuConfig
from services.dialog.flows.understanding import describe_options
from services.erp.port import Order
from tests.conftest import converse

TAU_DATA = REPO_ROOT.parent / "shared" / "data" / "tau_bench_retail" / "data"


@pytest.fixture(scope="module")
def store(cfg: KefuConfig) -> Iterator[object]:
    from services.erp import reset_store
    from services.erp.tau_retail import TauRetailStore, import_tau_retail

    import_tau_retail(TAU_DATA, cfg.erp_path)
    yield TauRetailStore(cfg.erp_path)
    reset_store(cfg)


@pytest.fixture()
def fresh(cfg: KefuConfig, store) -> object:
    """The imported data again before each test (an atomic replace, as `kefu store import` does)."""
    from services.erp.tau_retail import import_tau_retail

    import_tau_retail(TAU_DATA, cfg.erp_path)
    return store


def _find(store, want: Callable[[object, Order], bool]) -> tuple[object, Order]:
    """The first customer with an order that ``want`` accepts, whose products are all
    different from those of the customer's other orders (so naming one finds the order)."""
    users = json.loads((TAU_DATA / "users.json").read_text(encoding="utf-8"))
    for user_id in users:
        customer = store.get_customer(user_id)
        orders = store.list_orders(user_id)
        for order in orders:
            names = {it.name for it in order.items}
            others = {it.name for o in orders if o.order_id != order.order_id for it in o.items}
            if len(names) == len(order.items) and not names & others and want(customer, order):
                return customer, order
    raise AssertionError("no fitting order in the τ-bench data")


def _talk(dialog, messages: list[str]) -> list[dialog_pb2.TurnResult]:
    session, results = "", []
    for text in messages:
        _, result = converse(dialog, text, session)
        session = result.session_id
        results.append(result)
    return results


def _snapshot(store, order_id: str, customer_id: str) -> tuple:
    order = store.get_order(order_id)
    customer = store.get_customer(customer_id)
    return order, customer


def test_cancel_by_describing_the_order(dialog, fresh):
    store = fresh
    customer, order = _find(store, lambda c, o: o.status == "pending" and len(o.payments) == 1)
    product = order.items[0].name
    results = _talk(dialog, [
        f"Hi, I want to cancel the order with the {product} in it.",
        f"my email is {customer.email}",
        "I ordered it by mistake",
    ])
    asked = [r.state.requested_slot for r in results]
    assert asked[0] == "identity", asked
    last = results[-1]
    assert last.state.flow == "cancel_order"
    assert last.state.requested_slot == "confirmation"
    assert last.state.customer_id == customer.customer_id
    assert last.state.pending.operation == "cancel_pending_order"
    assert {k: json.loads(v) for k, v in last.state.pending.args.items()} == {"order_id": order.order_id, "reason": "ordered by mistake"}
    assert store.get_order(order.order_id).status == "pending", "nothing changes before the yes"

    _, done = converse(dialog, "yes, go ahead", last.session_id)
    operation = [a for a in done.actions if a.type == dialog_pb2.ACTION_TYPE_OPERATION]
    assert len(operation) == 1 and operation[0].workflow_id
    # The refund's saga follows the cancellation (workflows/returns).
    saga = "return-" + order.order_id.lstrip("#")
    assert dict(operation[0].detail) == {"operation": "cancel_pending_order", "order_id": order.order_id, "status": "done", "saga": saga}
    after = store.get_order(order.order_id)
    assert after.status == "cancelled" and after.extra["cancel_reason"] == "ordered by mistake"
    assert order.order_id in done.reply_text and "cancelled" in done.reply_text
    # The refund told is the store's: what was paid comes back.
    assert f"${order.payments[0].amount:,.2f}" in done.reply_text, done.reply_text
    assert done.state.flow == "" and done.state.requested_slot == ""


def test_return_items_to_the_original_payment_method(dialog, fresh):
    store = fresh
    customer, order = _find(store, lambda c, o: o.status == "delivered" and len(o.items) >= 2)
    item = order.items[1]
    original = order.payments[0].payment_method_id
    results = _talk(dialog, [
        f"Hello, my name is {customer.first_name} {customer.last_name} and my zip is {customer.address.zip}.",
        f"I'd like to return the {item.name}.",
        "Refund it to the original payment method please.",
    ])
    last = results[-1]
    assert last.state.pending.operation == "return_delivered_order_items", last.reply_text
    args = {k: json.loads(v) for k, v in last.state.pending.args.items()}
    assert args == {"order_id": order.order_id, "item_ids": [item.item_id], "payment_method_id": original}
    _, done = converse(dialog, "Yes", last.session_id)
    after = store.get_order(order.order_id)
    assert after.status == "return requested"
    assert after.extra["return_items"] == [item.item_id] and after.extra["return_payment_method_id"] == original
    assert "return requested" in done.reply_text


def test_exchange_picks_the_variant_from_option_words(dialog, fresh):
    store = fresh

    def exchangeable(c, o):
        if o.status != "delivered":
            return False
        product = store.get_product(o.items[0].product_id)
        current = o.items[0]
        return any(v.available and v.item_id != current.item_id and sum(v.options[k] != current.options.get(k) for k in v.options) == 1 for v in product.variants)

    customer, order = _find(store, exchangeable)
    item = order.items[0]
    product = store.get_product(item.product_id)
    target = next(v for v in product.variants if v.available and v.item_id != item.item_id and sum(v.options[k] != item.options.get(k) for k in v.options) == 1)
    key = next(k for k in target.options if target.options[k] != item.options.get(k))
    method = customer.payment_methods[0]
    phrase = {"gift_card": "my gift card", "paypal": "paypal", "credit_card": f"the card ending in {method.last_four}"}[method.source]
    results = _talk(dialog, [
        f"I want to exchange my {item.name} for one with {key} {target.options[key]}. My email is {customer.email}.",
        f"{phrase}",
    ])
    last = results[-1]
    if last.state.requested_slot == "payment_method":  # several gift cards: name it by id
        _, last = converse(dialog, method.id, last.session_id)
    assert last.state.pending.operation == "exchange_delivered_order_items", last.reply_text
    args = {k: json.loads(v) for k, v in last.state.pending.args.items()}
    assert args["item_ids"] == [item.item_id] and args["new_item_ids"] == [target.item_id]
    assert "only once" in last.reply_text
    _, done = converse(dialog, "yes please", last.session_id)
    after = store.get_order(order.order_id)
    assert after.status == "exchange requested" and after.extra["exchange_new_items"] == [target.item_id]


def test_modify_pending_order_address_and_default_address(dialog, fresh):
    store = fresh
    customer, order = _find(store, lambda c, o: o.status == "pending")
    new = "77 Harbour Road, Apt 5, Springfield, IL 62704, USA"
    results = _talk(dialog, [
        f"I need to change the shipping address of order {order.order_id}. I'm {customer.first_name} {customer.last_name}, zip code {customer.address.zip}.",
        new,
    ])
    assert results[-1].state.pending.operation == "modify_pending_order_address", results[-1].reply_text
    _, done = converse(dialog, "yes", results[-1].session_id)
    assert store.get_order(order.order_id).address.address1 == "77 Harbour Road"
    assert store.get_order(order.order_id).address.zip == "62704"

    results = _talk(dialog, [f"my email is {customer.email}, please update my default address on my account", new])
    assert results[-1].state.pending.operation == "modify_user_address"
    assert json.loads(results[-1].state.pending.args["user_id"]) == customer.customer_id
    converse(dialog, "yes", results[-1].session_id)
    assert store.get_customer(customer.customer_id).address.city == "Springfield"


def test_a_policy_rejection_changes_nothing(dialog, fresh, cfg):
    from services.erp.tau_retail import export_tau_retail

    store = fresh
    customer, order = _find(store, lambda c, o: o.status == "delivered")
    before = Path(cfg.home_path) / "before"
    export_tau_retail(cfg.erp_path, before)
    results = _talk(dialog, [f"Please cancel order {order.order_id}. My email is {customer.email}."])
    last = results[-1]
    assert "delivered" in last.reply_text and "can't be cancelled" in last.reply_text
    assert not last.state.pending.operation
    assert not [a for a in last.actions if a.type == dialog_pb2.ACTION_TYPE_OPERATION]
    after = Path(cfg.home_path) / "after"
    export_tau_retail(cfg.erp_path, after)
    for name in ("users.json", "orders.json", "products.json"):
        assert json.loads((before / name).read_text()) == json.loads((after / name).read_text())


def test_another_customers_order_is_refused_without_revealing_it(dialog, fresh):
    store = fresh
    customer, _ = _find(store, lambda c, o: o.status == "pending")
    other, theirs = _find(store, lambda c, o: c.customer_id != customer.customer_id and o.status == "delivered")
    results = _talk(dialog, [f"my email is {customer.email}", f"What is the status of order {theirs.order_id}?"])
    reply = results[-1].reply_text
    assert "can't find" in reply and theirs.order_id in reply
    # Nothing of the other customer's order is told: not its status, not its items
    # (the reply may list the customer's own orders to choose from).
    assert f"{theirs.order_id} is" not in reply and f"{theirs.order_id} (" not in reply
    own = {f"{it.name} ({describe_options(it.options)})" for o in store.list_orders(customer.customer_id) for it in o.items}
    assert all(f"{it.name} ({describe_options(it.options)})" not in reply for it in theirs.items if f"{it.name} ({describe_options(it.options)})" not in own)
    # And an order id that exists nowhere gets the same clear answer.
    _, unknown = converse(dialog, "and order #W0000000?", results[-1].session_id)
    assert "can't find order #W0000000" in unknown.reply_text
    # One customer per conversation.
    _, second = converse(dialog, f"now log me in as {other.email}", results[-1].session_id)
    assert "only help with the account you've already verified" in second.reply_text
    assert second.state.customer_id == customer.customer_id


def test_order_status_comes_from_the_store(dialog, fresh):
    store = fresh
    customer, order = _find(store, lambda c, o: o.status == "delivered" and any(f.tracking_ids for f in o.fulfillments))
    results = _talk(dialog, [f"Where is my order {order.order_id}? my email is {customer.email}"])
    reply = results[-1].reply_text
    assert f"Order {order.order_id} is delivered" in reply
    assert order.fulfillments[0].tracking_ids[0] in reply


def test_no_at_the_confirmation_changes_nothing_and_chinese_is_answered_in_chinese(dialog, fresh):
    store = fresh
    customer, order = _find(store, lambda c, o: o.status == "pending")
    results = _talk(dialog, [f"我要取消订单 {order.order_id}，我的邮箱是 {customer.email}", "不需要了"])
    last = results[-1]
    assert last.state.pending.operation == "cancel_pending_order", last.reply_text
    assert "请确认" in last.reply_text and order.order_id in last.reply_text
    _, no = converse(dialog, "不，先不要", last.session_id)
    assert not no.state.pending.operation
    assert store.get_order(order.order_id).status == "pending"
