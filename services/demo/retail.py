"""The demo store as retail documents behind the ERP port (format ``demo``).

The demo ERP's customers, products and orders (``store.py``, relational, seeded) are
turned into the document shapes the ERP port's document store keeps (the same shapes as
τ-bench's retail data: users with payment methods, products with variants, orders with
items, fulfillments and payment history), so that one flow engine and one policy layer
serve both stores. The demo data is extended so that every operation has cases:

* each catalog product has variants (colour, size, capacity...) with availability and
  prices, so items can be changed or exchanged for another variant of the same product;
* every customer has the payment methods their orders used, plus a stored-value balance
  (余额, a gift card in the port's terms);
* recent orders are added for most customers (awaiting shipment, in transit, delivered
  within the 7-day window), next to the 60-day history, so cancellations, changes,
  returns and exchanges all have orders they apply to, and policy rejections too.

Everything depends only on the demo store's seed: the same seed gives the same documents.
Amounts are in yuan (floats with two decimals), as the port's records carry them.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

from services.demo.store import BASE_TIME, CARRIERS, CHINA_TZ, DemoStore

FORMAT = "demo"
CURRENCY = "CNY"
# Days after delivery within which a return or an exchange may be requested (faq: returns-7day).
RETURN_WINDOW_DAYS = 7

# Relational order status -> the port's status.
STATUS = {
    "pending_payment": "pending",
    "paid": "pending",
    "shipped": "processed",
    "delivered": "delivered",
    "completed": "delivered",
    "cancelled": "cancelled",
    "refunded": "refunded",
}

# Catalog (zh name, en name) -> short names customers use (zh, en) and variant axes:
# [(zh key, en key, [(zh value, en value), ...])].
_COLOURS = [("黑色", "black"), ("白色", "white"), ("灰色", "grey"), ("蓝色", "blue"), ("红色", "red")]
_SIZES = [("S", "S"), ("M", "M"), ("L", "L"), ("XL", "XL")]
_SHOE_SIZES = [("38", "38"), ("39", "39"), ("40", "40"), ("41", "41"), ("42", "42"), ("43", "43")]
PRODUCTS: list[dict[str, Any]] = [
    {"zh": "无线蓝牙耳机", "en": "Wireless Bluetooth Earbuds", "aliases": ["蓝牙耳机", "耳机", "earbuds"], "axes": [("颜色", "color", _COLOURS[:3])]},
    {"zh": "头戴式降噪耳机", "en": "Noise-Cancelling Headphones", "aliases": ["降噪耳机", "头戴式耳机", "headphones"], "axes": [("颜色", "color", _COLOURS[:3])]},
    {"zh": "便携蓝牙音箱", "en": "Portable Bluetooth Speaker", "aliases": ["蓝牙音箱", "音箱", "speaker"], "axes": [("颜色", "color", _COLOURS)]},
    {"zh": "20W 快充充电器", "en": "20W Fast Charger", "aliases": ["充电器", "charger"], "axes": [("颜色", "color", _COLOURS[:2])]},
    {"zh": "Type-C 编织数据线 1.5 米", "en": "Braided USB-C Cable 1.5 m", "aliases": ["数据线", "cable"], "axes": [("颜色", "color", _COLOURS[:3]), ("长度", "length", [("1.5米", "1.5 m"), ("2米", "2 m")])]},
    {"zh": "磁吸手机壳", "en": "Magnetic Phone Case", "aliases": ["手机壳", "phone case"], "axes": [("颜色", "color", _COLOURS), ("型号", "model", [("6.1英寸", "6.1-inch"), ("6.7英寸", "6.7-inch")])]},
    {"zh": "10000mAh 充电宝", "en": "10,000 mAh Power Bank", "aliases": ["充电宝", "移动电源", "power bank"], "axes": [("颜色", "color", _COLOURS[:2])]},
    {"zh": "智能手表", "en": "Smartwatch", "aliases": ["手表", "smartwatch"], "axes": [("颜色", "color", _COLOURS[:3]), ("表带", "strap", [("硅胶", "silicone"), ("皮革", "leather")])]},
    {"zh": "运动手环", "en": "Fitness Band", "aliases": ["手环", "fitness band"], "axes": [("颜色", "color", _COLOURS[:4])]},
    {"zh": "电热水壶 1.7 升", "en": "Electric Kettle 1.7 L", "aliases": ["电热水壶", "热水壶", "水壶", "kettle"], "axes": [("颜色", "color", _COLOURS[:3])]},
    {"zh": "空气炸锅 4 升", "en": "Air Fryer 4 L", "aliases": ["空气炸锅", "炸锅", "air fryer"], "axes": [("颜色", "color", _COLOURS[:2]), ("容量", "capacity", [("4升", "4 L"), ("6升", "6 L")])]},
    {"zh": "记忆棉枕头", "en": "Memory Foam Pillow", "aliases": ["枕头", "pillow"], "axes": [("高度", "height", [("低枕", "low"), ("中枕", "medium"), ("高枕", "high")])]},
    {"zh": "纯棉四件套", "en": "Cotton Bedding Set", "aliases": ["四件套", "床品", "bedding set"], "axes": [("颜色", "color", _COLOURS[:4]), ("尺寸", "bed size", [("1.5米床", "1.5 m bed"), ("1.8米床", "1.8 m bed")])]},
    {"zh": "男士纯棉 T 恤", "en": "Men's Cotton T-Shirt", "aliases": ["T恤", "t恤", "t-shirt", "tshirt"], "axes": [("颜色", "color", _COLOURS), ("尺码", "size", _SIZES)]},
    {"zh": "女士羽绒服", "en": "Women's Down Jacket", "aliases": ["羽绒服", "down jacket"], "axes": [("颜色", "color", _COLOURS[:3]), ("尺码", "size", _SIZES)]},
    {"zh": "轻便跑步鞋", "en": "Lightweight Running Shoes", "aliases": ["跑步鞋", "跑鞋", "running shoes"], "axes": [("颜色", "color", _COLOURS[:3]), ("尺码", "size", _SHOE_SIZES)]},
    {"zh": "男士平角内裤三条装", "en": "Men's Boxer Briefs (3-Pack)", "aliases": ["内裤", "boxer briefs"], "axes": [("尺码", "size", _SIZES)]},
    {"zh": "电动牙刷", "en": "Electric Toothbrush", "aliases": ["牙刷", "toothbrush"], "axes": [("颜色", "color", _COLOURS[:3])]},
    {"zh": "保湿面霜 50 毫升", "en": "Moisturizing Cream 50 ml", "aliases": ["面霜", "cream"], "axes": [("类型", "type", [("清爽型", "light"), ("滋润型", "rich"), ("敏感肌适用", "sensitive skin")])]},
    {"zh": "挂耳咖啡 30 包", "en": "Drip Coffee Bags (30)", "aliases": ["挂耳咖啡", "咖啡", "coffee"], "axes": [("口味", "flavour", [("经典", "classic"), ("榛果风味", "hazelnut"), ("深度烘焙", "dark roast"), ("低因", "decaf")])]},
]

_SOURCES = {
    "alipay": ("alipay", {}),
    "wechat_pay": ("wechat_pay", {}),
    "unionpay": ("credit_card", {"brand": "unionpay"}),
    "credit_card": ("credit_card", {"brand": "visa"}),
}


def _base_name(name_zh: str) -> str:
    """The catalog name of a relational product ("无线蓝牙耳机（黑色）" -> "无线蓝牙耳机")."""
    return name_zh.split("（")[0]


def _variants(rng: random.Random, product_id: str, spec: dict[str, Any], base_price: float) -> dict[str, Any]:
    combos: list[list[tuple[str, str, str, str]]] = [[]]
    for key_zh, key_en, values in spec["axes"]:
        combos = [c + [(key_zh, key_en, vzh, ven)] for c in combos for vzh, ven in values]
    out = {}
    for n, combo in enumerate(combos):
        item_id = f"{int(product_id[1:]):03d}{n:02d}{rng.randint(10000, 99999)}"
        out[item_id] = {
            "item_id": item_id,
            "options": {k: v for k, _, v, _ in combo},
            "options_en": {k: v for _, k, _, v in combo},
            "available": n == 0 or rng.random() > 0.15,
            "price": round(base_price * (1 + rng.choice([0, 0, 0.05, 0.1, -0.05])), 2),
        }
    return out


def demo_documents(store: DemoStore) -> dict[str, dict[str, Any]]:
    """users, orders and products of the demo store as documents (deterministic)."""
    meta = store.meta()
    rng = random.Random(f"kefu-demo-retail-{meta.get('seed', '7')}")
    with store._connect() as conn:  # noqa: SLF001 - the demo store's own module family
        customers = conn.execute("SELECT * FROM customers ORDER BY customer_id").fetchall()
        products = conn.execute("SELECT * FROM products ORDER BY product_id").fetchall()
        orders = conn.execute("SELECT * FROM orders ORDER BY order_id").fetchall()
        lines = conn.execute("SELECT * FROM order_items ORDER BY order_id, line_no").fetchall()

    # Products: one per catalog entry, with variants.
    by_base: dict[str, dict[str, Any]] = {}
    product_docs: dict[str, dict[str, Any]] = {}
    for row in products:
        base = _base_name(row["name_zh"])
        if base in by_base:
            continue
        spec = next(p for p in PRODUCTS if p["zh"] == base)
        doc = {
            "name": base,
            "name_en": spec["en"],
            "aliases": spec["aliases"],
            "product_id": row["product_id"],
            "returnable_7day": bool(row["returnable_7day"]),
            "variants": _variants(rng, row["product_id"], spec, row["price_cents"] / 100),
        }
        by_base[base] = doc
        product_docs[row["product_id"]] = doc

    def variant_for(name_zh: str) -> tuple[dict[str, Any], dict[str, Any]]:
        product = by_base[_base_name(name_zh)]
        variants = list(product["variants"].values())
        colour = name_zh.split("（")[1].rstrip("）") if "（" in name_zh else ""
        fits = [v for v in variants if colour and colour in v["options"].values()] or variants
        return product, rng.choice(fits)

    def item(name_zh: str, price: float | None = None) -> dict[str, Any]:
        product, v = variant_for(name_zh)
        return {
            "name": product["name"], "name_en": product["name_en"], "product_id": product["product_id"],
            "item_id": v["item_id"], "price": v["price"] if price is None else price, "options": dict(v["options"]),
        }

    # Customers, with payment methods.
    users: dict[str, dict[str, Any]] = {}
    methods: dict[str, dict[str, str]] = {}
    for row in customers:
        cid = row["customer_id"]
        name = row["name"]
        first, last = (name.split(" ", 1) if " " in name else (name[1:], name[0]))
        street = row["address"].replace(row["city"], "", 1)
        district = ""
        if "区" in street:
            district, street = street.split("区", 1)[0] + "区", street.split("区", 1)[1]
        methods[cid] = {}
        payment_methods = {
            f"gift_card_{cid[1:]}": {"source": "gift_card", "id": f"gift_card_{cid[1:]}", "balance": float(rng.choice([0, 50, 88, 120, 200, 500]))}
        }
        users[cid] = {
            "name": {"first_name": first, "last_name": last},
            "address": {"address1": street, "address2": "", "city": row["city"], "state": district, "country": "中国", "zip": ""},
            "email": row["email"],
            "phone": row["phone"],
            "language": row["language"],
            "payment_methods": payment_methods,
            "orders": [],
        }

    def method(cid: str, kind: str) -> str:
        pm = users[cid]["payment_methods"]
        if kind == "balance":
            return f"gift_card_{cid[1:]}"
        if kind == "cod":
            kind = "alipay"
        source, extra = _SOURCES[kind]
        for pid, doc in pm.items():
            if doc["source"] == source and doc.get("brand", "") == extra.get("brand", ""):
                return pid
        pid = f"{kind}_{cid[1:]}"
        doc = {"source": source, "id": pid, **extra}
        if source == "credit_card":
            doc["last_four"] = f"{rng.randint(0, 9999):04d}"
        pm[pid] = doc
        return pid

    # What each historical order holds, at the unit price it was paid.
    items_of: dict[str, list[tuple[str, float]]] = {}
    for line in lines:
        name = next(p["name_zh"] for p in products if p["product_id"] == line["product_id"])
        items_of.setdefault(line["order_id"], []).extend([(name, line["unit_price_cents"] / 100)] * line["quantity"])

    order_docs: dict[str, dict[str, Any]] = {}

    def add_order(order_id: str, cid: str, status: str, kind: str, names: list[tuple[str, float | None]], created: datetime,
                  delivered: datetime | None, carrier: str | None, tracking: str | None, paid: bool) -> None:
        user = users[cid]
        its = [item(n, price) for n, price in names]
        total = round(sum(i["price"] for i in its), 2)
        pm = method(cid, kind)
        order_docs[order_id] = {
            "order_id": order_id,
            "user_id": cid,
            "address": dict(user["address"]),
            "items": its,
            "fulfillments": [{"tracking_id": [tracking], "item_ids": [i["item_id"] for i in its]}] if tracking else [],
            "status": status,
            "payment_history": [{"transaction_type": "payment", "amount": total, "payment_method_id": pm}] if paid else [],
            "created_at": created.isoformat(timespec="seconds"),
            **({"delivered_at": delivered.isoformat(timespec="seconds")} if delivered else {}),
            **({"carrier": carrier} if carrier else {}),
        }
        user["orders"].append(order_id)

    for row in orders:
        status = STATUS[row["status"]]
        delivered = datetime.fromisoformat(row["delivered_at"]) if row["delivered_at"] else None
        add_order(
            row["order_id"], row["customer_id"], status, row["payment_method"], items_of[row["order_id"]],
            datetime.fromisoformat(row["created_at"]), delivered, row["carrier"], row["tracking_no"],
            paid=row["status"] != "pending_payment",
        )

    # Recent orders, so every operation has cases: awaiting shipment, in transit,
    # delivered within the return window.
    catalog = [p["zh"] for p in PRODUCTS]
    serial = 900
    for row in customers:
        cid = row["customer_id"]
        for kind in rng.sample(["pending", "pending", "processed", "delivered", "delivered"], k=rng.randint(1, 3)):
            created = BASE_TIME - timedelta(hours=rng.randint(1, 20) if kind == "pending" else rng.randint(30, 100))
            serial += 1
            order_id = f"KF{created:%Y%m%d}{serial:05d}"
            names = [(n, None) for n in rng.sample(catalog, k=rng.choice([1, 1, 2, 2, 3]))]
            carrier = tracking = None
            delivered = None
            if kind != "pending":
                carrier = rng.choice(sorted(CARRIERS))
                tracking = f"{carrier}{rng.randint(0, 10**12 - 1):012d}"
            if kind == "delivered":
                delivered = BASE_TIME - timedelta(days=rng.randint(1, 5), hours=rng.randint(0, 12))
            payment = rng.choice(["alipay", "wechat_pay", "unionpay", "balance"])
            add_order(order_id, cid, kind, payment, names, created, delivered, carrier, tracking, paid=True)

    return {"users": users, "orders": order_docs, "products": product_docs}


def now() -> datetime:
    """The demo store's "now" (its history is generated up to this moment)."""
    return BASE_TIME.astimezone(CHINA_TZ)
