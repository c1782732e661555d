"""τ-bench retail's rules, apart from where its documents are stored (services/erp/tau_retail.py):
how a user, order or product document reads as kefu's ERP records, and the seven write
operations — their arguments as τ-bench's tools.json gives them, the policy checks and the
document changes, made on the documents in memory (the store writes them in one transaction).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from services.erp.port import (
    ADDRESS_FIELDS,
    CANCEL_REASONS,
    OPERATIONS,
    Address,
    Customer,
    Fulfillment,
    OperationResult,
    Order,
    OrderItem,
    Payment,
    PaymentMethod,
    Product,
    Variant,
)

if TYPE_CHECKING:
    from services.erp.tau_retail import _Docs

# What operations add to an order document, as τ-bench names it (Order.extra).
ORDER_EXTRA_FIELDS = (
    "cancel_reason",
    "return_items",
    "return_payment_method_id",
    "exchange_items",
    "exchange_new_items",
    "exchange_payment_method_id",
    "exchange_price_difference",
)

# What other stores' order documents carry for reading (the demo store: when it was
# placed and delivered, by which carrier); never written by an operation.
ORDER_INFO_FIELDS = ("created_at", "delivered_at", "carrier")


# --------------------------------------------------------------------------- records


def _address(doc: Any) -> Address:
    doc = doc if isinstance(doc, dict) else {}
    return Address(**{f: str(doc.get(f, "")) for f in ADDRESS_FIELDS})


def _customer(user_id: str, doc: dict[str, Any]) -> Customer:
    name = doc.get("name") or {}
    methods = []
    for method_id, method in (doc.get("payment_methods") or {}).items():
        source = str(method.get("source", ""))
        balance = method.get("balance") if source == "gift_card" else None
        methods.append(
            PaymentMethod(
                id=str(method.get("id", method_id)),
                source=source,
                brand=str(method.get("brand", "")),
                last_four=str(method.get("last_four", "")),
                balance=float(balance) if balance is not None else None,
            )
        )
    return Customer(
        customer_id=user_id,
        first_name=str(name.get("first_name", "")),
        last_name=str(name.get("last_name", "")),
        email=str(doc.get("email", "")),
        address=_address(doc.get("address")),
        payment_methods=methods,
        order_ids=[str(o) for o in doc.get("orders", [])],
        phone=str(doc.get("phone", "")),
    )


def _order(doc: dict[str, Any]) -> Order:
    return Order(
        order_id=str(doc["order_id"]),
        customer_id=str(doc.get("user_id", "")),
        status=str(doc.get("status", "")),
        address=_address(doc.get("address")),
        items=[
            OrderItem(
                item_id=str(item.get("item_id", "")),
                product_id=str(item.get("product_id", "")),
                name=str(item.get("name", "")),
                price=float(item.get("price", 0.0)),
                options={str(k): str(v) for k, v in (item.get("options") or {}).items()},
                name_en=str(item.get("name_en", "")),
            )
            for item in doc.get("items", [])
        ],
        fulfillments=[
            Fulfillment(tracking_ids=[str(t) for t in f.get("tracking_id", [])], item_ids=[str(i) for i in f.get("item_ids", [])])
            for f in doc.get("fulfillments", [])
        ],
        payments=[
            Payment(
                transaction_type=str(p.get("transaction_type", "")),
                amount=float(p.get("amount", 0.0)),
                payment_method_id=str(p.get("payment_method_id", "")),
            )
            for p in doc.get("payment_history", [])
        ],
        extra={k: doc[k] for k in ORDER_EXTRA_FIELDS + ORDER_INFO_FIELDS if k in doc},
    )


def _product(doc: dict[str, Any]) -> Product:
    return Product(
        product_id=str(doc["product_id"]),
        name=str(doc.get("name", "")),
        variants=[
            Variant(
                item_id=str(v.get("item_id", item_id)),
                options={str(k): str(o) for k, o in (v.get("options") or {}).items()},
                available=bool(v.get("available", False)),
                price=float(v.get("price", 0.0)),
            )
            for item_id, v in (doc.get("variants") or {}).items()
        ],
        name_en=str(doc.get("name_en", "")),
        aliases=[str(a) for a in doc.get("aliases", [])],
    )


# --------------------------------------------------------------------------- operations

_STR, _LIST = "string", "list of strings"
_ADDRESS_ARGS = {f: _STR for f in ADDRESS_FIELDS}
# Arguments of each operation (all required), as in τ-bench's tools.json.
OPERATION_ARGS: dict[str, dict[str, str]] = {
    "cancel_pending_order": {"order_id": _STR, "reason": _STR},
    "modify_pending_order_address": {"order_id": _STR, **_ADDRESS_ARGS},
    "modify_pending_order_items": {"order_id": _STR, "item_ids": _LIST, "new_item_ids": _LIST, "payment_method_id": _STR},
    "modify_pending_order_payment": {"order_id": _STR, "payment_method_id": _STR},
    "return_delivered_order_items": {"order_id": _STR, "item_ids": _LIST, "payment_method_id": _STR},
    "exchange_delivered_order_items": {"order_id": _STR, "item_ids": _LIST, "new_item_ids": _LIST, "payment_method_id": _STR},
    "modify_user_address": {"user_id": _STR, **_ADDRESS_ARGS},
}
assert tuple(OPERATION_ARGS) == OPERATIONS


class _Rejected(Exception):
    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def _rejected(operation: str, code: str, reason: str) -> OperationResult:
    return OperationResult(operation=operation, status="rejected", reason=reason, code=code)


def _clean_args(operation: str, args: Any) -> dict[str, Any] | OperationResult:
    """The arguments with their τ-bench types, or the ``invalid_arguments`` rejection.
    Unknown arguments are refused too: τ-bench's tools would not accept them either."""
    spec = OPERATION_ARGS.get(operation)
    if spec is None:
        return _rejected(operation, "invalid_arguments", f"unknown operation {operation!r}; one of {', '.join(OPERATIONS)}")
    if not isinstance(args, dict):
        return _rejected(operation, "invalid_arguments", "arguments must be a mapping of names to values")
    unknown = sorted(str(k) for k in args if k not in spec)
    if unknown:
        return _rejected(operation, "invalid_arguments", f"unexpected argument(s) for {operation}: {', '.join(unknown)}")
    clean: dict[str, Any] = {}
    for name, kind in spec.items():
        if name not in args:
            return _rejected(operation, "invalid_arguments", f"missing argument {name!r} for {operation}")
        value = args[name]
        if kind == _STR and not isinstance(value, str):
            return _rejected(operation, "invalid_arguments", f"argument {name!r} must be a string")
        if kind == _LIST:
            if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
                return _rejected(operation, "invalid_arguments", f"argument {name!r} must be a list of strings")
            value = list(value)
        clean[name] = value
    return clean


