"""The τ-bench retail store behind the ERP port: import/export round trip, the seven
operations with τ-bench's exact document changes, policy rejections that change
nothing, idempotency on the key, and ``check`` that never writes.

The expected documents are written out from the data (users.json, orders.json,
products.json of τ-bench), not computed by the code under test.
"""

from __future__ import annotations

import copy
import json
import sqlite3
from pathlib import Path

import pytest

from services.config import REPO_ROOT
from services.erp.port import OPERATIONS, StorePort
from services.erp.tau_retail import (
    FORMAT,
    StoreUnavailable,
    TauRetailStore,
    export_tau_retail,
    import_tau_retail,
    store_format,
)

DATA = REPO_ROOT.parent / "shared" / "data" / "tau_bench_retail" / "data"
FILES = ("users.json", "orders.json", "products.json")

pytestmark = pytest.mark.skipif(not (DATA / "orders.json").is_file(), reason=f"τ-bench retail data not found at {DATA}")


@pytest.fixture(scope="module")
def source() -> dict[str, dict]:
    return {name: json.loads((DATA / name).read_text(encoding="utf-8")) for name in FILES}


@pytest.fixture()
def store(tmp_path) -> TauRetailStore:
    import_tau_retail(DATA, tmp_path / "erp.db")
    return TauRetailStore(tmp_path / "erp.db")


def rows(path: Path) -> dict[str, list[tuple]]:
    """Every row of every data table, in key order: equal means the store is unchanged."""
    conn = sqlite3.connect(path)
    try:
        return {
            table: conn.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()
            for table in ("users", "orders", "products", "applied_operations")
        }
    finally:
        conn.close()


def exported(store: TauRetailStore, out: Path) -> dict[str, object]:
    export_tau_retail(store.path, out)
    return {name: json.loads((out / name).read_text(encoding="utf-8")) for name in FILES}


def order_doc(store: TauRetailStore, order_id: str) -> dict:
    conn = sqlite3.connect(store.path)
    try:
        return json.loads(conn.execute("SELECT doc FROM orders WHERE order_id = ?", (order_id,)).fetchone()[0])
    finally:
        conn.close()


def user_doc(store: TauRetailStore, user_id: str) -> dict:
    conn = sqlite3.connect(store.path)
    try:
        return json.loads(conn.execute("SELECT doc FROM users WHERE user_id = ?", (user_id,)).fetchone()[0])
    finally:
        conn.close()


def balance(store: TauRetailStore, user_id: str, gift_card: str) -> float:
    return user_doc(store, user_id)["payment_methods"][gift_card]["balance"]


# --------------------------------------------------------------------------- import / export


def test_import_then_export_gives_back_the_input(tmp_path, source):
    counts = import_tau_retail(DATA, tmp_path / "erp.db")
    assert counts == {"customers": 500, "orders": 1000, "products": 50}
    assert store_format(tmp_path / "erp.db") == FORMAT
    assert export_tau_retail(tmp_path / "erp.db", tmp_path / "out") == counts
    for name in FILES:
        back = json.loads((tmp_path / "out" / name).read_text(encoding="utf-8"))
        assert back == source[name], name  # by value; ints and floats compare as numbers
        assert list(back) == list(source[name]), f"{name}: record order"
    # Key order inside the records is τ-bench's too.
    back_order = json.loads((tmp_path / "out" / "orders.json").read_text(encoding="utf-8"))["#W2611340"]
    assert list(back_order) == list(source["orders.json"]["#W2611340"])
    assert list(back_order["address"]) == ["address1", "address2", "city", "country", "state", "zip"]


