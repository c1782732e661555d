"""The task flows' readers and engine on the τ-bench store, without services."""

from __future__ import annotations

import pytest

from services.config import REPO_ROOT
from services.dialog.flows import understanding as u
from services.dialog.flows.engine import FlowEngine
from services.dialog.flows.spec import flows_for, load_flows
from services.dialog.flows.state import FlowState
from services.erp.port import PaymentMethod

TAU_DATA = REPO_ROOT.parent / "shared" / "data" / "tau_bench_retail" / "data"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from services.erp.tau_retail import TauRetailStore, import_tau_retail

    path = tmp_path_factory.mktemp("erp") / "erp.db"
    import_tau_retail(TAU_DATA, path)
    return TauRetailStore(path)


@pytest.mark.parametrize(
    ("text", "answer"),
    [("yes", "yes"), ("Yes, please go ahead.", "yes"), ("sure, do it", "yes"), ("好的，确认", "yes"), ("No, that's not right.", "no"),
     ("不，先不要", "no"), ("wait", "no"), ("what about the other order?", "")],
)
def test_yes_or_no(text, answer):
    assert u.yes_or_no(text) == answer


def test_address_on_one_line():
    assert u.address("The new address is 320 Cedar Avenue, Suite 116, San Antonio, TX 78219, USA.") == {
        "address1": "320 Cedar Avenue", "address2": "Suite 116", "city": "San Antonio", "state": "TX", "country": "USA", "zip": "78219",
    }
    assert u.address("77 Harbour Road, Springfield, IL 62704")["address2"] == ""
    assert u.address("somewhere in Springfield") is None


def test_payment_method_by_words():
    methods = [PaymentMethod("gift_card_1", "gift_card", balance=10.0), PaymentMethod("credit_card_2", "credit_card", "visa", "1234"),
               PaymentMethod("credit_card_3", "credit_card", "mastercard", "9999"), PaymentMethod("paypal_4", "paypal")]
    assert u.payment_method("my gift card please", methods).id == "gift_card_1"
    assert u.payment_method("the visa", methods).id == "credit_card_2"
    assert u.payment_method("card ending in 9999", methods).id == "credit_card_3"
    assert u.payment_method("my credit card", methods) is None, "two cards: the customer must say which"
    assert u.payment_method("back to the original payment method", methods, original="paypal_4").id == "paypal_4"


def test_item_requests_split_old_and_new_options_per_item():
    names = ["Bluetooth Speaker", "Mechanical Keyboard", "Smart Thermostat"]
    options = {
        "Bluetooth Speaker": {"color": {"black", "green", "red", "blue"}, "battery life": {"10 hours", "20 hours"}, "water resistance": {"yes", "no"}},
        "Mechanical Keyboard": {"switch type": {"clicky", "linear", "tactile"}, "backlight": {"RGB", "none", "white"}},
        "Smart Thermostat": {"compatibility": {"Amazon Alexa", "Google Assistant"}, "color": {"black", "white"}},
    }
    reqs = u.item_requests("exchange the green speaker for a red one and the black Bluetooth Speaker for a blue one", names, options)
    assert [(r.product, r.old, r.new) for r in reqs] == [
        ("Bluetooth Speaker", {"color": "green"}, {"color": "red"}),
        ("Bluetooth Speaker", {"color": "black"}, {"color": "blue"}),
    ]
    reqs = u.item_requests("swap my keyboard to clicky switches with no backlight, and the thermostat for one with Google Assistant", names, options)
    assert reqs[0].new == {"switch type": "clicky", "backlight": "none"}
    assert reqs[1].new == {"compatibility": "Google Assistant"}


def test_two_products_sharing_a_last_word_are_not_guessed():
    assert u.product_mentions("the camera", ["Action Camera", "Digital Camera"]) == []
    assert [n for _, n in u.product_mentions("the digital camera", ["Action Camera", "Digital Camera"])] == ["Digital Camera"]


def test_pack_flows_load_and_detect():
    flows = load_flows(REPO_ROOT / "services" / "packs" / "tau_retail" / "flows.yaml")
    assert {f.name for f in flows} >= {"cancel_order", "return_items", "change_items", "modify_order_address", "modify_user_address"}
    engine = FlowEngine(flows, store=None)  # type: ignore[arg-type]
    assert engine._detect("I want to cancel my order and return the kettle") == ["cancel_order", "return_items"]
    assert engine._detect("please update my default address") == ["modify_user_address"]
    assert engine._detect("我要退货") == ["return_items"]


def test_policy_questions_go_to_the_knowledge(store):
    engine = FlowEngine(flows_for("tau-retail"), store)
    assert engine.step("What is your return policy?", FlowState(), "en") is None
    assert engine.step("hello there", FlowState(), "en") is None
    st = FlowState()
    assert engine.step("I want to return my kettle", st, "en").text.startswith("I can help")
    assert st.flow == "return_items" and st.requested_slot == "identity"


def test_a_whole_return_without_the_order_number(store):
    """The order is found from the product, the item from the order, and nothing runs
    before the yes."""
    engine = FlowEngine(flows_for("tau-retail"), store)
    customer = store.get_customer("omar_anderson_3203")
    st = FlowState()
    engine.step("Hi, I want to return the kettle I bought.", st, "en")
    reply = engine.step(f"my email is {customer.email}", st, "en")
    assert st.customer_id == "omar_anderson_3203" and st.order_id == "#W6067464"
    assert st.requested_slot == "payment_method", reply.text
    reply = engine.step("my credit card", st, "en")
    assert st.requested_slot == "confirmation"
    assert st.pending == {"operation": "return_delivered_order_items",
                          "args": {"order_id": "#W6067464", "item_ids": ["9624127908"], "payment_method_id": "credit_card_4190576"}}
    assert "$158.90" in reply.text and "Mastercard credit card ending in 4300" in reply.text
    assert store.get_order("#W6067464").status == "delivered"
    assert engine.step("yes", st, "en").run == st.pending


def test_a_question_in_the_middle_of_a_task_goes_to_the_knowledge_and_the_task_waits(store):
    engine = FlowEngine(flows_for("tau-retail"), store)
    customer = store.get_customer("omar_anderson_3203")
    st = FlowState()
    engine.step("I want to return the kettle", st, "en")
    engine.step(f"my email is {customer.email}", st, "en")
    assert st.requested_slot == "payment_method"
    assert engine.step("How long does a refund take?", st, "en") is None
    assert st.flow == "return_items" and st.requested_slot == "payment_method"
    assert engine.resume(st, "en").startswith("Back to your request: Where should the refund go?")
    engine.step("my credit card", st, "en")
    assert st.pending["operation"] == "return_delivered_order_items"