def _execute(docs: _Docs, operation: str, args: dict[str, Any]) -> OperationResult:
    """Validate and change the documents in memory, as τ-bench's tool would."""
    try:
        order_id, user_id, difference = _OPERATIONS[operation](docs, **args)
    except _Rejected as exc:
        return _rejected(operation, exc.code, exc.reason)
    order = docs.orders.get(order_id) if order_id is not None else None
    user = docs.users.get(user_id) if user_id is not None else None
    return OperationResult(
        operation=operation,
        status="done",
        order=_order(order) if order is not None else None,
        customer=_customer(user_id, user) if user_id is not None and user is not None else None,
        price_difference=difference,
    )


def _pending_order(docs: _Docs, order_id: str, refusal: str) -> dict[str, Any]:
    return _order_in_status(docs, order_id, "pending", refusal)


def _order_in_status(docs: _Docs, order_id: str, status: str, refusal: str) -> dict[str, Any]:
    order = docs.order(order_id)
    if order is None:
        raise _Rejected("order_not_found", "order not found")
    if order.get("status") != status:
        raise _Rejected("wrong_status", refusal)
    return order


def _owner_methods(docs: _Docs, order: dict[str, Any]) -> dict[str, Any]:
    user = docs.user(str(order.get("user_id", "")))
    return user.get("payment_methods", {}) if user is not None else {}


def _owned_method(docs: _Docs, order: dict[str, Any], payment_method_id: str) -> dict[str, Any]:
    method = _owner_methods(docs, order).get(payment_method_id)
    if method is None:
        raise _Rejected("payment_not_found", "payment method not found")
    return method


def _is_gift_card(method: dict[str, Any]) -> bool:
    return method.get("source") == "gift_card"