def test_the_store_satisfies_the_port_and_reads_records(store):
    port: StorePort = store
    assert port.format == "tau-retail"
    assert store.find_customer_by_email("Noah.Brown7922@EXAMPLE.com ") == "noah_brown_6181"
    assert store.find_customer_by_email("nobody@example.com") is None
    assert store.find_customer_by_name_zip(" noah", "BROWN", "80279 ") == "noah_brown_6181"
    assert store.find_customer_by_name_zip("Noah", "Brown", "80278") is None
    assert store.find_customer_by_phone("+1 555 0100") is None

    customer = store.get_customer("omar_kim_3528")
    assert customer is not None and (customer.first_name, customer.last_name) == ("Omar", "Kim")
    methods = {m.id: m for m in customer.payment_methods}
    assert methods["gift_card_3749819"].source == "gift_card" and methods["gift_card_3749819"].balance == 91
    assert methods["credit_card_3577130"].brand == "mastercard" and methods["credit_card_3577130"].last_four == "9843"
    assert methods["credit_card_3577130"].balance is None
    assert store.get_customer("nobody_0000") is None

    orders = store.list_orders("omar_kim_3528")
    assert [o.order_id for o in orders] == customer.order_ids
    order = store.get_order("#W1080318")
    assert order is not None and order.customer_id == "omar_kim_3528" and order.status == "pending"
    assert [(i.item_id, i.price) for i in order.items] == [("8349118980", 53.43)]
    assert order.payments[0].amount == 53.43 and order.extra == {}
    assert store.get_order("#W0000000") is None

    product = store.get_product("9523456873")
    assert product is not None and product.name == "T-Shirt"
    assert {v.item_id: v.available for v in product.variants}["5047954489"] is False
    products = store.list_products()
    assert len(products) == 50 and products[0] == ("3377618313", "Action Camera")
    assert [name for _, name in products] == sorted(name for _, name in products)


def test_import_rejects_bad_files_and_keeps_the_old_store(tmp_path, store):
    before = rows(store.path)
    bad = tmp_path / "bad"
    bad.mkdir()
    for name in FILES:
        (bad / name).write_bytes((DATA / name).read_bytes())
    (bad / "orders.json").write_text('{"#W1": {"order_id": ', encoding="utf-8")
    with pytest.raises(ValueError, match=r"orders\.json: not valid JSON"):
        import_tau_retail(bad, store.path)
    (bad / "orders.json").write_bytes((DATA / "orders.json").read_bytes())
    (bad / "products.json").write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(ValueError, match=r"products\.json: expected a JSON object"):
        import_tau_retail(bad, store.path)
    (bad / "products.json").write_text('{"1": {"product_id": "1", "name": "X", "variants": {"2": {"price": "9"}}}}', encoding="utf-8")
    with pytest.raises(ValueError, match=r"products\.json: product '1': variant '2'"):
        import_tau_retail(bad, store.path)
    (bad / "users.json").unlink()
    with pytest.raises(ValueError, match=r"users\.json: no such file"):
        import_tau_retail(bad, store.path)
    assert rows(store.path) == before
    assert sorted(p.name for p in store.path.parent.iterdir() if p.name.endswith(".tmp")) == []


def test_a_replaced_or_removed_file_is_what_the_next_call_sees(tmp_path, store):
    from services.erp.tau_retail import remove_store

    assert store.apply("cancel_pending_order", {"order_id": "#W1080318", "reason": "no longer needed"}).done
    assert store.get_order("#W1080318").status == "cancelled"
    import_tau_retail(DATA, store.path)  # a new import while the store object lives on
    assert store.get_order("#W1080318").status == "pending"
    assert remove_store(store.path) is True
    with pytest.raises(StoreUnavailable):
        store.get_order("#W1080318")
    assert not store.path.exists()  # never recreated empty by a call


# --------------------------------------------------------------------------- the seven operations


