"""``kefu eval conversations``: task-completing dialog measured end to end.

For each task (τ-bench's format: ``user_id``, ``instruction``, ``actions``) a scripted
customer talks to the running kefu in a fresh session, the store reset to the imported
data before each task. The customer knows its goal only from the task's write actions
and the store's data: it states what it wants, answers what ``DialogState.requested_slot``
asks, describes its order by the products in it (and withholds the order number in at
least half of the tasks, seeded), says yes only to a pending operation that matches its
goal exactly, and no otherwise. A task passes when kefu's exported store equals the
expected one: the initial data with the task's write actions applied by the ERP layer
itself. Every reply is also checked for account facts (order ids, statuses, amounts,
tracking numbers) that differ from the store.

    kefu eval conversations --tasks tasks_dev.json --data DIR [--limit N] [--json]
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from services.erp.port import OPERATIONS, Order, OrderItem, StorePort

WRITE_OPERATIONS = set(OPERATIONS)
MAX_TURNS = 30


# ----------------------------------------------------------------------------- the customer


def _value_phrase(key: str, value: str) -> str:
    if value == "yes":
        return key
    if value in ("no", "none"):
        return f"not {key}" if key in ("waterproof",) else f"no {key}"
    if value == "not resistant":
        return "not resistant to water"
    return f"{key} {value}"


@dataclass
class Goal:
    operation: str
    args: dict[str, Any]
    done: bool = False
    refused: int = 0


_TEXTS = {
    "hello": {"en": ["Hi!", "Hello.", "Hi there,"], "zh": ["你好！", "您好，", "在吗？"]},
    "cancel": {"en": "I'd like to cancel an order.", "zh": "我想取消一个订单。"},
    "order_address": {"en": "I need to change the shipping address of one of my orders.", "zh": "我想改一下订单的收货地址。"},
    "payment": {"en": "I'd like to change the payment method of an order.", "zh": "我想换一下订单的支付方式。"},
    "user_address": {"en": "I'd like to update my default address on my account.", "zh": "我想修改账户的默认地址。"},
    "return_some": {"en": "I want to return some items.", "zh": "我想退货。"},
    "order_number": {"en": " The order number is {order_id}.", "zh": "订单号是 {order_id}。"},
    "its_order": {"en": "It's order {order_id}.", "zh": "订单号是 {order_id}。"},
    "order_with": {"en": "It's the order with the {names}.", "zh": "就是买了{names}的那一单。"},
    "and_names": {"en": " and the ", "zh": "和"},
    "email": {"en": "My email is {email}.", "zh": "我的邮箱是 {email}。"},
    "name_zip": {"en": "My name is {first} {last} and my zip code is {zip}.", "zh": "我叫{last}{first}，邮编 {zip}。"},
    "phone": {"en": "My phone number is {phone}.", "zh": "我的手机号是 {phone}。"},
    "yes": {"en": "Yes, please go ahead.", "zh": "是的，确认办理。"},
    "no": {"en": "No, that's not right.", "zh": "不对，不是这样。"},
    "give_up": {"en": "No. Never mind.", "zh": "算了，不用了。"},
    "never_mind": {"en": "Never mind.", "zh": "算了。"},
    "dont_know": {"en": "I don't know.", "zh": "我不记得了。"},
    "all_done": {"en": "No, that's all. Thank you!", "zh": "没有了，谢谢！"},
    "ok_all": {"en": "OK, that's all. Thanks.", "zh": "好的，就这些，谢谢。"},
    "no_longer": {"en": "I no longer need it.", "zh": "不需要了。"},
    "mistake": {"en": "I ordered it by mistake.", "zh": "拍错了，下错单了。"},
    "other_order": {"en": "No, not that one, it's the other order.", "zh": "不是这个，是另一单。"},
}


def _t(key: str, language: str, **values: Any) -> str:
    text = _TEXTS[key]
    return text[language].format(**values) if isinstance(text[language], str) else text[language]


@dataclass
class ScriptedCustomer:
    """A customer who knows what it wants from the task's actions and the store's data."""

    user_id: str
    goals: list[Goal]
    store: StorePort
    rng: random.Random
    withhold_order_id: bool
    identity_by: str  # email | name_zip | phone
    language: str = "en"
    # Names another of its orders first, and corrects itself when asked to confirm.
    correction: bool = False
    said_identity: list[str] = field(default_factory=list)
    asked_order: int = 0
    corrected: bool = False
    finished: bool = False
    # How this customer words things (seeded): "plain" names products and options as the
    # store does; "loose" uses lower case, the last word of a name ("the keyboard"),
    # option values without their names, and other words for yes, reasons and payments.
    style: str = "plain"

    # -- what it knows ---------------------------------------------------------------
    def _customer(self):
        c = self.store.get_customer(self.user_id)
        assert c is not None, f"task customer {self.user_id} is not in the store"
        return c

    def _goal(self) -> Goal | None:
        return next((g for g in self.goals if not g.done), None)

    def _order(self, goal: Goal) -> Order | None:
        oid = goal.args.get("order_id")
        return self.store.get_order(oid) if oid else None

    def _items(self, order: Order, ids: list[str]) -> list[OrderItem]:
        out, used = [], set()
        for item_id in ids:
            for n, it in enumerate(order.items):
                if it.item_id == item_id and n not in used:
                    used.add(n)
                    out.append(it)
                    break
        return out

    def _name(self, item: OrderItem) -> str:
        if self.language == "en" and self.style == "loose":
            return self.rng.choice([item.name.lower(), item.name.split()[-1].lower(), item.name])
        if self.language == "zh":
            product = self.store.get_product(item.product_id)
            aliases = [a for a in (product.aliases if product else []) if any("\u4e00" <= ch <= "\u9fff" for ch in a)]
            return self.rng.choice([item.name] + aliases[:1]) if aliases else item.name
        return item.name

    def _item_phrase(self, order: Order, item: OrderItem) -> str:
        twins = [it for it in order.items if it.name == item.name and it.item_id != item.item_id]
        name = self._name(item)
        if not twins:
            return name if self.language == "zh" else f"the {name}"
        differing = [v for k, v in item.options.items() if any(t.options.get(k) != v for t in twins)]
        if self.language == "zh":
            return f"{'、'.join(differing)}的{name}"
        return f"the {' '.join(differing)} {name}"

    def _new_phrase(self, item: OrderItem, new_id: str) -> str:
        product = self.store.get_product(item.product_id)
        variant = next((v for v in product.variants if v.item_id == new_id), None) if product else None
        if variant is None:
            return f"item {new_id}"
        diff = [(k, v) for k, v in variant.options.items() if str(item.options.get(k)) != str(v)]
        if self.language == "zh":
            return "一样的" if not diff else "、".join(str(v) for _, v in diff) + "的"
        if not diff:
            return "the same one"
        if self.style == "loose":
            # Values alone where they are unambiguous for this product ("red, size L").
            options = {}
            for var in product.variants:
                for k, v in var.options.items():
                    options.setdefault(str(v).lower(), set()).add(k)
            return ", ".join(str(v) if len(options.get(str(v).lower(), ())) == 1 and v not in ("yes", "no", "none") else _value_phrase(k, str(v)) for k, v in diff)
        return ", ".join(_value_phrase(k, str(v)) for k, v in diff)

    def _change_phrase(self, order: Order, item: OrderItem, new_id: str, verb: str = "") -> str:
        if self.language == "zh":
            return f"{self._item_phrase(order, item)}换成{self._new_phrase(item, new_id)}"
        return f"{self._item_phrase(order, item)} for one with {self._new_phrase(item, new_id)}"

    def _order_phrase(self, goal: Goal, order: Order | None = None) -> str:
        order = order or self._order(goal)
        if order is None:
            return ""
        if not self.withhold_order_id or self.asked_order > 2:
            return _t("its_order", self.language, order_id=order.order_id)
        ids = goal.args.get("item_ids") if order.order_id == goal.args.get("order_id") else None
        ids = ids or [it.item_id for it in order.items]
        names = sorted({self._name(it) for it in self._items(order, ids)})
        return _t("order_with", self.language, names=_t("and_names", self.language).join(names))

    def _payment_phrase(self, goal: Goal) -> str:
        pm_id = goal.args.get("payment_method_id", "")
        customer = self._customer()
        pm = next((m for m in customer.payment_methods if m.id == pm_id), None)
        zh = self.language == "zh"
        if pm is None:
            return f"Use {pm_id}."
        order = self._order(goal)
        if goal.operation == "return_delivered_order_items" and order and order.payments and order.payments[0].payment_method_id == pm_id and self.rng.random() < 0.5:
            return "原路退回吧。" if zh else "To the original payment method, please."
        if pm.source == "gift_card":
            cards = [m for m in customer.payment_methods if m.source == "gift_card"]
            if zh:
                return "用余额。"
            return "My gift card, please." if len(cards) == 1 else f"The gift card {pm.id}, please."
        if pm.source == "paypal":
            return "PayPal, please."
        if pm.source == "alipay":
            return "支付宝。" if zh else "Alipay, please."
        if pm.source == "wechat_pay":
            return "微信支付。" if zh else "WeChat Pay, please."
        if zh:
            return f"尾号 {pm.last_four} 的{'银联卡' if pm.brand == 'unionpay' else '信用卡'}。"
        return f"My {pm.brand} credit card ending in {pm.last_four}."

    def _address_phrase(self, goal: Goal) -> str:
        a = goal.args
        if self.language == "zh":
            return f"新地址是{a['city']}{a['state']}{a['address1']}{a['address2']}。"
        parts = [a["address1"]] + ([a["address2"]] if a.get("address2") else []) + [a["city"], f"{a['state']} {a['zip']}", a["country"]]
        return "The new address is " + ", ".join(parts) + "."

    def _identity_phrase(self, failed: bool) -> str:
        c = self._customer()
        ways = ["phone", "email"] if self.language == "zh" else ["email", "name_zip"]
        by = self.identity_by if not failed else next(w for w in ways if w != self.identity_by)
        return _t(by, self.language, email=c.email, phone=c.phone, first=c.first_name, last=c.last_name, zip=c.address.zip)

    def _goal_phrase(self, goal: Goal) -> str:
        op, lang = goal.operation, self.language
        order = self._order(goal)
        if op == "cancel_pending_order":
            text = _t("cancel", lang)
        elif op == "modify_pending_order_address":
            text = _t("order_address", lang)
        elif op == "modify_pending_order_payment":
            text = _t("payment", lang)
        elif op == "modify_user_address":
            return _t("user_address", lang)
        elif op == "return_delivered_order_items":
            if order is None:
                text = _t("return_some", lang)
            else:
                items = self._items(order, goal.args["item_ids"])
                joined = _t("and_names", lang).join(self._item_phrase(order, it) for it in items)
                text = f"我想退掉{joined}。" if lang == "zh" else f"I want to return {joined}."
        else:
            items = self._items(order, goal.args["item_ids"]) if order else []
            pairs = [self._change_phrase(order, it, new) for it, new in zip(items, goal.args["new_item_ids"], strict=False)]
            if lang == "zh":
                text = "我想把" + "，还有".join(pairs) + "。"
            else:
                verb = "exchange" if op == "exchange_delivered_order_items" else "change"
                text = f"I want to {verb} " + " and ".join(pairs) + "."
        if order is not None and not self.withhold_order_id:
            text += _t("order_number", lang, order_id=order.order_id)
        return text

    # -- talking ---------------------------------------------------------------------
    def opening(self, ask: str = "") -> str:
        """The first message: the goal, or the task's own question (``ask``) when it has no
        change to make (an order-status question)."""
        goal = self._goal()
        hello = self.rng.choice(_t("hello", self.language))
        text = f"{hello} {self._goal_phrase(goal)}" if goal else f"{hello} {ask}".strip()
        if self.rng.random() < 0.3:
            text += " " + self._identity_phrase(False)
            self.said_identity.append(self.identity_by)
        return text

    def _decoy(self, goal: Goal) -> Order | None:
        """Another order of the customer's, named by mistake first (``correction``)."""
        right = goal.args.get("order_id")
        others = [o for o in self.store.list_orders(self.user_id) if o.order_id != right]
        return others[0] if others else None

    def answer(self, state: dict[str, Any], reply: str) -> str | None:
        """The next message, or None when the customer is done."""
        slot = state.get("requested_slot", "")
        goal = self._goal()
        lang = self.language
        if slot in ("identity", "email", "name_zip", "phone"):
            failed = bool(self.said_identity)
            self.said_identity.append("x")
            if len(self.said_identity) > 3:
                return None
            return self._identity_phrase(failed)
        if goal is None:
            if self.finished:
                return None
            self.finished = True
            return _t("all_done", lang)
        loose = self.style == "loose" and lang == "en"
        if slot == "confirmation":
            pending = state.get("pending") or {}
            if self._matches(goal, pending):
                goal.done = True
                return self.rng.choice(["Yes.", "yep, do it", "Sure, go ahead.", "Correct, please proceed."]) if loose else _t("yes", lang)
            goal.refused += 1
            if goal.refused > 2:
                goal.done = True  # give up on this goal
                return _t("give_up", lang)
            if self.correction and not self.corrected:
                self.corrected = True
                self.asked_order = 3  # from now on by number
                return _t("other_order", lang) + " " + self._order_phrase(goal)
            self.asked_order = 3  # be explicit from now on
            return _t("no", lang)
        if slot == "order_id":
            self.asked_order += 1
            if self.asked_order > 4:
                goal.done = True
                return _t("never_mind", lang)
            if self.correction and not self.corrected and self.asked_order == 1 and (decoy := self._decoy(goal)):
                return _t("its_order", lang, order_id=decoy.order_id)
            return self._order_phrase(goal) or _t("dont_know", lang)
        if slot == "items":
            order = self._order(goal)
            items = self._items(order, goal.args.get("item_ids", [])) if order else []
            if goal.operation in ("exchange_delivered_order_items", "modify_pending_order_items"):
                pairs = [self._change_phrase(order, it, new) for it, new in zip(items, goal.args["new_item_ids"], strict=False)]
                return ("把" + "，还有".join(pairs) + "。") if lang == "zh" else " and ".join(pairs) + "."
            joined = _t("and_names", lang).join(self._item_phrase(order, it) for it in items)
            return f"就退{joined}。" if lang == "zh" else f"Just {joined}."
        if slot == "new_items":
            order = self._order(goal)
            items = self._items(order, goal.args.get("item_ids", [])) if order else []
            if lang == "zh":
                return "，".join(f"{self._item_phrase(order, it)}要{self._new_phrase(it, new)}" for it, new in zip(items, goal.args.get("new_item_ids", []), strict=False)) + "。"
            return " and ".join(f"{self._item_phrase(order, it)} should be {self._new_phrase(it, new)}" for it, new in zip(items, goal.args.get("new_item_ids", []), strict=False)) + "."
        if slot == "payment_method":
            return self._payment_phrase(goal)
        if slot == "reason":
            if loose:
                return self.rng.choice(["I don't need it anymore.", "changed my mind, don't need it"]) if goal.args.get("reason") == "no longer needed" else self.rng.choice(["I bought it by accident.", "it was a mistake"])
            return _t("no_longer", lang) if goal.args.get("reason") == "no longer needed" else _t("mistake", lang)
        if slot == "address":
            return self._address_phrase(goal)
        # Nothing asked: (the next) goal.
        goal.refused += 1
        if goal.refused > 3:
            goal.done = True
            nxt = self._goal()
            return self._goal_phrase(nxt) if nxt else _t("ok_all", lang)
        return self._goal_phrase(goal)

    def _matches(self, goal: Goal, pending: dict[str, Any]) -> bool:
        if pending.get("operation") != goal.operation:
            return False
        args = {k: json.loads(v) if isinstance(v, str) else v for k, v in (pending.get("args") or {}).items()}
        want = goal.args
        if set(args) != set(want):
            return False
        if "new_item_ids" in want:
            pairs = sorted(zip(want["item_ids"], want["new_item_ids"], strict=False))
            got = sorted(zip(args.get("item_ids", []), args.get("new_item_ids", []), strict=False))
            if pairs != got:
                return False
        elif "item_ids" in want and sorted(want["item_ids"]) != sorted(args.get("item_ids", [])):
            return False
        return all(args.get(k) == v for k, v in want.items() if k not in ("item_ids", "new_item_ids"))