def _check_item_counts(order: dict[str, Any], item_ids: list[str], refusal: str | None) -> None:
    """Every id must be in the order at least as often as asked; ``refusal`` None means
    τ-bench's per-item message (``<id> not found``)."""
    present = [item.get("item_id") for item in order.get("items", [])]
    for item_id in item_ids:
        if item_ids.count(item_id) > present.count(item_id):
            raise _Rejected("item_not_found", refusal or f"{item_id} not found")


def _price_difference(docs: _Docs, order: dict[str, Any], item_ids: list[str], new_item_ids: list[str]) -> float:
    """Sum of new − old price over the pairs, in pair order from 0 (τ-bench's float
    arithmetic); each new item must be an available variant of the old item's product."""
    if len(item_ids) != len(new_item_ids):
        raise _Rejected("invalid_arguments", "the number of items to be exchanged should match")
    difference: float = 0
    for item_id, new_item_id in zip(item_ids, new_item_ids, strict=True):
        item = next(i for i in order["items"] if i.get("item_id") == item_id)
        variant = _variant(docs, item, new_item_id)
        if variant is None or not variant.get("available"):
            raise _Rejected("item_unavailable", f"new item {new_item_id} not found or available")
        difference += variant["price"] - item["price"]
    return difference


def _variant(docs: _Docs, item: dict[str, Any], new_item_id: str) -> dict[str, Any] | None:
    product = docs.product(str(item.get("product_id", "")))
    return (product.get("variants") or {}).get(new_item_id) if product is not None else None


def _cancel_pending_order(docs: _Docs, order_id: str, reason: str) -> tuple[str, str, float]:
    order = _pending_order(docs, order_id, "non-pending order cannot be cancelled")
    if reason not in CANCEL_REASONS:
        raise _Rejected("invalid_reason", "invalid reason")
    methods = _owner_methods(docs, order)
    refunds = []
    for payment in order["payment_history"]:
        method_id = payment["payment_method_id"]
        refunds.append({"transaction_type": "refund", "amount": payment["amount"], "payment_method_id": method_id})
        # τ-bench credits gift cards at once; other methods take 5-7 business days.
        if "gift_card" in method_id and method_id in methods:
            methods[method_id]["balance"] = round(methods[method_id]["balance"] + payment["amount"], 2)
            docs.dirty_users.add(order["user_id"])
    order["status"] = "cancelled"
    order["cancel_reason"] = reason
    order["payment_history"].extend(refunds)
    docs.dirty_orders.add(order_id)
    return order_id, order["user_id"], 0.0


def _new_address(fields: dict[str, str]) -> dict[str, str]:
    return {f: fields[f] for f in ADDRESS_FIELDS}


def _modify_pending_order_address(docs: _Docs, order_id: str, **address: str) -> tuple[str, str, float]:
    order = _pending_order(docs, order_id, "non-pending order cannot be modified")
    order["address"] = _new_address(address)
    docs.dirty_orders.add(order_id)
    docs.user(order["user_id"])
    return order_id, order["user_id"], 0.0


def _modify_pending_order_payment(docs: _Docs, order_id: str, payment_method_id: str) -> tuple[str, str, float]:
    order = _pending_order(docs, order_id, "non-pending order cannot be modified")
    new_method = _owned_method(docs, order, payment_method_id)
    history = order["payment_history"]
    if len(history) != 1 or history[0].get("transaction_type") != "payment":
        raise _Rejected("payment_not_allowed", "there should be exactly one payment for a pending order")
    old_method_id = history[0]["payment_method_id"]
    if old_method_id == payment_method_id:
        raise _Rejected("payment_not_allowed", "the new payment method should be different from the current one")
    amount = history[0]["amount"]
    if _is_gift_card(new_method) and new_method["balance"] < amount:
        raise _Rejected("insufficient_balance", "insufficient gift card balance to pay for the order")
    history.extend(
        [
            {"transaction_type": "payment", "amount": amount, "payment_method_id": payment_method_id},
            {"transaction_type": "refund", "amount": amount, "payment_method_id": old_method_id},
        ]
    )
    if _is_gift_card(new_method):
        new_method["balance"] = round(new_method["balance"] - amount, 2)
    old_method = _owner_methods(docs, order).get(old_method_id)
    if old_method is not None and _is_gift_card(old_method):
        old_method["balance"] = round(old_method["balance"] + amount, 2)
    docs.dirty_orders.add(order_id)
    docs.dirty_users.add(order["user_id"])
    return order_id, order["user_id"], 0.0