def test_cancel_pending_order_refunds_to_the_gift_card(store, source):
    result = store.apply("cancel_pending_order", {"order_id": "#W8306539", "reason": "no longer needed"})
    assert result.done and result.code == "" and result.reason == ""
    expected = copy.deepcopy(source["orders.json"]["#W8306539"])
    expected["status"] = "cancelled"
    expected["cancel_reason"] = "no longer needed"
    expected["payment_history"] = [
        {"transaction_type": "payment", "amount": 154.17, "payment_method_id": "gift_card_9164233"},
        {"transaction_type": "refund", "amount": 154.17, "payment_method_id": "gift_card_9164233"},
    ]
    assert order_doc(store, "#W8306539") == expected
    assert list(order_doc(store, "#W8306539"))[-1] == "cancel_reason"
    assert balance(store, "daiki_jackson_4362", "gift_card_9164233") == 215.17  # 61 + 154.17
    assert result.order.status == "cancelled" and result.order.extra == {"cancel_reason": "no longer needed"}
    assert {m.id: m.balance for m in result.customer.payment_methods}["gift_card_9164233"] == 215.17


def test_cancel_paid_by_card_moves_no_balance(store, source):
    assert store.apply("cancel_pending_order", {"order_id": "#W1080318", "reason": "ordered by mistake"}).done
    doc = order_doc(store, "#W1080318")
    assert doc["payment_history"][-1] == {"transaction_type": "refund", "amount": 53.43, "payment_method_id": "credit_card_3577130"}
    assert doc["cancel_reason"] == "ordered by mistake"
    assert user_doc(store, "omar_kim_3528") == source["users.json"]["omar_kim_3528"]


def test_modify_pending_order_address(store, source):
    address = {"address1": "1 Main St", "address2": "Apt 2", "city": "Austin", "state": "TX", "country": "USA", "zip": "78701"}
    result = store.apply("modify_pending_order_address", {"order_id": "#W6030855", **address})
    assert result.done and result.order.address.city == "Austin"
    expected = copy.deepcopy(source["orders.json"]["#W6030855"])
    expected["address"] = address
    doc = order_doc(store, "#W6030855")
    assert doc == expected and doc["status"] == "pending"
    assert list(doc["address"]) == ["address1", "address2", "city", "state", "country", "zip"]


def test_modify_pending_order_payment_to_a_gift_card(store, source):
    result = store.apply("modify_pending_order_payment", {"order_id": "#W1080318", "payment_method_id": "gift_card_3749819"})
    assert result.done
    expected = copy.deepcopy(source["orders.json"]["#W1080318"])
    expected["payment_history"] += [
        {"transaction_type": "payment", "amount": 53.43, "payment_method_id": "gift_card_3749819"},
        {"transaction_type": "refund", "amount": 53.43, "payment_method_id": "credit_card_3577130"},
    ]
    assert order_doc(store, "#W1080318") == expected  # status stays "pending"
    assert balance(store, "omar_kim_3528", "gift_card_3749819") == 37.57  # 91 - 53.43
    # Now there are three rows: a second change is refused.
    again = store.apply("modify_pending_order_payment", {"order_id": "#W1080318", "payment_method_id": "credit_card_3577130"})
    assert (again.status, again.code, again.reason) == (
        "rejected",
        "payment_not_allowed",
        "there should be exactly one payment for a pending order",
    )


def test_modify_pending_order_payment_from_a_gift_card_credits_it(store):
    assert store.apply("modify_pending_order_payment", {"order_id": "#W8955613", "payment_method_id": "credit_card_6044108"}).done
    assert order_doc(store, "#W8955613")["payment_history"][1:] == [
        {"transaction_type": "payment", "amount": 585.97, "payment_method_id": "credit_card_6044108"},
        {"transaction_type": "refund", "amount": 585.97, "payment_method_id": "gift_card_6682391"},
    ]
    assert balance(store, "olivia_lopez_9494", "gift_card_6682391") == 620.97  # 35 + 585.97