# ----------------------------------------------------------------------------- fact checking

_ORDER = re.compile(r"#W\d{7}|KF\d{13}")
_MONEY = re.compile(r"[$¥]([\d,]+\.\d{2})")
_TRACKING = re.compile(r"(?<![A-Za-z\d])[A-Z]{0,4}\d{12}(?!\d)")
_ZH_STATUS = re.compile(r"当前状态为「([^」]+)」")
STATUSES = ("pending (item modified)", "return requested", "exchange requested", "pending", "processed", "delivered", "cancelled")


def fact_errors(reply: str, store: StorePort, customer_id: str, pending_args: dict[str, Any]) -> list[str]:
    from services.dialog.flows.replies import status_name

    """Account facts in ``reply`` that differ from the store: order ids that are not the
    customer's, a status next to an order id that is not its status, amounts and tracking
    numbers found nowhere in the customer's orders."""
    errors = []
    customer = store.get_customer(customer_id) if customer_id else None
    orders = store.list_orders(customer_id) if customer else []
    own = {o.order_id: o for o in orders}
    for sentence in re.split(r"(?<=[.!?\n])\s+|(?<=[。！？])", reply):
        for oid in _ORDER.findall(sentence):
            if oid not in own:
                errors.append(f"order {oid} is not the customer's")
                continue
            said = next((s for s in STATUSES if re.search(rf"\b(is|now|status)\W+{re.escape(s)}(?!\w)", sentence.replace('"', ""))), None)
            if said and said != own[oid].status and not sentence.lstrip().startswith("- "):
                errors.append(f"order {oid} said to be {said!r}, store has {own[oid].status!r}")
            zh = _ZH_STATUS.search(sentence)
            if zh and zh.group(1) != status_name(own[oid].status, "zh"):
                errors.append(f"order {oid} said to be {zh.group(1)!r}, store has {own[oid].status!r}")
    amounts: set[float] = set()
    for o in orders:
        amounts |= {round(it.price, 2) for it in o.items} | {round(p.amount, 2) for p in o.payments}
        amounts.add(round(sum(p.amount for p in o.payments if p.transaction_type == "payment"), 2))
        for it in o.items:
            product = store.get_product(it.product_id)
            amounts |= {round(v.price, 2) for v in product.variants} if product else set()
    if customer:
        amounts |= {round(m.balance, 2) for m in customer.payment_methods if m.balance is not None}
    if pending_args.get("order_id") in own:
        order = own[pending_args["order_id"]]
        chosen = [next((it for it in order.items if it.item_id == i), None) for i in pending_args.get("item_ids", [])]
        amounts.add(round(sum(it.price for it in chosen if it), 2))
        if pending_args.get("new_item_ids"):
            result = store.check("exchange_delivered_order_items" if order.status == "delivered" else "modify_pending_order_items", pending_args)
            amounts.add(round(abs(result.price_difference), 2))
    for raw in _MONEY.findall(reply):
        value = round(float(raw.replace(",", "")), 2)
        if value not in amounts:
            errors.append(f"amount ${raw} not in the store")
    tracking = {t for o in orders for f in o.fulfillments for t in f.tracking_ids}
    for t in _TRACKING.findall(reply):
        if t not in tracking:
            errors.append(f"tracking number {t} not in the customer's orders")
    return errors


