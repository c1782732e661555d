"""After-sales in the store: what happens to a return, an exchange or a refund after the
customer asked for it (the return saga, workflows/returns, drives these steps).

The seven τ-bench operations end at "return requested" / "exchange requested" /
"cancelled"; a company's ERP goes on: it issues a return authorisation and a label, sees
the parcel arrive, inspects it, pays the refund or ships the replacement. These steps
are kept here, in the same store (its file, or PostgreSQL), in tables of their own
beside τ-bench's documents (so a store exported right after a conversation is still
exactly what τ-bench's tools would have produced); a step that moves money or goods edits the order document as the
store would (a refund line in ``payment_history``, a gift card credited, the exchanged
items and a new fulfilment).

Every step is one transaction and idempotent on its ``key`` (the saga's workflow id and
the step's name): the key and the step's result are recorded with the change, so a
retried activity gets the first result back and nothing is paid or shipped twice. A step
the store refuses raises ``AfterSalesRejected`` and changes nothing.

Refunds follow the store's rule: to a gift card at once (``completed``), to any other
method ``pending`` until the payment provider confirms it (``complete_refund``).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from datetime import datetime, timezone
from typing import Any, Callable

from services.erp.tau_retail import ORDER_EXTRA_FIELDS, TauRetailStore, _order_doc as _order_doc_or_none, _product_doc, _user_doc

_TABLES = (
    """CREATE TABLE IF NOT EXISTS after_sales_steps (
        key TEXT PRIMARY KEY,
        step TEXT NOT NULL,
        order_id TEXT NOT NULL,
        result TEXT NOT NULL,
        done_at TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS refunds (
        refund_id TEXT PRIMARY KEY,
        order_id TEXT NOT NULL,
        amount REAL NOT NULL,
        payment_method_id TEXT NOT NULL,
        status TEXT NOT NULL,
        created_at TEXT NOT NULL,
        completed_at TEXT NOT NULL DEFAULT ''
    )""",
)
# What an accepted return or exchange request leaves on the order (τ-bench's fields).
_REQUEST_FIELDS = tuple(f for f in ORDER_EXTRA_FIELDS if f.startswith(("return_", "exchange_")))
REQUESTED = {"return": "return requested", "exchange": "exchange requested"}


class AfterSalesRejected(Exception):
    """The store refuses the step (``code`` as in OperationResult: wrong_status,
    item_unavailable, payment_not_found, order_not_found...); nothing changed."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _digest(key: str, size: int = 8) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:size].upper()


def _is_gift_card(payment_method_id: str) -> bool:
    return "gift_card" in payment_method_id


class AfterSales:
    """The after-sales steps of a store kept in τ-bench's format (the imported τ-bench
    store and the demo store), in its SQLite file or in PostgreSQL: each step is one
    ``TauRetailStore.transaction()``."""

    def __init__(self, store: TauRetailStore) -> None:
        self._store = store

    # -- steps ------------------------------------------------------------------------

    def authorize_return(self, order_id: str, kind: str, *, key: str) -> dict[str, Any]:
        """The return authorisation and the prepaid label for a requested return or exchange."""

        def step(conn: sqlite3.Connection, order: dict[str, Any]) -> dict[str, Any]:
            if order.get("status") != REQUESTED.get(kind):
                raise AfterSalesRejected("wrong_status", f"order {order_id} has no {kind} requested (it is {order.get('status')})")
            digest = _digest(key)
            items = list(order.get(f"{kind}_items") or [])
            return {
                "rma_id": f"RMA-{digest}", "label": f"RT{int(digest, 16) % 10**10:010d}", "item_ids": items,
                # What the goods are worth and where money goes back (a refund, or an exchange
                # that cannot ship and is refunded instead).
                "amount": _items_value(order, items), "payment_method_id": str(order.get(f"{kind}_payment_method_id", "")),
            }

        return self._step(key, "authorize_return", order_id, step)

    def cancel_return(self, order_id: str, *, key: str) -> dict[str, Any]:
        """The parcel never came: the request is withdrawn and the order is delivered again."""

        def step(conn: sqlite3.Connection, order: dict[str, Any]) -> dict[str, Any]:
            if order.get("status") not in REQUESTED.values():
                raise AfterSalesRejected("wrong_status", f"order {order_id} has no return or exchange requested")
            for name in _REQUEST_FIELDS:
                order.pop(name, None)
            order["status"] = "delivered"
            _write_order(conn, order)
            return {"status": "delivered"}

        return self._step(key, "cancel_return", order_id, step)

    def refund(
        self, order_id: str, amount: float, payment_method_id: str, *, key: str, order_status: str = "", recorded: bool = False
    ) -> dict[str, Any]:
        """Pay ``amount`` back to ``payment_method_id`` (a refund line on the order, a gift
        card credited at once) and set the order's status to ``order_status`` when given.
        ``recorded``: the store already wrote the refund line (a cancellation) and only
        its tracking starts here. A return of some of the order's items leaves it
        "partially returned" rather than "returned"."""

        def step(conn: sqlite3.Connection, order: dict[str, Any]) -> dict[str, Any]:
            if amount < 0:
                raise AfterSalesRejected("invalid_arguments", "a refund cannot be negative")
            user = _user_doc(conn, str(order.get("user_id", "")))
            methods = (user or {}).get("payment_methods", {})
            if payment_method_id not in methods:
                raise AfterSalesRejected("payment_not_found", f"payment method {payment_method_id} not found")
            gift = _is_gift_card(payment_method_id)
            if not recorded:
                order.setdefault("payment_history", []).append(
                    {"transaction_type": "refund", "amount": amount, "payment_method_id": payment_method_id}
                )
                if gift:
                    methods[payment_method_id]["balance"] = round(float(methods[payment_method_id].get("balance", 0)) + amount, 2)
                    _write_user(conn, str(order.get("user_id", "")), user)
            status = order_status
            returned = order.get("return_items") or order.get("exchange_items") or []
            if status == "returned" and len(returned) < len(order.get("items", [])):
                status = "partially returned"  # some of the order's items stay with the customer
            if status:
                order["status"] = status
            if not recorded or status:
                _write_order(conn, order)
            refund_id = f"RF-{_digest(key)}"
            status = "completed" if gift else "pending"
            now = _now()
            conn.execute(
                "INSERT INTO refunds(refund_id, order_id, amount, payment_method_id, status, created_at, completed_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (refund_id, order_id, amount, payment_method_id, status, now, now if gift else ""),
            )
            return {"refund_id": refund_id, "amount": amount, "payment_method_id": payment_method_id, "status": status}

        return self._step(key, "refund", order_id, step)

    def complete_refund(self, refund_id: str) -> dict[str, Any]:
        """The payment provider confirmed the refund; completing it again changes nothing."""
        with self._store.transaction() as conn:
            _tables(conn)
            row = conn.execute("SELECT status, completed_at FROM refunds WHERE refund_id = ?", (refund_id,)).fetchone()
            if row is None:
                raise AfterSalesRejected("refund_not_found", f"no refund {refund_id}")
            if row[0] != "completed":
                conn.execute("UPDATE refunds SET status = 'completed', completed_at = ? WHERE refund_id = ?", (_now(), refund_id))
        return self.get_refund(refund_id) or {}

    def ship_replacement(self, order_id: str, *, key: str) -> dict[str, Any]:
        """An accepted exchange: the new items replace the old on the order, the price
        difference is paid or refunded with the exchange's payment method, and the
        replacement ships (a new fulfilment with its tracking number)."""

        def step(conn: sqlite3.Connection, order: dict[str, Any]) -> dict[str, Any]:
            if order.get("status") != REQUESTED["exchange"]:
                raise AfterSalesRejected("wrong_status", f"order {order_id} has no exchange requested")
            old_ids, new_ids = list(order.get("exchange_items") or []), list(order.get("exchange_new_items") or [])
            method_id = str(order.get("exchange_payment_method_id", ""))
            user = _user_doc(conn, str(order.get("user_id", "")))
            methods = (user or {}).get("payment_methods", {})
            difference = 0.0
            for old_id, new_id in zip(old_ids, new_ids, strict=True):
                item = next(i for i in order["items"] if i.get("item_id") == old_id)
                product = _product_doc(conn, str(item.get("product_id", "")))
                variant = ((product or {}).get("variants") or {}).get(new_id)
                if variant is None or not variant.get("available"):
                    raise AfterSalesRejected("item_unavailable", f"replacement item {new_id} is no longer available")
                difference += float(variant["price"]) - float(item["price"])
                item.update(item_id=new_id, price=variant["price"], options=variant.get("options", {}))
            difference = round(difference, 2)
            if difference and method_id:
                order.setdefault("payment_history", []).append(
                    {"transaction_type": "payment" if difference > 0 else "refund", "amount": abs(difference), "payment_method_id": method_id}
                )
                if _is_gift_card(method_id) and method_id in methods:
                    methods[method_id]["balance"] = round(float(methods[method_id].get("balance", 0)) - difference, 2)
                    _write_user(conn, str(order.get("user_id", "")), user)
            tracking = f"EX{int(_digest(key), 16) % 10**10:010d}"
            order.setdefault("fulfillments", []).append({"tracking_id": [tracking], "item_ids": sorted(new_ids)})
            order["status"] = "exchanged"
            _write_order(conn, order)
            return {"tracking_id": tracking, "item_ids": sorted(new_ids), "price_difference": difference}

        return self._step(key, "ship_replacement", order_id, step)

    # -- reads ------------------------------------------------------------------------

    def get_refund(self, refund_id: str) -> dict[str, Any] | None:
        with self._store.transaction() as conn:
            _tables(conn)
            row = conn.execute(
                "SELECT refund_id, order_id, amount, payment_method_id, status, created_at, completed_at FROM refunds WHERE refund_id = ?",
                (refund_id,),
            ).fetchone()
        keys = ("refund_id", "order_id", "amount", "payment_method_id", "status", "created_at", "completed_at")
        return dict(zip(keys, row, strict=True)) if row else None

    def refunds_for(self, order_id: str) -> list[dict[str, Any]]:
        with self._store.transaction() as conn:
            _tables(conn)
            ids = [r[0] for r in conn.execute("SELECT refund_id FROM refunds WHERE order_id = ? ORDER BY created_at, refund_id", (order_id,))]
        return [r for r in (self.get_refund(i) for i in ids) if r]

    # -- plumbing ---------------------------------------------------------------------

    def _step(self, key: str, step: str, order_id: str, change: Callable[[sqlite3.Connection, dict[str, Any]], dict[str, Any]]) -> dict[str, Any]:
        if not key:
            raise ValueError("an after-sales step needs an idempotency key")
        with self._store.transaction() as conn:
            _tables(conn)
            row = conn.execute("SELECT step, order_id, result FROM after_sales_steps WHERE key = ?", (key,)).fetchone()
            if row is not None:
                if (row[0], row[1]) != (step, order_id):
                    raise AfterSalesRejected("invalid_arguments", f"key {key!r} was already used for {row[0]} on {row[1]}")
                return json.loads(row[2])
            order = _order_doc(conn, order_id)
            result = change(conn, order)
            conn.execute(
                "INSERT INTO after_sales_steps(key, step, order_id, result, done_at) VALUES (?, ?, ?, ?, ?)",
                (key, step, order_id, json.dumps(result, ensure_ascii=False), _now()),
            )
            return result


def _items_value(order: dict[str, Any], item_ids: list[str]) -> float:
    wanted, total = list(item_ids), 0.0
    for item in order.get("items", []):
        if item.get("item_id") in wanted:
            wanted.remove(item.get("item_id"))
            total += float(item.get("price", 0))
    return round(total, 2)


def _tables(conn: sqlite3.Connection) -> None:
    for ddl in _TABLES:
        conn.execute(ddl)


def _order_doc(conn: sqlite3.Connection, order_id: str) -> dict[str, Any]:
    order = _order_doc_or_none(conn, order_id)
    if order is None:
        raise AfterSalesRejected("order_not_found", f"order {order_id} not found")
    return order


def _write_order(conn: sqlite3.Connection, order: dict[str, Any]) -> None:
    conn.execute("UPDATE orders SET doc = ? WHERE order_id = ?", (json.dumps(order, ensure_ascii=False), order["order_id"]))


def _write_user(conn: sqlite3.Connection, user_id: str, user: dict[str, Any] | None) -> None:
    if user is not None:
        conn.execute("UPDATE users SET doc = ? WHERE user_id = ?", (json.dumps(user, ensure_ascii=False), user_id))
