"""Write bench/demo_tasks_zh.json: the Chinese task set for the demo store.

Each task is in τ-bench's format (``user_id``, ``instruction``, ``actions``) plus
``correction`` (the customer names another order first and corrects itself) and ``ask``
(the question of a task that changes nothing). The tasks cover every operation, the
demo store's policy rejections (outside the 7-day window, a product excluded from
no-reason returns, an order already shipped), corrections, several tasks in one
conversation, and order-status questions. They are picked from the demo store's data
by fixed rules, so the file is the same on every run; run it again after changing the
demo data:

    .venv/bin/python bench/demo_tasks.py            # writes bench/demo_tasks_zh.json
    .venv/bin/kefu eval conversations --store demo --tasks bench/demo_tasks_zh.json
"""

from __future__ import annotations

import json
import sys
import tempfile
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from services.demo.retail import RETURN_WINDOW_DAYS, now  # noqa: E402
from services.demo.store import DemoStore  # noqa: E402
from services.erp.demo_store import DemoRetailStore, build_demo_store  # noqa: E402

OUT = Path(__file__).resolve().parent / "demo_tasks_zh.json"


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="kefu-demo-tasks-"))
    DemoStore.seed(tmp / "demo.db")
    build_demo_store(tmp / "demo.db", tmp / "erp.db")
    store = DemoRetailStore(tmp / "erp.db")
    customers = [f"C{i:05d}" for i in range(1, 51)]
    used: set[str] = set()
    tasks: list[dict] = []

    def in_window(o) -> bool:
        return (now() - datetime.fromisoformat(o.extra["delivered_at"])).days < RETURN_WINDOW_DAYS

    def returnable(o) -> bool:
        return all(store._product_doc(it.product_id).get("returnable_7day", True) for it in o.items)  # noqa: SLF001

    def orders(want, n: int, *, fresh: bool = True):
        found = []
        for cid in customers:
            if fresh and cid in used:
                continue
            for o in store.list_orders(cid):
                if want(o):
                    found.append((cid, o))
                    break
            if len(found) == n:
                break
        for cid, _ in found:
            used.add(cid)
        return found

    def add(cid: str, instruction: str, actions: list[dict], **extra) -> None:
        tasks.append({"annotator": "kefu", "user_id": cid, "instruction": instruction, "actions": actions, "outputs": [], **extra})

    def original(o) -> str:
        return o.payments[0].payment_method_id

    def balance_id(cid: str) -> str:
        return next(m.id for m in store.get_customer(cid).payment_methods if m.source == "gift_card")

    def other_variant(it):
        product = store.get_product(it.product_id)
        for v in product.variants:
            if v.available and v.item_id != it.item_id and sum(v.options[k] != it.options.get(k) for k in v.options) == 1:
                return v
        return None

    # Cancellations (one with a correction), and one of an order already shipped (rejected).
    for k, (cid, o) in enumerate(orders(lambda o: o.status == "pending" and o.payments, 5)):
        reason = "no longer needed" if k % 2 else "ordered by mistake"
        add(cid, f"取消订单 {o.order_id}，原因：{reason}", [{"name": "cancel_pending_order", "kwargs": {"order_id": o.order_id, "reason": reason}}],
            correction=k == 0)
    for cid, o in orders(lambda o: o.status == "processed", 2):
        add(cid, f"想取消已发货的订单 {o.order_id}（应被拒绝）", [{"name": "cancel_pending_order", "kwargs": {"order_id": o.order_id, "reason": "no longer needed"}}])

    # Address of a pending order, and the account's default address.
    streets = ["人民路100号3栋201室", "解放路8号", "长江路66号2单元501室", "幸福路12号"]
    for k, (cid, o) in enumerate(orders(lambda o: o.status == "pending", 3)):
        addr = {"address1": streets[k], "address2": "", "city": "杭州市", "state": "西湖区", "country": "中国", "zip": ""}
        add(cid, f"把订单 {o.order_id} 的收货地址改成杭州市西湖区{streets[k]}", [{"name": "modify_pending_order_address", "kwargs": {"order_id": o.order_id, **addr}}],
            correction=k == 1)
    for k, (cid, _) in enumerate(orders(lambda o: True, 2)):
        addr = {"address1": streets[3 - k], "address2": "", "city": "南京市", "state": "鼓楼区", "country": "中国", "zip": ""}
        add(cid, f"把账户默认地址改成南京市鼓楼区{streets[3 - k]}", [{"name": "modify_user_address", "kwargs": {"user_id": cid, **addr}}])

    # Payment method of a pending order.
    for cid, o in orders(lambda o: o.status == "pending" and len(o.payments) == 1, 3):
        methods = [m for m in store.get_customer(cid).payment_methods if m.id != original(o) and m.source != "gift_card"]
        if methods:
            add(cid, f"订单 {o.order_id} 改用{methods[0].source}支付", [{"name": "modify_pending_order_payment", "kwargs": {"order_id": o.order_id, "payment_method_id": methods[0].id}}])

    # Items of a pending order changed to another variant.
    for cid, o in orders(lambda o: o.status == "pending" and any(other_variant(it) for it in o.items), 4):
        it = next(it for it in o.items if other_variant(it))
        v = other_variant(it)
        add(cid, f"把订单 {o.order_id} 里的{it.name}换成{'、'.join(v.options.values())}", [{"name": "modify_pending_order_items", "kwargs": {
            "order_id": o.order_id, "item_ids": [it.item_id], "new_item_ids": [v.item_id], "payment_method_id": balance_id(cid)}}])

    # Returns within the window (to the original method and to the balance).
    for k, (cid, o) in enumerate(orders(lambda o: o.status == "delivered" and in_window(o) and returnable(o), 5)):
        pm = original(o) if k % 2 == 0 else balance_id(cid)
        add(cid, f"退掉订单 {o.order_id} 的{o.items[0].name}，退到 {pm}", [{"name": "return_delivered_order_items", "kwargs": {
            "order_id": o.order_id, "item_ids": [o.items[0].item_id], "payment_method_id": pm}}], correction=k == 2)
    # Rejections: past the window, and a product excluded from no-reason returns.
    for cid, o in orders(lambda o: o.status == "delivered" and not in_window(o) and returnable(o), 2):
        add(cid, f"想退掉订单 {o.order_id} 的{o.items[0].name}（超过 7 天，应被拒绝）", [{"name": "return_delivered_order_items", "kwargs": {
            "order_id": o.order_id, "item_ids": [o.items[0].item_id], "payment_method_id": original(o)}}])
    for cid, o in orders(lambda o: o.status == "delivered" and in_window(o) and not returnable(o), 2):
        bad = next(it for it in o.items if not store._product_doc(it.product_id).get("returnable_7day", True))  # noqa: SLF001
        add(cid, f"想退掉订单 {o.order_id} 的{bad.name}（不支持无理由退货，应被拒绝）", [{"name": "return_delivered_order_items", "kwargs": {
            "order_id": o.order_id, "item_ids": [bad.item_id], "payment_method_id": original(o)}}])

    # Exchanges within the window.
    for cid, o in orders(lambda o: o.status == "delivered" and in_window(o) and returnable(o) and any(other_variant(it) for it in o.items), 4):
        it = next(it for it in o.items if other_variant(it))
        v = other_variant(it)
        add(cid, f"把订单 {o.order_id} 的{it.name}换成{'、'.join(v.options.values())}", [{"name": "exchange_delivered_order_items", "kwargs": {
            "order_id": o.order_id, "item_ids": [it.item_id], "new_item_ids": [v.item_id], "payment_method_id": original(o)}}])

    # Two tasks in one conversation: cancel one order, return from another.
    for cid in customers:
        if cid in used:
            continue
        os_ = store.list_orders(cid)
        pend = [o for o in os_ if o.status == "pending" and o.payments]
        deliv = [o for o in os_ if o.status == "delivered" and in_window(o) and returnable(o)]
        if pend and deliv:
            used.add(cid)
            add(cid, f"取消 {pend[0].order_id}，再退掉 {deliv[0].order_id} 的{deliv[0].items[0].name}", [
                {"name": "cancel_pending_order", "kwargs": {"order_id": pend[0].order_id, "reason": "ordered by mistake"}},
                {"name": "return_delivered_order_items", "kwargs": {"order_id": deliv[0].order_id, "item_ids": [deliv[0].items[0].item_id], "payment_method_id": original(deliv[0])}},
            ])
            if sum(len(t["actions"]) > 1 for t in tasks) >= 2:
                break

    # Order status: nothing changes.
    for cid, o in orders(lambda o: o.status == "processed", 2):
        add(cid, f"问订单 {o.order_id} 到哪了", [], ask=f"我的订单 {o.order_id} 到哪了？")

    OUT.write_text(json.dumps(tasks, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {len(tasks)} tasks to {OUT}")


if __name__ == "__main__":
    main()