# ----------------------------------------------------------------------------- running


@dataclass
class TurnResultView:
    reply: str
    state: dict[str, Any]
    actions: list[dict[str, Any]]


class GrpcDialog:
    """The running kefu's Dialog service."""

    def __init__(self, target: str) -> None:
        from services.chat import ChatClient

        self._client = ChatClient(target, timeout_s=120)

    def send(self, text: str, session_id: str) -> tuple[str, TurnResultView]:
        from services.chat import turn_json

        result = self._client.send(text, session_id)
        data = turn_json(result)
        return result.session_id, TurnResultView(data["reply"], data["state"], data["actions"])

    def close(self) -> None:
        self._client.close()


class DirectDialog:
    """Dialog's flow engine in this process, on the store file itself: no NLU, no
    workflows, no knowledge answers. For developing flows quickly; the benchmark is
    the gRPC run."""

    def __init__(self, store_path: Path, language: str = "en") -> None:
        from services.dialog.flows.spec import flows_for
        from services.dialog.flows.state import FlowState
        from services.erp import open_store_at

        self._store = open_store_at(store_path)
        self._language = language
        self._flows = flows_for(self._store.format)
        self._states: dict[str, FlowState] = {}
        self._new_state = FlowState

    def send(self, text: str, session_id: str) -> tuple[str, TurnResultView]:
        import uuid

        from services.dialog.flows.engine import FlowEngine
        from services.dialog.servicer import dialog_state
        from services.dialog.sessions import SessionRecord  # noqa: F401 - same record shapes as Dialog
        from google.protobuf.json_format import MessageToDict

        session_id = session_id or uuid.uuid4().hex
        st = self._states.setdefault(session_id, self._new_state())
        engine = FlowEngine(self._flows, self._store)
        reply = engine.step(text, st, self._language)
        actions: list[dict[str, Any]] = []
        if reply is None:
            text_out = "(answered from the knowledge)"
        elif reply.run:
            from workflows.store_ops.activities import receipt_of

            result = self._store.apply(reply.run["operation"], reply.run["args"], key=uuid.uuid4().hex)
            actions.append({"type": "ACTION_TYPE_OPERATION", "detail": {"operation": result.operation, "status": result.status}})
            text_out = engine.report(st, receipt_of(result), self._language)
        else:
            text_out = reply.text
        state = MessageToDict(dialog_state(st), preserving_proto_field_name=True, always_print_fields_with_no_presence=True)
        state.setdefault("pending", {"operation": "", "args": {}})
        return session_id, TurnResultView(text_out, state, actions)


