"""The flow engine: one turn of a task conversation against the ERP port.

collect slots → look up → validate against the store's policy (``StorePort.check``)
→ list the details and ask for an explicit yes → the operation runs (Dialog starts it
as a Temporal workflow) → the result is reported from the store's answer.

Everything the customer is told about their account comes from the store, through the
templates in ``replies.py``; nothing is generated. Synchronous and free of I/O other
than the store, so Dialog runs it in a thread.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from services.dialog.flows import understanding as u
from services.dialog.flows.replies import rejection, say, status_name
from services.dialog.flows.replies import money as _money
from services.dialog.flows.spec import FlowSpec
from services.dialog.flows.state import FlowState
from services.dialog.questions import asks_anything
from services.erp.port import Customer, Order, OrderItem, StorePort
from workflows.returns.notices import progress

_ALL_ITEMS = re.compile(r"\b(all|every|everything|whole order|entire order|both)\b|全部|都退|所有", re.I)
_ANOTHER = re.compile(r"\b(other|another|different|wrong) order\b|另一单|另外一单|不是这个|不是这单|别的订单", re.I)
# A question about the rules ("what is your return policy?", 「退货政策是什么」) is for
# the knowledge, not the start of a task.
_POLICY_QUESTION = re.compile(
    r"\b(policy|policies|rules?)\b|\bhow (long|many days)\b|政策|规定|多久|几天内"
    # "Can I change my delivery address?" asks what is possible: the knowledge answers,
    # and "please change it" then starts the task. "Can you ..." asks for the task itself.
    r"|^\W*(can|could|may) i\b|\bis it possible\b|\bam i allowed\b|\bhow (many times|often)\b|能不能|可不可以|可以.{0,16}吗|能.{0,16}吗|几次",
    re.I,
)
_DONE = re.compile(r"\b(that'?s all|that is all|nothing else|no,? thanks|no thank you|that'?s it|all set|bye)\b|没有了|没别的|就这些", re.I)


@dataclass
class FlowReply:
    text: str
    # An operation to run now (the customer said yes): {"operation": ..., "args": {...}}.
    run: dict[str, Any] = field(default_factory=dict)


class FlowEngine:
    def __init__(self, flows: list[FlowSpec], store: StorePort, after_sales: Callable[[str], Any] | None = None) -> None:
        # The return saga's state of an order (workflows/returns ReturnState) or None:
        # order and refund status replies say where a return or refund stands from it.
        self._after_sales = after_sales
        self._currency = getattr(store, "currency", "USD")
        self._flows = {f.name: f for f in flows}
        self._order = flows
        self._store = store

    @property
    def store_format(self) -> str:
        return getattr(self._store, "format", "")

    # ------------------------------------------------------------------ entry points

    def step(self, text: str, st: FlowState, language: str) -> FlowReply | None:
        """Handle one customer message; None when it is not about a task (Dialog then
        answers it from the knowledge)."""
        lang = "zh" if language == "zh" else "en"
        notes: list[str] = []
        newly_identified = False

        # Identity: any time it is not known yet; one customer per conversation.
        found = self._identify(text)
        if found and st.customer_id and found != st.customer_id:
            return FlowReply(say("one_customer", lang))
        if found and not st.customer_id:
            st.customer_id = found
            newly_identified = True
        elif not st.customer_id and st.requested_slot in ("identity", "email", "name_zip", "phone") and (
            u.emails(text) or u.zip_codes(text) or u.phones(text)
        ):
            st.requested_slot = "identity"
            spec = self._flows.get(st.flow) or self._order[0]
            return FlowReply(say("identity_not_found_phone" if "phone" in spec.identity else "identity_not_found", lang))

        detected = self._detect(text)
        if st.pending:
            answer = u.yes_or_no(text)
            if answer == "yes":
                return FlowReply(say("running", lang), run=dict(st.pending))
            spec = self._flows.get(st.flow)
            changed = spec is not None and self._fill(text, st, spec, notes, lang)
            if answer == "no" and not changed:
                st.pending = {}
                st.order_id, st.item_ids, st.new_item_ids, st.requests = "", [], [], []
                st.payment_method_id, st.reason, st.address = "", "", {}
                st.requested_slot = "order_id"
                return FlowReply(say("not_confirmed", lang))
            if not changed:
                if detected and detected[0] != st.flow:
                    st.pending = {}
                    st.clear_task()
                    self._start(st, detected)
                else:
                    st.requested_slot = "confirmation"
                    return FlowReply(say("confirm_again", lang))
            st.pending = {}

        if not st.flow and detected and not st.pending and self._question_only(text):
            return None
        if not st.flow:
            if detected:
                self._start(st, detected)
            elif st.queue:
                self._start(st, [])
            elif newly_identified:
                st.requested_slot = ""
                c = self._store.get_customer(st.customer_id)
                return FlowReply(say("identified_how_help", lang, name=u.customer_name(c) if c else ""))
            elif st.customer_id and _DONE.search(text):
                st.requested_slot = ""
                return FlowReply(say("goodbye", lang))
            else:
                return None
        elif st.requested_slot in ("", "identity", "email", "name_zip", "order_id"):
            for name in detected:
                if name != st.flow and name not in st.queue:
                    st.queue.append(name)

        spec = self._flows[st.flow]
        if st.customer_id:
            for earlier in st.unread:
                self._fill(earlier, st, spec, notes, lang)
            st.unread = []
            changed = self._fill(text, st, spec, notes, lang)
            if (
                not changed and not notes and not found and set(detected) <= {st.flow} and spec.knowledge_first
                and self._asks_something(text)
            ):
                # A question in the middle of a task ("how long does a refund take?"): the
                # knowledge answers it, the task waits where it was (resume() says where).
                return None
        else:
            st.unread = (st.unread + [text])[-4:]
        return self._next(st, spec, lang, notes)

    @staticmethod
    def _asks_something(text: str) -> bool:
        return asks_anything(text)

    def asks_before_task(self, text: str, st: FlowState) -> bool:
        """A question about a task ("how do I return this?", 「能取消么」) with nothing of the
        customer's own in it (no order number, email or phone) and no task under way:
        worth answering from the knowledge first."""
        if st.flow or st.pending or st.queue or u.order_ids(text) or u.emails(text) or u.phones(text):
            return False
        detected = self._detect(text)
        return bool(detected) and self._flows[detected[0]].knowledge_first and self._asks_something(text)

    def offer(self, text: str, st: FlowState, language: str) -> str:
        """After a knowledge answer to a question about a task: the task, offered (its
        first question), with the question kept to be read once the customer is known."""
        detected = self._detect(text)
        if not detected or st.flow:
            return ""
        lang = "zh" if language == "zh" else "en"
        self._start(st, detected)
        st.unread = [text]
        spec = self._flows[st.flow]
        if not st.customer_id:
            st.requested_slot = "identity"
            return say("offer_task_phone" if "phone" in spec.identity else "offer_task", lang)
        return self._next(st, spec, lang, []).text

    def resume(self, st: FlowState, language: str) -> str:
        """After a question answered in the middle of a task: the task's next question again."""
        lang = "zh" if language == "zh" else "en"
        if not st.flow or st.flow not in self._flows:
            return ""
        if st.pending:
            return say("back_to_task", lang) + say("confirm_again", lang)
        return say("back_to_task", lang) + self._next(st, self._flows[st.flow], lang, []).text

    def engaged(self, text: str, st: FlowState) -> bool:
        """Whether this message belongs to a task: one is under way, or it asks for one."""
        return bool(st.flow or st.pending or st.queue) or (bool(self._detect(text)) and not self._question_only(text))

    @staticmethod
    def _question_only(text: str) -> bool:
        return bool(_POLICY_QUESTION.search(text)) and not u.order_ids(text)

    def report(self, st: FlowState, receipt: Any, language: str) -> str:
        """The reply after an operation ran, from the store's answer; the task is over
        and the next queued one (if any) is started."""
        lang = "zh" if language == "zh" else "en"
        op = st.pending.get("operation", receipt.operation)
        args = st.pending.get("args", {})
        if receipt.status == "done":
            text = self._done_text(op, args, receipt, lang)
        else:
            text = say("rejected", lang, reason=rejection(getattr(receipt, "code", ""), receipt.reason, lang))
        st.clear_task()
        if st.queue:
            self._start(st, [])
            nxt = self._next(st, self._flows[st.flow], lang, [])
            return text + "\n" + nxt.text
        st.requested_slot = ""
        return text + " " + say("anything_else", lang)

    # ------------------------------------------------------------------ pieces

    def _detect(self, text: str) -> list[str]:
        """The flows a message asks for, in the order it mentions them. Where the words
        that trigger two flows overlap ("修改账户的默认地址" is an order address change to
        one pattern and a default address to another), the flow declared first wins."""
        found: list[tuple[int, int, str]] = []
        for spec in self._order:  # declaration order
            for start, end in spec.spans(text):
                if not any(start < e and s < end and name != spec.name for s, e, name in found):
                    found.append((start, end, spec.name))
        out: list[str] = []
        for _, _, name in sorted(found):
            if name not in out:
                out.append(name)
        return out

    def _start(self, st: FlowState, detected: list[str]) -> None:
        names = detected or []
        if not names and st.queue:
            names = [st.queue.pop(0)]
        else:
            st.queue += [n for n in names[1:] if n not in st.queue]
        st.flow = names[0]
        st.requested_slot = ""

    def _identify(self, text: str) -> str:
        for phone in u.phones(text):
            if found := self._store.find_customer_by_phone(phone):
                return found
        for email in u.emails(text):
            if found := self._store.find_customer_by_email(email):
                return found
        zips = u.zip_codes(text)
        if zips:
            for first, last in u.name_candidates(text):
                for z in zips:
                    if found := self._store.find_customer_by_name_zip(first, last, z):
                        return found
        return ""

    def _customer(self, st: FlowState) -> Customer:
        c = self._store.get_customer(st.customer_id)
        assert c is not None, "an authenticated customer exists"
        return c

    def _orders(self, st: FlowState) -> list[Order]:
        return self._store.list_orders(st.customer_id)

    def _product_names(self, orders: list[Order]) -> list[str]:
        return sorted({it.name for o in orders for it in o.items})

    def _aliases(self, orders: list[Order]) -> dict[str, str]:
        """Other names of the products in these orders (their English names, short names)."""
        out: dict[str, str] = {}
        for o in orders:
            for it in o.items:
                if it.name in out.values():
                    continue
                p = self._store.get_product(it.product_id)
                for alias in ([p.name_en] + list(p.aliases) if p else []) + [it.name_en]:
                    if alias and alias != it.name:
                        out.setdefault(alias, it.name)
        return out

    def _options_of(self, orders: list[Order]) -> dict[str, dict[str, set[str]]]:
        out: dict[str, dict[str, set[str]]] = {}
        for o in orders:
            for it in o.items:
                if it.name not in out and (p := self._store.get_product(it.product_id)):
                    out[it.name] = u.product_options(p)
        return out

    def _fill(self, text: str, st: FlowState, spec: FlowSpec, notes: list[str], lang: str) -> bool:
        """Take every value the message carries for this flow; True if any changed."""
        if not st.customer_id:
            return False
        before = (st.order_id, list(st.item_ids), list(st.new_item_ids), st.payment_method_id, st.reason, dict(st.address), json.dumps(st.requests))
        customer = self._customer(st)
        if "order_id" in spec.slots:
            ids = u.order_ids(text)
            if ids:
                oid = ids[0]
                if oid not in customer.order_ids:
                    notes.append(say("order_not_yours", lang, order_id=oid))
                elif oid != st.order_id:
                    st.order_id, st.item_ids, st.new_item_ids = oid, [], []
            elif _ANOTHER.search(text) and st.order_id:
                st.order_id, st.item_ids, st.new_item_ids = "", [], []
        if {"items", "new_items", "order_id"} & set(spec.slots):
            orders = self._orders(st)
            names = self._product_names(orders)
            options_of = self._options_of(orders)
            reqs = u.item_requests(text, names, options_of, self._aliases(orders))
            if reqs:
                new_reqs = [{"product": r.product, "old": r.old, "new": r.new} for r in reqs]
                if st.requested_slot == "new_items" and st.item_ids:
                    self._merge_new(st, new_reqs)
                else:
                    st.requests = new_reqs
                    st.item_ids, st.new_item_ids = [], []
            elif st.requested_slot == "new_items" and st.item_ids and st.order_id:
                # Option words alone answer for the item still without a new variant.
                order = self._store.get_order(st.order_id)
                missing = self._missing_new(st, order) if order else []
                if missing:
                    item = missing[0]
                    product = self._store.get_product(item.product_id)
                    wanted = u._option_hits(text, u.product_options(product)) if product else {}
                    if wanted:
                        st.requests.append({"product": item.name, "old": dict(item.options), "new": wanted, "item_id": item.item_id})
            if st.requested_slot == "items" and _ALL_ITEMS.search(text) and st.order_id:
                order = self._store.get_order(st.order_id)
                if order:
                    st.item_ids = [it.item_id for it in order.items]
        if "payment_method" in spec.slots:
            original = ""
            if st.order_id and (order := self._store.get_order(st.order_id)) and order.payments:
                original = order.payments[0].payment_method_id
            pm = u.payment_method(text, customer.payment_methods, original)
            if pm:
                st.payment_method_id = pm.id
        if "reason" in spec.slots and (reason := u.cancel_reason(text)):
            st.reason = reason
        if "address" in spec.slots and (addr := u.address(text)):
            st.address = addr
        after = (st.order_id, list(st.item_ids), list(st.new_item_ids), st.payment_method_id, st.reason, dict(st.address), json.dumps(st.requests))
        return before != after

    def _merge_new(self, st: FlowState, reqs: list[dict[str, Any]]) -> None:
        for r in reqs:
            if not r["new"] and r["old"]:
                # Asked what they want instead, "the kettle in glass" names the new options.
                r["new"], r["old"] = r["old"], {}
            for old in st.requests:
                if old["product"] == r["product"] and r["new"]:
                    old["new"] = r["new"]
                    break
            else:
                st.requests.append(r)
        st.new_item_ids = []

    def _missing_new(self, st: FlowState, order: Order) -> list[OrderItem]:
        chosen = [self._item(order, i) for i in st.item_ids]
        return [it for k, it in enumerate(chosen) if it and k >= len(st.new_item_ids)]

    @staticmethod
    def _item(order: Order, item_id: str) -> OrderItem | None:
        for it in order.items:
            if it.item_id == item_id:
                return it
        return None

    # ------------------------------------------------------------------ next slot

    def _next(self, st: FlowState, spec: FlowSpec, lang: str, notes: list[str]) -> FlowReply:
        prefix = " ".join(notes)

        def ask(slot: str, name: str, **values: Any) -> FlowReply:
            st.requested_slot = slot
            return FlowReply((prefix + " " if prefix else "") + say(name, lang, **values))

        if not st.customer_id:
            return ask("identity", "ask_identity_phone" if "phone" in spec.identity else "ask_identity")
        customer = self._customer(st)
        order: Order | None = None
        if "order_id" in spec.slots:
            if not st.order_id:
                picked, reply = self._find_order(st, spec, lang)
                if reply is not None:
                    if prefix:
                        reply.text = prefix + " " + reply.text
                    return reply
                st.order_id = picked
            order = self._store.get_order(st.order_id)
            if order is None or order.customer_id != st.customer_id:
                st.order_id = ""
                return ask("order_id", "order_not_yours", order_id="")
            if spec.order_statuses and order.status not in spec.order_statuses:
                reply_text = say("wrong_status", lang, order_id=order.order_id, status=status_name(order.status, lang), flow=say(f"flow_{spec.name}", lang))
                st.clear_task()
                return FlowReply((prefix + " " if prefix else "") + reply_text + " " + say("anything_else", lang))
            st.operation = spec.operation_for(order.status)
            if spec.name in ("order_status", "refund_status"):
                text = self._status_text(order, lang)
                st.clear_task()
                if st.queue:
                    self._start(st, [])
                    return FlowReply(text + "\n" + self._next(st, self._flows[st.flow], lang, []).text)
                return FlowReply(text + " " + say("anything_else", lang))
        else:
            st.operation = spec.operation

        if "items" in spec.slots and order is not None and not st.item_ids:
            if st.requests:
                reqs = [u.ItemRequest(r["product"], r.get("old", {}), r.get("new", {})) for r in st.requests]
                matched = u.match_items(reqs, order.items)
                if matched:
                    st.item_ids = [it.item_id for it in matched]
            if not st.item_ids and len(order.items) == 1:
                st.item_ids = [order.items[0].item_id]
            if not st.item_ids:
                listing = "; ".join(f"{u.item_name(it, lang)} ({u.describe_options(it.options)})" for it in order.items)
                return ask("items", "ask_items", order_id=order.order_id, items=listing)

        if "new_items" in spec.slots and order is not None:
            st.new_item_ids = []
            for item_id in st.item_ids:
                item = self._item(order, item_id)
                if item is None:
                    break
                req = next((r for r in reversed(st.requests) if r.get("item_id") == item_id), None) or next(
                    (r for r in st.requests if r["product"] == item.name and r.get("new")), None
                )
                product = self._store.get_product(item.product_id)
                if not req or not req.get("new") or product is None:
                    return ask("new_items", "ask_new_item", item=u.item_name(item, lang), options=u.describe_options(item.options))
                variants = u.choose_variant(product, item, req["new"])
                if len(variants) != 1:
                    if not variants:
                        req["new"] = {}
                        return ask("new_items", "no_variant", item=u.item_name(item, lang), wanted=u.describe_options(req.get("new") or {}) or "that")
                    choices = "; ".join(u.describe_options(v.options) for v in variants[:4])
                    return ask("new_items", "several_variants", item=u.item_name(item, lang), choices=choices)
                st.new_item_ids.append(variants[0].item_id)

        if "payment_method" in spec.slots and not st.payment_method_id and order is not None and order.payments:
            # What the store refuses whatever the payment method (past the return window,
            # a product excluded from returns) is said now, before asking for one.
            trial = self._store.check(st.operation, {**self._args(st, spec), "payment_method_id": order.payments[0].payment_method_id})
            if not trial.done and trial.code not in ("payment_not_found", "payment_not_allowed", "insufficient_balance"):
                text = say("cannot", lang, reason=rejection(trial.code, trial.reason, lang))
                st.clear_task()
                return FlowReply((prefix + " " if prefix else "") + text + " " + say("anything_else", lang))

        if "payment_method" in spec.slots and not st.payment_method_id:
            methods = customer.payment_methods
            if st.operation == "return_delivered_order_items" and order is not None:
                original = order.payments[0].payment_method_id if order.payments else ""
                allowed = [m for m in methods if m.id == original or m.source == "gift_card"]
                listing = "; ".join(u.describe_payment(m, lang, self._currency) for m in allowed)
                return ask("payment_method", "ask_refund_method", methods=listing)
            if st.operation == "modify_pending_order_payment":
                listing = "; ".join(u.describe_payment(m, lang, self._currency) for m in methods)
                return ask("payment_method", "ask_new_payment", methods=listing)
            listing = "; ".join(u.describe_payment(m, lang, self._currency) for m in methods)
            return ask("payment_method", "ask_difference_payment", methods=listing)

        if "reason" in spec.slots and not st.reason:
            return ask("reason", "ask_reason")
        if "address" in spec.slots and not st.address:
            return ask("address", "ask_address")

        args = self._args(st, spec)
        result = self._store.check(st.operation, args)
        if not result.done:
            text = say("cannot", lang, reason=rejection(result.code, result.reason, lang))
            st.clear_task()
            return FlowReply((prefix + " " if prefix else "") + text + " " + say("anything_else", lang))
        st.pending = {"operation": st.operation, "args": args}
        st.requested_slot = "confirmation"
        return FlowReply((prefix + " " if prefix else "") + self._confirm_text(st.operation, args, order, customer, result, lang))

    def _find_order(self, st: FlowState, spec: FlowSpec, lang: str) -> tuple[str, FlowReply | None]:
        orders = self._orders(st)
        eligible = [o for o in orders if not spec.order_statuses or o.status in spec.order_statuses]
        if st.requests:
            products = [r["product"] for r in st.requests]

            def has(o: Order) -> bool:
                names = [it.name for it in o.items]
                return all(names.count(p) >= products.count(p) for p in products)

            def exact(o: Order) -> bool:
                reqs = [u.ItemRequest(r["product"], r.get("old", {}), r.get("new", {})) for r in st.requests]
                return u.match_items(reqs, o.items) is not None and all(
                    any(it.name == r.product and all(str(it.options.get(k)) == v for k, v in r.old.items()) for it in o.items) for r in reqs
                )

            fits = [o for o in eligible if has(o)]
            if len(fits) > 1:
                fits = [o for o in fits if exact(o)] or fits
            if len(fits) == 1:
                return fits[0].order_id, None
            if not fits:
                elsewhere = [o for o in orders if has(o)]
                if elsewhere and spec.order_statuses:
                    o = elsewhere[0]
                    text = say("wrong_status", lang, order_id=o.order_id, status=status_name(o.status, lang), flow=say(f"flow_{spec.name}", lang))
                    st.clear_task()
                    return "", FlowReply(text + " " + say("anything_else", lang))
            else:
                eligible = fits
        if len(eligible) == 1 and spec.name != "order_status":
            return eligible[0].order_id, None
        if not eligible:
            text = say("no_eligible_orders", lang, flow=say(f"flow_{spec.name}", lang))
            st.clear_task()
            return "", FlowReply(text + " " + say("anything_else", lang))
        listing = "\n".join(f"- {o.order_id} ({status_name(o.status, lang)}): {u.order_summary(o, lang)}" for o in eligible[:6])
        st.requested_slot = "order_id"
        return "", FlowReply(say("ask_order", lang, orders=listing))

    def _args(self, st: FlowState, spec: FlowSpec) -> dict[str, Any]:
        op = st.operation
        if op == "cancel_pending_order":
            return {"order_id": st.order_id, "reason": st.reason}
        if op == "modify_pending_order_address":
            return {"order_id": st.order_id, **st.address}
        if op == "modify_user_address":
            return {"user_id": st.customer_id, **st.address}
        if op == "modify_pending_order_payment":
            return {"order_id": st.order_id, "payment_method_id": st.payment_method_id}
        if op == "return_delivered_order_items":
            return {"order_id": st.order_id, "item_ids": list(st.item_ids), "payment_method_id": st.payment_method_id}
        return {"order_id": st.order_id, "item_ids": list(st.item_ids), "new_item_ids": list(st.new_item_ids), "payment_method_id": st.payment_method_id}

    # ------------------------------------------------------------------ texts from the store

    def _confirm_text(self, op: str, args: dict[str, Any], order: Order | None, customer: Customer, result: Any, lang: str) -> str:
        pm = {m.id: m for m in customer.payment_methods}
        pay = u.describe_payment(pm[args["payment_method_id"]], lang, self._currency) if args.get("payment_method_id") in pm else ""
        addr = ", ".join(v for k, v in args.items() if k in ("address1", "address2", "city", "state", "zip", "country") and v)
        if op == "cancel_pending_order" and order is not None:
            total = sum(p.amount for p in order.payments if p.transaction_type == "payment")
            return say("confirm_cancel", lang, order_id=order.order_id, items=u.order_summary(order, lang), reason=args["reason"], amount=self._m(total))
        if op == "modify_pending_order_address" and order is not None:
            return say("confirm_order_address", lang, order_id=order.order_id, address=addr)
        if op == "modify_user_address":
            return say("confirm_user_address", lang, address=addr)
        if op == "modify_pending_order_payment" and order is not None:
            total = order.payments[0].amount if order.payments else 0.0
            return say("confirm_payment", lang, order_id=order.order_id, payment=pay, amount=self._m(total))
        if op == "return_delivered_order_items" and order is not None:
            items = "; ".join(f"{u.item_name(it, lang)} ({u.describe_options(it.options)}, {self._m(it.price)})" for it in (self._item(order, i) for i in args["item_ids"]) if it)
            total = sum(it.price for it in (self._item(order, i) for i in args["item_ids"]) if it)
            return say("confirm_return", lang, order_id=order.order_id, items=items, payment=pay, amount=self._m(total))
        if order is not None:
            lines = []
            for old_id, new_id in zip(args["item_ids"], args["new_item_ids"], strict=False):
                old = self._item(order, old_id)
                product = self._store.get_product(old.product_id) if old else None
                new = next((v for v in product.variants if v.item_id == new_id), None) if product else None
                if old and new:
                    lines.append(f"{u.item_name(old, lang)}: {u.describe_options(old.options)} ({self._m(old.price)}) → {u.describe_options(new.options)} ({self._m(new.price)})")
            diff = result.price_difference
            diff_text = say("diff_pay" if diff > 0 else "diff_refund" if diff < 0 else "diff_none", lang, amount=self._m(abs(diff)), payment=pay)
            name = "confirm_exchange" if op == "exchange_delivered_order_items" else "confirm_modify_items"
            return say(name, lang, order_id=order.order_id, changes="\n".join(f"- {line}" for line in lines), difference=diff_text)
        return say("confirm_generic", lang)

    def _done_text(self, op: str, args: dict[str, Any], receipt: Any, lang: str) -> str:
        order = json.loads(receipt.result_json) if getattr(receipt, "result_json", "") else {}
        oid = args.get("order_id", "")
        status = order.get("status", "")
        if op == "cancel_pending_order":
            # The receipt carries the port's Order record (payments), as the workflow returns it.
            refunds = [p for p in order.get("payments", []) if p.get("transaction_type") == "refund"]
            gift = all("gift_card" in p.get("payment_method_id", "") for p in refunds) and refunds
            amount = sum(float(p.get("amount", 0)) for p in refunds)
            return say("done_cancel_gift" if gift else "done_cancel", lang, order_id=oid, status=status_name(status, lang), amount=self._m(amount))
        if op == "return_delivered_order_items":
            return say("done_return", lang, order_id=oid, status=status_name(status, lang))
        if op == "exchange_delivered_order_items":
            return say("done_exchange", lang, order_id=oid, status=status_name(status, lang))
        if op == "modify_pending_order_items":
            return say("done_modify_items", lang, order_id=oid, status=status_name(status, lang))
        if op == "modify_pending_order_payment":
            return say("done_payment", lang, order_id=oid, status=status_name(status, lang))
        if op == "modify_pending_order_address":
            a = order.get("address", {})
            return say("done_order_address", lang, order_id=oid, address=", ".join(str(v) for v in a.values() if v))
        if op == "modify_user_address":
            a = order.get("address", {})
            return say("done_user_address", lang, address=", ".join(str(v) for v in a.values() if v))
        return say("done_generic", lang)

    def _m(self, amount: float) -> str:
        return _money(amount, self._currency)

    def _status_text(self, order: Order, lang: str) -> str:
        items = u.order_summary(order, lang)
        tracking = ", ".join(t for f in order.fulfillments for t in f.tracking_ids)
        text = say("status", lang, order_id=order.order_id, status=status_name(order.status, lang), items=items)
        if tracking:
            text += " " + say("tracking", lang, tracking=tracking)
        state = self._after_sales(order.order_id) if self._after_sales is not None else None
        if state is not None and state.status:
            text += " " + progress(state, lang)
        return text
