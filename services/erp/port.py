"""The ERP port: the one small interface Dialog and the workflows use to read a
company's store and change it. A real ERP adapter implements ``StorePort``; kefu ships
two: the τ-bench retail data (``tau_retail.py``, imported by ``kefu store import``)
and the demo store.

Reads return plain records (below). Every change goes through ``apply``: the
operation's name and arguments are those of τ-bench's ``tools.json``
(``cancel_pending_order``, ``modify_pending_order_address``, ``modify_pending_order_items``,
``modify_pending_order_payment``, ``return_delivered_order_items``,
``exchange_delivered_order_items``, ``modify_user_address``). The store's policy is
enforced here: a rejected operation changes nothing and says why (``OperationResult``
with ``status="rejected"``). ``check`` runs the same validation without writing, so
Dialog can refuse before asking the customer for a yes.

``apply`` is idempotent on ``key`` (Temporal's workflow id): applying the same key
again returns the first result and changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

OPERATIONS = (
    "cancel_pending_order",
    "modify_pending_order_address",
    "modify_pending_order_items",
    "modify_pending_order_payment",
    "return_delivered_order_items",
    "exchange_delivered_order_items",
    "modify_user_address",
)
CANCEL_REASONS = ("no longer needed", "ordered by mistake")
ADDRESS_FIELDS = ("address1", "address2", "city", "state", "country", "zip")


@dataclass(frozen=True)
class PaymentMethod:
    id: str  # e.g. "gift_card_7794233", "credit_card_4190576", "paypal_2143483"
    source: str  # gift_card | credit_card | paypal (or a store's own, e.g. alipay)
    brand: str = ""  # credit cards: visa, mastercard...
    last_four: str = ""
    balance: float | None = None  # gift cards only


@dataclass(frozen=True)
class Address:
    address1: str
    address2: str
    city: str
    state: str
    country: str
    zip: str


@dataclass(frozen=True)
class Customer:
    customer_id: str
    first_name: str
    last_name: str
    email: str
    address: Address
    payment_methods: list[PaymentMethod]
    order_ids: list[str]
    phone: str = ""


@dataclass(frozen=True)
class OrderItem:
    item_id: str
    product_id: str
    name: str
    price: float
    options: dict[str, str]
    # The product's English name where ``name`` is in another language (the demo store).
    name_en: str = ""


@dataclass(frozen=True)
class Fulfillment:
    tracking_ids: list[str]
    item_ids: list[str]


@dataclass(frozen=True)
class Payment:
    transaction_type: str  # payment | refund
    amount: float
    payment_method_id: str


@dataclass(frozen=True)
class Order:
    order_id: str
    customer_id: str
    # pending | processed | delivered | cancelled | "pending (item modified)" |
    # "return requested" | "exchange requested"
    status: str
    address: Address
    items: list[OrderItem]
    fulfillments: list[Fulfillment]
    payments: list[Payment]
    # What operations recorded, as τ-bench writes it: cancel_reason, return_items,
    # return_payment_method_id, exchange_items, exchange_new_items,
    # exchange_payment_method_id, exchange_price_difference.
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Variant:
    item_id: str
    options: dict[str, str]
    available: bool
    price: float


@dataclass(frozen=True)
class Product:
    product_id: str
    name: str
    variants: list[Variant]
    name_en: str = ""
    # Short names customers use for it ("耳机", "kettle").
    aliases: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class OperationResult:
    operation: str
    status: str  # done | rejected
    # Why it was rejected, in English, e.g. "non-pending order cannot be cancelled".
    reason: str = ""
    # A short machine code for the rejection: order_not_found, wrong_status, item_not_found,
    # item_unavailable, payment_not_found, payment_not_allowed, insufficient_balance,
    # invalid_reason, invalid_arguments, customer_not_found.
    code: str = ""
    # The order (or, for modify_user_address, the customer) after the operation.
    order: Order | None = None
    customer: Customer | None = None
    # Price difference the customer pays (>0) or gets back (<0), for item changes.
    price_difference: float = 0.0

    @property
    def done(self) -> bool:
        return self.status == "done"


class StorePort(Protocol):
    """What kefu needs from a store. Implementations are safe to call from several
    threads and processes; every call sees the latest committed data."""

    # What kind of store this is ("tau-retail", "demo"); the domain pack follows it.
    format: str
    # ISO 4217 code of its amounts ("USD", "CNY").
    currency: str

    def find_customer_by_email(self, email: str) -> str | None: ...

    def find_customer_by_name_zip(self, first_name: str, last_name: str, zip_code: str) -> str | None: ...

    def find_customer_by_phone(self, phone: str) -> str | None: ...

    def get_customer(self, customer_id: str) -> Customer | None: ...

    def list_orders(self, customer_id: str) -> list[Order]: ...

    def get_order(self, order_id: str) -> Order | None: ...

    def get_product(self, product_id: str) -> Product | None: ...

    def list_products(self) -> list[tuple[str, str]]:
        """(product_id, name) of every product type."""
        ...

    def check(self, operation: str, args: dict[str, Any]) -> OperationResult:
        """Validate ``operation`` against the data and the policy without writing."""
        ...

    def apply(self, operation: str, args: dict[str, Any], *, key: str = "") -> OperationResult:
        """Run ``operation`` in one transaction, idempotent on ``key``."""
        ...