@dataclass
class TaskOutcome:
    index: int
    user_id: str
    operations: list[str]
    passed: bool
    turns: int
    latencies: list[float]
    fact_errors: list[str]
    withheld: bool
    transcript: list[tuple[str, str]]
    diff: str = ""


def _expected(template: Path, actions: list[dict[str, Any]], workdir: Path) -> dict[str, Any]:
    from services.erp import open_store_at

    path = workdir / "expected.db"
    shutil.copyfile(template, path)
    store = open_store_at(path)
    for n, action in enumerate(actions):
        if action["name"] in WRITE_OPERATIONS:
            store.apply(action["name"], action["kwargs"], key=f"expected-{n}")
    return _export(path, workdir / "expected")


def _export(db: Path, out: Path) -> dict[str, Any]:
    from services.erp.tau_retail import export_tau_retail

    out.mkdir(parents=True, exist_ok=True)
    export_tau_retail(db, out, fmt=None)
    return {name: json.loads((out / f"{name}.json").read_text(encoding="utf-8")) for name in ("users", "orders", "products")}


def _first_difference(a: dict[str, Any], b: dict[str, Any]) -> str:
    for table in ("orders", "users", "products"):
        for key in sorted(set(a[table]) | set(b[table])):
            if a[table].get(key) != b[table].get(key):
                return f"{table}[{key}]"
    return ""