def test_modify_pending_order_items_with_duplicates(store, source):
    # #W7208030 holds the garden hose 5753502325 twice (96.35 each).
    args = {
        "order_id": "#W7208030",
        "item_ids": ["5753502325", "5753502325"],
        "new_item_ids": ["9829827210", "3369928769"],
        "payment_method_id": "credit_card_5809636",
    }
    result = store.apply("modify_pending_order_items", args)
    assert result.done and result.price_difference == -4.92
    expected = copy.deepcopy(source["orders.json"]["#W7208030"])
    first, second = expected["items"]
    first.update(item_id="9829827210", price=90.43, options={"length": "25ft", "material": "vinyl", "color": "blue"})
    second.update(item_id="3369928769", price=97.35, options={"length": "25ft", "material": "vinyl", "color": "green"})
    # τ-bench sums new - old in pair order from 0 and does not round here.
    expected["payment_history"].append(
        {"transaction_type": "refund", "amount": abs(0 + (90.43 - 96.35) + (97.35 - 96.35)), "payment_method_id": "credit_card_5809636"}
    )
    expected["status"] = "pending (item modified)"
    assert order_doc(store, "#W7208030") == expected
    # Modified once: nothing more can be done on it.
    later = store.apply("cancel_pending_order", {"order_id": "#W7208030", "reason": "no longer needed"})
    assert (later.code, later.reason) == ("wrong_status", "non-pending order cannot be cancelled")


def test_modify_pending_order_items_paid_by_gift_card(store):
    args = {"order_id": "#W1080318", "item_ids": ["8349118980"], "new_item_ids": ["9647292434"], "payment_method_id": "gift_card_3749819"}
    result = store.apply("modify_pending_order_items", args)
    assert result.done and result.price_difference == 0.05
    doc = order_doc(store, "#W1080318")
    assert doc["items"][0] == {
        "name": "T-Shirt",
        "product_id": "9523456873",
        "item_id": "9647292434",
        "price": 53.48,
        "options": {"color": "purple", "size": "S", "material": "polyester", "style": "v-neck"},
    }
    assert doc["payment_history"][-1] == {"transaction_type": "payment", "amount": abs(0 + (53.48 - 53.43)), "payment_method_id": "gift_card_3749819"}
    assert balance(store, "omar_kim_3528", "gift_card_3749819") == 90.95  # round(91 - 0.05, 2)


def test_return_delivered_order_items(store, source):
    order = source["orders.json"]["#W8346517"]
    item_ids = [i["item_id"] for i in order["items"]][::-1]
    result = store.apply("return_delivered_order_items", {"order_id": "#W8346517", "item_ids": item_ids, "payment_method_id": "gift_card_8883122"})
    assert result.done
    expected = copy.deepcopy(order)
    expected.update(status="return requested", return_items=sorted(item_ids), return_payment_method_id="gift_card_8883122")
    assert order_doc(store, "#W8346517") == expected
    assert list(order_doc(store, "#W8346517"))[-2:] == ["return_items", "return_payment_method_id"]
    # A return moves no money yet.
    assert user_doc(store, "mia_johansson_7000") == source["users.json"]["mia_johansson_7000"]
    # To the original payment method is allowed too.
    assert store.apply(
        "return_delivered_order_items", {"order_id": "#W3134391", "item_ids": [], "payment_method_id": "credit_card_1719121"}
    ).done


def test_exchange_delivered_order_items(store, source):
    # #W4316152 holds the tea kettle 7292993796 (94.80) twice; the gift card has 17.
    args = {
        "order_id": "#W4316152",
        "item_ids": ["7292993796", "7292993796"],
        "new_item_ids": ["9747045638", "3312883418"],
        "payment_method_id": "gift_card_7245904",
    }
    result = store.apply("exchange_delivered_order_items", args)
    assert result.done and result.price_difference == 9.23
    expected = copy.deepcopy(source["orders.json"]["#W4316152"])
    expected.update(
        status="exchange requested",
        exchange_items=["7292993796", "7292993796"],
        exchange_new_items=["3312883418", "9747045638"],
        exchange_payment_method_id="gift_card_7245904",
        exchange_price_difference=9.23,  # round((94.01 - 94.8) + (104.82 - 94.8), 2)
    )
    assert order_doc(store, "#W4316152") == expected
    assert balance(store, "aarav_anderson_8794", "gift_card_7245904") == 17  # nothing charged yet
    assert result.order.extra["exchange_price_difference"] == 9.23


