"""The demo store behind the ERP port (format ``demo``, zh + en, CNY).

Its documents are built from the seeded demo ERP (``services/demo/retail.py``) into the
same SQLite document store as an imported τ-bench store, so reads and the seven
operations behave the same; on top, the demo store's own policy (its FAQ):

* returns and exchanges only within 7 days of delivery (counted from the demo store's
  "now", the fixed moment its history is generated up to);
* products marked as excluded from 7-day no-reason returns (underwear, toothbrushes,
  creams, coffee) cannot be returned or exchanged.

A rejected operation changes nothing and says why, as with every store behind the port.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from typing import Any

from services.erp.port import OperationResult
from services.erp.tau_retail import TauRetailStore, write_documents

FORMAT = "demo"


class DemoRetailStore(TauRetailStore):
    format = FORMAT
    currency = "CNY"

    def check(self, operation: str, args: dict[str, Any]) -> OperationResult:
        return self._policy(operation, args) or super().check(operation, args)

    def apply(self, operation: str, args: dict[str, Any], *, key: str = "") -> OperationResult:
        return self._policy(operation, args) or super().apply(operation, args, key=key)

    def _policy(self, operation: str, args: dict[str, Any]) -> OperationResult | None:
        """The demo store's rules beyond the shared ones; None when they allow it."""
        if operation not in ("return_delivered_order_items", "exchange_delivered_order_items"):
            return None
        order = self.get_order(str(args.get("order_id", "")))
        if order is None or order.status != "delivered":
            return None  # the shared checks say why
        from services.demo.retail import RETURN_WINDOW_DAYS, now

        delivered = order.extra.get("delivered_at")
        if delivered and now() - datetime.fromisoformat(str(delivered)) > timedelta(days=RETURN_WINDOW_DAYS):
            return OperationResult(
                operation, "rejected", code="window_passed",
                reason=f"the {RETURN_WINDOW_DAYS}-day return and exchange window after delivery has passed",
            )
        wanted = [str(i) for i in args.get("item_ids") or []]
        for item in order.items:
            if item.item_id in wanted:
                product = self._product_doc(item.product_id)
                if product is not None and not product.get("returnable_7day", True):
                    return OperationResult(
                        operation, "rejected", code="not_returnable",
                        reason=f"{item.name} is excluded from 7-day no-reason returns and exchanges",
                    )
        return None

    def _product_doc(self, product_id: str) -> dict[str, Any] | None:
        import json

        with self._connect() as conn:
            row = conn.execute("SELECT doc FROM products WHERE product_id = ?", (product_id,)).fetchone()
        return json.loads(row[0]) if row else None


def build_demo_store(
    demo_store_path: str | os.PathLike[str], target_path: str | os.PathLike[str], *, dsn: str = "", only_if_absent: bool = False
) -> dict[str, int] | None:
    """Build the demo store's documents from the seeded demo ERP at ``demo_store_path``
    into ``target_path``, or into PostgreSQL at ``dsn`` (atomic replace, like an import);
    with ``only_if_absent``, a store already there is kept (None)."""
    from services.demo.retail import demo_documents
    from services.demo.store import DemoStore

    data = demo_documents(DemoStore(demo_store_path))
    return write_documents(data, target_path, fmt=FORMAT, source=f"demo store {demo_store_path}", dsn=dsn, only_if_absent=only_if_absent)
