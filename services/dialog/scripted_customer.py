"""The scripted customer of ``kefu eval conversations``: it knows its goal only from a
task's write actions and the store's data, and says it in Chinese or English.

It states what it wants, answers what ``DialogState.requested_slot`` asks, describes its
order by the products in it (withholding the order number when told to), says yes only
to a pending operation that matches its goal exactly and no otherwise; ``correction``
names another order first and corrects itself; ``style`` "loose" words things less the
way the store names them.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from typing import Any

from services.erp.port import Order, OrderItem, StorePort


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