def test_modify_user_address(store, source):
    address = {"address1": "9 Elm St", "address2": "", "city": "Boston", "state": "MA", "country": "USA", "zip": "02108"}
    result = store.apply("modify_user_address", {"user_id": "noah_brown_6181", **address})
    assert result.done and result.order is None and result.customer.address.zip == "02108"
    expected = copy.deepcopy(source["users.json"]["noah_brown_6181"])
    expected["address"] = address
    assert user_doc(store, "noah_brown_6181") == expected
    assert list(user_doc(store, "noah_brown_6181")) == ["name", "address", "email", "payment_methods", "orders"]


# --------------------------------------------------------------------------- rejections change nothing

ADDRESS = {"address1": "1 Main St", "address2": "", "city": "Austin", "state": "TX", "country": "USA", "zip": "78701"}
REJECTIONS = [
    ("cancel_pending_order", {"order_id": "#W0000000", "reason": "no longer needed"}, "order_not_found", "order not found"),
    ("cancel_pending_order", {"order_id": "#W2611340", "reason": "no longer needed"}, "wrong_status", "non-pending order cannot be cancelled"),
    ("cancel_pending_order", {"order_id": "#W8306539", "reason": "too expensive"}, "invalid_reason", "invalid reason"),
    ("modify_pending_order_address", {"order_id": "#W8346517", **ADDRESS}, "wrong_status", "non-pending order cannot be modified"),
    # liam_lee_5696's card, not omar_kim_3528's
    ("modify_pending_order_payment", {"order_id": "#W1080318", "payment_method_id": "credit_card_5809636"},
     "payment_not_found", "payment method not found"),
    ("modify_pending_order_payment", {"order_id": "#W1080318", "payment_method_id": "credit_card_3577130"},
     "payment_not_allowed", "the new payment method should be different from the current one"),
    ("modify_pending_order_payment", {"order_id": "#W6030855", "payment_method_id": "gift_card_5372803"},  # 63 < 621.10
     "insufficient_balance", "insufficient gift card balance to pay for the order"),
    ("modify_pending_order_items",
     {"order_id": "#W1080318", "item_ids": ["8349118980"], "new_item_ids": ["5047954489"], "payment_method_id": "credit_card_3577130"},
     "item_unavailable", "new item 5047954489 not found or available"),
    ("modify_pending_order_items",  # a garden hose for a T-shirt: another product
     {"order_id": "#W1080318", "item_ids": ["8349118980"], "new_item_ids": ["9829827210"], "payment_method_id": "credit_card_3577130"},
     "item_unavailable", "new item 9829827210 not found or available"),
    ("modify_pending_order_items",
     {"order_id": "#W1080318", "item_ids": ["8349118980", "8349118980"], "new_item_ids": ["9647292434", "9647292434"],
      "payment_method_id": "credit_card_3577130"},
     "item_not_found", "8349118980 not found"),
    ("modify_pending_order_items",
     {"order_id": "#W1080318", "item_ids": ["8349118980"], "new_item_ids": [], "payment_method_id": "credit_card_3577130"},
     "invalid_arguments", "the number of items to be exchanged should match"),
    ("modify_pending_order_items",
     {"order_id": "#W1080318", "item_ids": ["8349118980"], "new_item_ids": ["9647292434"], "payment_method_id": "credit_card_5809636"},
     "payment_not_found", "payment method not found"),
    ("modify_pending_order_items",  # amelia_patel_7834's action camera 466.76 -> 503.51: 36.75 > 20 on the card
     {"order_id": "#W2079779", "item_ids": ["9168994198"], "new_item_ids": ["5925362855"], "payment_method_id": "gift_card_3751659"},
     "insufficient_balance", "insufficient gift card balance to pay for the new item"),
    ("modify_pending_order_items",
     {"order_id": "#W2611340", "item_ids": ["6469567736"], "new_item_ids": ["6469567736"], "payment_method_id": "gift_card_1725971"},
     "wrong_status", "non-pending order cannot be modified"),
    ("return_delivered_order_items", {"order_id": "#W1080318", "item_ids": ["8349118980"], "payment_method_id": "credit_card_3577130"},
     "wrong_status", "non-delivered order cannot be returned"),
    # amelia_wilson_4614 paid with a gift card; her PayPal is neither that nor a gift card
    ("return_delivered_order_items", {"order_id": "#W9077205", "item_ids": ["9370300555"], "payment_method_id": "paypal_4101143"},
     "payment_not_allowed", "payment method should be either the original payment method or a gift card"),
    ("return_delivered_order_items", {"order_id": "#W9077205", "item_ids": ["1111111111"], "payment_method_id": "gift_card_7108145"},
     "item_not_found", "some item not found"),
    ("return_delivered_order_items", {"order_id": "#W8346517", "item_ids": [], "payment_method_id": "gift_card_7245904"},
     "payment_not_found", "payment method not found"),
    ("exchange_delivered_order_items",
     {"order_id": "#W1080318", "item_ids": ["8349118980"], "new_item_ids": ["9647292434"], "payment_method_id": "gift_card_3749819"},
     "wrong_status", "non-delivered order cannot be exchanged"),
    ("exchange_delivered_order_items",  # 2 x (109.58 - 94.80) = 29.56 > 17
     {"order_id": "#W4316152", "item_ids": ["7292993796", "7292993796"], "new_item_ids": ["9647374798", "9647374798"],
      "payment_method_id": "gift_card_7245904"},
     "insufficient_balance", "insufficient gift card balance to pay for the price difference"),
    ("exchange_delivered_order_items",
     {"order_id": "#W4316152", "item_ids": ["7292993796"], "new_item_ids": ["6454334990"], "payment_method_id": "gift_card_7245904"},
     "item_unavailable", "new item 6454334990 not found or available"),
    ("modify_user_address", {"user_id": "nobody_0000", **ADDRESS}, "customer_not_found", "user not found"),
    ("refund_everything", {"order_id": "#W1080318"}, "invalid_arguments", None),
    ("cancel_pending_order", {"order_id": "#W8306539"}, "invalid_arguments", None),
    ("cancel_pending_order", {"order_id": 8306539, "reason": "no longer needed"}, "invalid_arguments", None),
    ("cancel_pending_order", {"order_id": "#W8306539", "reason": "no longer needed", "refund": "all"}, "invalid_arguments", None),
    ("return_delivered_order_items", {"order_id": "#W8346517", "item_ids": "9370300555", "payment_method_id": "gift_card_8883122"},
     "invalid_arguments", None),
]