def _modify_pending_order_items(
    docs: _Docs, order_id: str, item_ids: list[str], new_item_ids: list[str], payment_method_id: str
) -> tuple[str, str, float]:
    order = _pending_order(docs, order_id, "non-pending order cannot be modified")
    _check_item_counts(order, item_ids, None)
    difference = _price_difference(docs, order, item_ids, new_item_ids)  # not rounded, as in τ-bench
    method = _owned_method(docs, order, payment_method_id)
    if _is_gift_card(method) and method["balance"] < difference:
        raise _Rejected("insufficient_balance", "insufficient gift card balance to pay for the new item")
    order["payment_history"].append(
        {
            "transaction_type": "payment" if difference > 0 else "refund",
            "amount": abs(difference),
            "payment_method_id": payment_method_id,
        }
    )
    if _is_gift_card(method):
        method["balance"] = round(method["balance"] - difference, 2)
        docs.dirty_users.add(order["user_id"])
    for item_id, new_item_id in zip(item_ids, new_item_ids, strict=True):
        # The first item that still has the old id: earlier pairs may have changed the
        # first of several equal items already.
        item = next(i for i in order["items"] if i.get("item_id") == item_id)
        variant = _variant(docs, item, new_item_id)
        assert variant is not None  # checked by _price_difference
        item["item_id"] = new_item_id
        item["price"] = variant["price"]
        item["options"] = variant["options"]
    order["status"] = "pending (item modified)"
    docs.dirty_orders.add(order_id)
    return order_id, order["user_id"], float(round(difference, 2))


def _return_delivered_order_items(
    docs: _Docs, order_id: str, item_ids: list[str], payment_method_id: str
) -> tuple[str, str, float]:
    order = _order_in_status(docs, order_id, "delivered", "non-delivered order cannot be returned")
    _owned_method(docs, order, payment_method_id)
    history = order.get("payment_history") or [{}]
    if "gift_card" not in payment_method_id and payment_method_id != history[0].get("payment_method_id"):
        raise _Rejected("payment_not_allowed", "payment method should be either the original payment method or a gift card")
    _check_item_counts(order, item_ids, "some item not found")
    order["status"] = "return requested"
    order["return_items"] = sorted(item_ids)
    order["return_payment_method_id"] = payment_method_id
    docs.dirty_orders.add(order_id)
    return order_id, order["user_id"], 0.0


def _exchange_delivered_order_items(
    docs: _Docs, order_id: str, item_ids: list[str], new_item_ids: list[str], payment_method_id: str
) -> tuple[str, str, float]:
    order = _order_in_status(docs, order_id, "delivered", "non-delivered order cannot be exchanged")
    _check_item_counts(order, item_ids, None)
    difference = round(_price_difference(docs, order, item_ids, new_item_ids), 2)
    method = _owned_method(docs, order, payment_method_id)
    if _is_gift_card(method) and method["balance"] < difference:
        raise _Rejected("insufficient_balance", "insufficient gift card balance to pay for the price difference")
    order["status"] = "exchange requested"
    order["exchange_items"] = sorted(item_ids)
    order["exchange_new_items"] = sorted(new_item_ids)
    order["exchange_payment_method_id"] = payment_method_id
    order["exchange_price_difference"] = difference
    docs.dirty_orders.add(order_id)
    return order_id, order["user_id"], float(difference)


def _modify_user_address(docs: _Docs, user_id: str, **address: str) -> tuple[None, str, float]:
    user = docs.user(user_id)
    if user is None:
        raise _Rejected("customer_not_found", "user not found")
    user["address"] = _new_address(address)
    docs.dirty_users.add(user_id)
    return None, user_id, 0.0


_OPERATIONS = {
    "cancel_pending_order": _cancel_pending_order,
    "modify_pending_order_address": _modify_pending_order_address,
    "modify_pending_order_items": _modify_pending_order_items,
    "modify_pending_order_payment": _modify_pending_order_payment,
    "return_delivered_order_items": _return_delivered_order_items,
    "exchange_delivered_order_items": _exchange_delivered_order_items,
    "modify_user_address": _modify_user_address,
}