def run_tasks(
    tasks: list[dict[str, Any]], *, build_template: Callable[[Path], Any], store_path: Path,
    send: Callable[[str, str], tuple[str, TurnResultView]], seed: int = 0, language: str = "en", style: str = "plain",
    progress: Callable[[str], None] = lambda line: None,
) -> list[TaskOutcome]:
    """Run each task in a fresh session on a fresh copy of the store ``build_template``
    writes; the store kefu uses is ``store_path`` (replaced before each task)."""
    from services.erp import open_store_at

    outcomes = []
    with tempfile.TemporaryDirectory(prefix="kefu-conv-") as tmp:
        workdir = Path(tmp)
        template = workdir / "template.db"
        build_template(template)
        reference = open_store_at(template)
        for index, task in enumerate(tasks):
            rng = random.Random(f"{seed}-{index}")
            shutil.copyfile(template, workdir / "fresh.db")
            (workdir / "fresh.db").replace(store_path)  # atomic: kefu's next turn sees it
            goals = [Goal(a["name"], dict(a["kwargs"])) for a in task["actions"] if a["name"] in WRITE_OPERATIONS]
            customer = ScriptedCustomer(
                task["user_id"], goals, reference, rng, withhold_order_id=rng.random() < 0.6,
                identity_by=rng.choice(["email", "phone"]) if language == "zh" else rng.choice(["email", "name_zip"]),
                language=language, correction=bool(task.get("correction")), style=style if style != "mixed" else rng.choice(["plain", "loose"]),
            )
            session, transcript, latencies, errors = "", [], [], []
            live = open_store_at(store_path)
            message: str | None = customer.opening(task.get("ask", ""))
            turns = 0
            while message is not None and turns < MAX_TURNS:
                t0 = time.perf_counter()
                session, view = send(message, session)
                latencies.append(time.perf_counter() - t0)
                turns += 1
                transcript.append((message, view.reply))
                pending = {k: json.loads(v) for k, v in (view.state.get("pending") or {}).get("args", {}).items()}
                errors += fact_errors(view.reply, live, view.state.get("customer_id", ""), pending)
                message = customer.answer(view.state, view.reply)
            got = _export(store_path, workdir / "got")
            want = _expected(template, task["actions"], workdir)
            outcome = TaskOutcome(
                index, task["user_id"], [g.operation for g in goals], got == want, turns, latencies, errors,
                customer.withhold_order_id, transcript, "" if got == want else _first_difference(got, want),
            )
            outcomes.append(outcome)
            progress(f"task {index}: {'pass' if outcome.passed else 'FAIL'} in {turns} turns {outcome.diff}")
    return outcomes