@pytest.mark.parametrize(("operation", "args", "code", "reason"), REJECTIONS, ids=[f"{r[0]}-{r[2]}-{i}" for i, r in enumerate(REJECTIONS)])
def test_a_rejection_says_why_and_changes_nothing(store, operation, args, code, reason):
    before = rows(store.path)
    checked = store.check(operation, args)
    result = store.apply(operation, args, key=f"wf-{operation}")
    for answer in (checked, result):
        assert (answer.status, answer.code) == ("rejected", code), answer
        assert not answer.done and answer.order is None
        if reason is not None:
            assert answer.reason == reason
        else:
            assert answer.reason
    assert rows(store.path) == before  # not even recorded under its key


def test_rejections_leave_the_export_identical(store, tmp_path, source):
    before = exported(store, tmp_path / "before")
    assert before == {name: source[name] for name in FILES}
    for operation, args, _, _ in REJECTIONS:
        assert not store.apply(operation, args).done
    assert exported(store, tmp_path / "after") == before


# --------------------------------------------------------------------------- idempotency and check


def test_apply_is_idempotent_on_the_key(store):
    args = {"order_id": "#W1080318", "payment_method_id": "gift_card_3749819"}
    first = store.apply("modify_pending_order_payment", args, key="wf-42")
    second = store.apply("modify_pending_order_payment", dict(args), key="wf-42")
    assert first.done and second.done
    assert second == first  # the recorded result, order and customer included
    assert balance(store, "omar_kim_3528", "gift_card_3749819") == 37.57  # moved once
    assert len(order_doc(store, "#W1080318")["payment_history"]) == 3
    assert store.counts()["applied_operations"] == 1
    # The same key for something else is refused, not silently answered.
    other = store.apply("cancel_pending_order", {"order_id": "#W1080318", "reason": "no longer needed"}, key="wf-42")
    assert (other.status, other.code) == ("rejected", "invalid_arguments")
    assert order_doc(store, "#W1080318")["status"] == "pending"
    # Without a key nothing is recorded.
    assert store.apply("modify_user_address", {"user_id": "noah_brown_6181", **ADDRESS}).done
    assert store.counts()["applied_operations"] == 1