def summarize(outcomes: list[TaskOutcome]) -> dict[str, Any]:
    per_op: dict[str, list[bool]] = defaultdict(list)
    for o in outcomes:
        for op in set(o.operations):
            per_op[op].append(o.passed)
    latencies = sorted(x for o in outcomes for x in o.latencies)

    def pct(p: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000, 1) if latencies else 0.0

    return {
        "tasks": len(outcomes),
        "pass_rate": round(sum(o.passed for o in outcomes) / max(1, len(outcomes)), 4),
        "pass_rate_withheld_order_id": round(sum(o.passed for o in outcomes if o.withheld) / max(1, sum(o.withheld for o in outcomes)), 4),
        "withheld_order_id": sum(o.withheld for o in outcomes),
        "per_operation": {op: {"tasks": len(v), "pass_rate": round(sum(v) / len(v), 4)} for op, v in sorted(per_op.items())},
        "turns_per_task": round(statistics.mean(o.turns for o in outcomes), 2) if outcomes else 0.0,
        "turn_latency_ms": {"p50": round(statistics.median(latencies) * 1000, 1) if latencies else 0.0, "p99": pct(0.99)},
        "fact_errors": sum(len(o.fact_errors) for o in outcomes),
        "failed": [{"task": o.index, "user_id": o.user_id, "first_difference": o.diff} for o in outcomes if not o.passed],
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tasks", required=True, help="τ-bench task file (tasks_train.json, tasks_dev.json)")
    parser.add_argument("--data", help="the store data the tasks run on (users/orders/products.json); default: data/ beside --tasks")
    parser.add_argument(
        "--store", choices=("tau-retail", "demo"), default="tau-retail",
        help="tau-retail: the tasks run on --data (English); demo: on the demo store, in Chinese (bench/demo_tasks_zh.json)",
    )
    parser.add_argument("--limit", type=int, default=0, help="run the first N tasks (after --sample)")
    parser.add_argument("--sample", type=int, default=0, help="a fixed random sample of N tasks (seeded by --seed)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sample and of the scripted customers")
    parser.add_argument("--target", help="Dialog address host:port (default from the configuration)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--transcripts", help="write every conversation to this JSONL file")
    parser.add_argument(
        "--style", choices=("plain", "loose", "mixed"), default="plain",
        help="how the scripted customer words things: plain (the store's names), loose (lower case, short names, "
        "values without option names, other words for yes), mixed (each task one of the two, seeded)",
    )
    parser.add_argument(
        "--direct", action="store_true",
        help="run Dialog's flow engine in this process on a scratch store (no services needed; for developing flows)",
    )


def run(args: argparse.Namespace) -> int:
    from services.config import load_config

    cfg = load_config(getattr(args, "config", None))
    tasks_file = Path(args.tasks)
    try:
        tasks = json.loads(tasks_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        print(f"kefu eval conversations: cannot read {tasks_file}: {exc}", file=sys.stderr)
        return 1
    indices = list(range(len(tasks)))
    if args.sample:
        indices = sorted(random.Random(args.seed).sample(indices, min(args.sample, len(indices))))
    if args.limit:
        indices = indices[: args.limit]
    data_dir = Path(args.data) if args.data else tasks_file.parent / "data"
    language = "zh" if args.store == "demo" else "en"

    def build_template(target: Path) -> None:
        if args.store == "demo":
            from services.demo.store import DemoStore
            from services.erp.demo_store import build_demo_store

            DemoStore.seed(target.parent / "demo-erp.db")
            build_demo_store(target.parent / "demo-erp.db", target)
        else:
            from services.erp.tau_retail import import_tau_retail

            import_tau_retail(data_dir, target)

    store_path = cfg.erp_path
    scratch = None
    if args.direct:
        scratch = tempfile.TemporaryDirectory(prefix="kefu-direct-")
        store_path = Path(scratch.name) / "erp.db"
        build_template(store_path)
        dialog: Any = DirectDialog(store_path, language)
    else:
        dialog = GrpcDialog(args.target or cfg.target("dialog"))
    try:
        outcomes = run_tasks(
            [tasks[i] for i in indices], build_template=build_template, store_path=store_path, send=dialog.send,
            seed=args.seed, language=language, style=args.style, progress=lambda line: print(line, file=sys.stderr, flush=True),
        )
    finally:
        if not args.direct:
            dialog.close()
        if scratch is not None:
            scratch.cleanup()
    for o, i in zip(outcomes, indices, strict=True):
        o.index = i
    summary = summarize(outcomes)
    if args.transcripts:
        with open(args.transcripts, "w", encoding="utf-8") as fh:
            for o in outcomes:
                fh.write(json.dumps({"task": o.index, "passed": o.passed, "diff": o.diff, "fact_errors": o.fact_errors, "turns": o.transcript}, ensure_ascii=False) + "\n")
    if args.json:
        print(json.dumps(summary, ensure_ascii=False, indent=2))
    else:
        print(f"tasks {summary['tasks']}: pass rate {summary['pass_rate']:.1%} "
              f"(order id withheld in {summary['withheld_order_id']}: {summary['pass_rate_withheld_order_id']:.1%}), "
              f"{summary['turns_per_task']} turns per task, turn p50 {summary['turn_latency_ms']['p50']} ms "
              f"p99 {summary['turn_latency_ms']['p99']} ms, fact errors {summary['fact_errors']}")
        for op, row in summary["per_operation"].items():
            print(f"  {op:<34} {row['tasks']:>4} tasks  {row['pass_rate']:.1%}")
    return 0