def test_check_writes_nothing(store):
    before = rows(store.path)
    for operation, args in [
        ("cancel_pending_order", {"order_id": "#W8306539", "reason": "no longer needed"}),
        ("modify_pending_order_payment", {"order_id": "#W1080318", "payment_method_id": "gift_card_3749819"}),
        ("modify_pending_order_items",
         {"order_id": "#W7208030", "item_ids": ["5753502325"], "new_item_ids": ["9829827210"], "payment_method_id": "credit_card_5809636"}),
        ("exchange_delivered_order_items",
         {"order_id": "#W4316152", "item_ids": ["7292993796"], "new_item_ids": ["3312883418"], "payment_method_id": "gift_card_7245904"}),
        ("modify_user_address", {"user_id": "noah_brown_6181", **ADDRESS}),
    ]:
        result = store.check(operation, args)
        assert result.done, (operation, result)
    assert rows(store.path) == before
    # What check previews is what apply then does.
    preview = store.check("cancel_pending_order", {"order_id": "#W8306539", "reason": "no longer needed"})
    assert preview.order.status == "cancelled"
    assert store.get_order("#W8306539").status == "pending"
    assert store.apply("cancel_pending_order", {"order_id": "#W8306539", "reason": "no longer needed"}) == preview
    exchange = store.check(
        "exchange_delivered_order_items",
        {"order_id": "#W4316152", "item_ids": ["7292993796"], "new_item_ids": ["4238115171"], "payment_method_id": "gift_card_7245904"},
    )
    assert exchange.price_difference == -3.02  # a refund: round(91.78 - 94.8, 2)


def test_every_operation_of_the_port_is_implemented(store):
    for operation in OPERATIONS:
        assert store.check(operation, {}).code == "invalid_arguments"
        assert "missing argument" in store.check(operation, {}).reason


def test_concurrent_applies_and_imports(store):
    """Eight threads change one order's payment at once: exactly one wins, and the gift
    card is charged once. Reads running across repeated imports always see a whole store."""
    from concurrent.futures import ThreadPoolExecutor

    args = {"order_id": "#W1080318", "payment_method_id": "gift_card_3749819"}
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda i: store.apply("modify_pending_order_payment", args, key=f"wf-{i}"), range(8)))
    assert sum(r.done for r in results) == 1
    assert {r.reason for r in results if not r.done} == {"there should be exactly one payment for a pending order"}
    assert balance(store, "omar_kim_3528", "gift_card_3749819") == 37.57

    def read(_: int) -> str:
        return store.get_order("#W1080318").status

    with ThreadPoolExecutor(4) as pool:
        reads = pool.map(read, range(200))
        for _ in range(3):
            import_tau_retail(DATA, store.path)
        assert set(reads) <= {"pending"}
    assert len(order_doc(store, "#W1080318")["payment_history"]) == 1  # the last import's data
