"""Deterministic demo content of the demo ERP: customers, products and orders.

Everything depends only on the ``random.Random`` passed in and the fixed
``BASE_TIME``; the same seed gives the same rows.
"""

from __future__ import annotations

import random
import sqlite3
from datetime import datetime, timedelta

from services.demo.store import (
    BASE_TIME,
    CARRIERS,
    CHINA_TZ,
    FREE_SHIPPING_CENTS,
    HISTORY_DAYS,
    PAYMENT_METHODS,
    REMOTE_FREE_SHIPPING_CENTS,
    REMOTE_SHIPPING_FEE_CENTS,
    SHIPPING_FEE_CENTS,
)

_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林罗高"
_GIVEN = ["伟", "芳", "娜", "敏", "静", "磊", "洋", "艳", "勇", "军", "杰", "娟", "涛", "明", "超", "秀英", "晓东", "子涵", "雨桐", "浩然", "思远", "佳怡", "一鸣", "欣然"]
_EN_FIRST = ["Alex", "Emma", "Daniel", "Grace", "Liam", "Olivia", "Noah", "Sophie", "Ethan", "Chloe", "Ryan", "Mia"]
_EN_LAST = ["Chan", "Wong", "Tan", "Lee", "Smith", "Brown", "Ng", "Lim", "Taylor", "Walker"]

# (city, district, remote area)
_ZH_CITIES = [
    ("上海市", "浦东新区", False),
    ("北京市", "朝阳区", False),
    ("广州市", "天河区", False),
    ("深圳市", "南山区", False),
    ("杭州市", "西湖区", False),
    ("成都市", "武侯区", False),
    ("武汉市", "洪山区", False),
    ("南京市", "鼓楼区", False),
    ("西安市", "雁塔区", False),
    ("乌鲁木齐市", "天山区", True),
    ("拉萨市", "城关区", True),
]
_ZH_STREETS = ["人民路", "中山路", "建设路", "解放路", "和平街", "长江路", "文化路", "幸福路", "光明街", "新华路"]
_EN_CITIES = [("Shanghai", "Jing'an District", False), ("Beijing", "Chaoyang District", False), ("Shenzhen", "Nanshan District", False), ("Guangzhou", "Tianhe District", False)]
_EN_STREETS = ["Century Avenue", "Garden Road", "Riverside Street", "Park Lane", "Harbour Road", "Lake View Road"]

# (category, zh, en, base price in yuan, warranty months, 7-day no-reason return)
_CATALOG = [
    ("audio", "无线蓝牙耳机", "Wireless Bluetooth Earbuds", 299, 12, True),
    ("audio", "头戴式降噪耳机", "Noise-Cancelling Headphones", 899, 12, True),
    ("audio", "便携蓝牙音箱", "Portable Bluetooth Speaker", 199, 12, True),
    ("phone-accessories", "20W 快充充电器", "20W Fast Charger", 59, 12, True),
    ("phone-accessories", "Type-C 编织数据线 1.5 米", "Braided USB-C Cable 1.5 m", 29, 6, True),
    ("phone-accessories", "磁吸手机壳", "Magnetic Phone Case", 49, 6, True),
    ("phone-accessories", "10000mAh 充电宝", "10,000 mAh Power Bank", 129, 12, True),
    ("wearables", "智能手表", "Smartwatch", 1299, 12, True),
    ("wearables", "运动手环", "Fitness Band", 199, 12, True),
    ("home", "电热水壶 1.7 升", "Electric Kettle 1.7 L", 149, 12, True),
    ("home", "空气炸锅 4 升", "Air Fryer 4 L", 399, 12, True),
    ("home", "记忆棉枕头", "Memory Foam Pillow", 89, 0, True),
    ("home", "纯棉四件套", "Cotton Bedding Set", 259, 0, True),
    ("apparel", "男士纯棉 T 恤", "Men's Cotton T-Shirt", 79, 0, True),
    ("apparel", "女士羽绒服", "Women's Down Jacket", 699, 0, True),
    ("apparel", "轻便跑步鞋", "Lightweight Running Shoes", 359, 0, True),
    ("apparel", "男士平角内裤三条装", "Men's Boxer Briefs (3-Pack)", 69, 0, False),
    ("home", "电动牙刷", "Electric Toothbrush", 199, 12, False),
    ("personal-care", "保湿面霜 50 毫升", "Moisturizing Cream 50 ml", 159, 0, False),
    ("food", "挂耳咖啡 30 包", "Drip Coffee Bags (30)", 89, 0, False),
]
# Variants of a catalog item when more products are asked for than the catalog holds.
_COLORS = [("黑色", "Black"), ("白色", "White"), ("灰色", "Grey"), ("蓝色", "Blue"), ("红色", "Red")]
_VARIANTS = {
    "food": [("榛果风味", "Hazelnut"), ("深度烘焙", "Dark Roast"), ("低因", "Decaf")],
    "personal-care": [("清爽型", "Light"), ("滋润型", "Rich"), ("敏感肌适用", "Sensitive Skin")],
}
_LEVELS = [("regular", 50), ("silver", 25), ("gold", 17), ("diamond", 8)]


def _ts(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


def fill_demo_data(conn: sqlite3.Connection, rng: random.Random, n_customers: int, n_products: int, n_orders: int) -> None:
    customer_rows = []
    for i in range(1, n_customers + 1):
        english = rng.random() < 0.25
        phone = f"1{rng.choice('3589')}{rng.randint(0, 9)}{rng.randint(0, 99_999_999):08d}"
        house = rng.randint(1, 399)
        if english:
            first, last = rng.choice(_EN_FIRST), rng.choice(_EN_LAST)
            name = f"{first} {last}"
            email = f"{first.lower()}.{last.lower()}{i}@example.com"
            city, district, remote = rng.choice(_EN_CITIES)
            address = f"{house} {rng.choice(_EN_STREETS)}, {district}, {city}"
        else:
            name = rng.choice(_SURNAMES) + rng.choice(_GIVEN)
            email = f"user{i:04d}@example.com"
            city, district, remote = rng.choice(_ZH_CITIES)
            address = f"{city}{district}{rng.choice(_ZH_STREETS)}{house}号"
        level = rng.choices([lv for lv, _ in _LEVELS], weights=[w for _, w in _LEVELS])[0]
        created = BASE_TIME - timedelta(days=rng.randint(HISTORY_DAYS + 1, 3 * 365), seconds=rng.randint(0, 86_399))
        customer_rows.append(
            (f"C{i:05d}", name, phone, email, "en" if english else "zh", city, address, int(remote), level,
             rng.randint(0, 20_000), _ts(created))
        )
    conn.executemany("INSERT INTO customers VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", customer_rows)

    product_rows = []
    for i in range(n_products):
        category, zh, en, price, warranty, returnable = _CATALOG[i % len(_CATALOG)]
        variant = i // len(_CATALOG)
        if variant:
            variants = _VARIANTS.get(category, _COLORS)
            vzh, ven = variants[(variant - 1) % len(variants)]
            zh, en = f"{zh}（{vzh}）", f"{en} ({ven})"
        # Whole yuan ending in 9, as shops like them.
        price_cents = max(900, (price + rng.randint(-2, 2) * 10) * 100)
        product_rows.append(
            (f"P{i + 1:04d}", f"KF-{category[:3].upper()}-{i + 1:04d}", zh, en, category, price_cents,
             rng.randint(0, 500), warranty, int(returnable))
        )
    conn.executemany("INSERT INTO products VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", product_rows)

    # Order times first, oldest first, so that order numbers grow with time.
    horizon = HISTORY_DAYS * 86_400
    times = sorted(BASE_TIME - timedelta(seconds=rng.randint(60, horizon)) for _ in range(n_orders))
    order_rows, item_rows = [], []
    for index, created in enumerate(times):
        order_id = f"KF{created:%Y%m%d}{100 + index:05d}"
        customer = customer_rows[rng.randrange(n_customers)]
        customer_id, address, remote = customer[0], customer[6], bool(customer[7])
        lines = rng.choices([1, 2, 3], weights=[60, 30, 10])[0]
        items_cents = 0
        for line_no, product_index in enumerate(rng.sample(range(n_products), lines), start=1):
            quantity = rng.choices([1, 2, 3], weights=[75, 20, 5])[0]
            unit = product_rows[product_index][5]
            items_cents += quantity * unit
            item_rows.append((order_id, line_no, product_rows[product_index][0], quantity, unit))
        fee, free_from = (REMOTE_SHIPPING_FEE_CENTS, REMOTE_FREE_SHIPPING_CENTS) if remote else (SHIPPING_FEE_CENTS, FREE_SHIPPING_CENTS)
        shipping_cents = 0 if items_cents >= free_from else fee
        payment = rng.choices(PAYMENT_METHODS, weights=[35, 35, 8, 10, 7, 5])[0]

        age = BASE_TIME - created
        paid = created + timedelta(seconds=rng.randint(20, 900))
        # Paid before 16:00 ships the same day, later the next day (faq: shipping-times-*).
        ship_day = paid.date() if paid.hour < 16 else paid.date() + timedelta(days=1)
        shipped = datetime(ship_day.year, ship_day.month, ship_day.day, 17, 0, tzinfo=CHINA_TZ) + timedelta(
            minutes=rng.randint(0, 240)
        )
        delivered = shipped + timedelta(days=rng.randint(1, 5 if remote else 3), hours=rng.randint(-4, 4))
        roll = rng.random()
        if payment != "cod" and (paid > BASE_TIME or (age < timedelta(minutes=30) and roll < 0.5)):
            status, paid_at, shipped_at, delivered_at = "pending_payment", None, None, None
        elif roll < 0.05:
            status, paid_at, shipped_at, delivered_at = "cancelled", None, None, None
        elif shipped > BASE_TIME:
            status, paid_at, shipped_at, delivered_at = "paid", paid, None, None
        elif delivered > BASE_TIME:
            status, paid_at, shipped_at, delivered_at = "shipped", paid, shipped, None
        elif roll > 0.93:
            status, paid_at, shipped_at, delivered_at = "refunded", paid, shipped, delivered
        elif BASE_TIME - delivered < timedelta(days=7):
            status, paid_at, shipped_at, delivered_at = "delivered", paid, shipped, delivered
        else:
            status, paid_at, shipped_at, delivered_at = "completed", paid, shipped, delivered
        if payment == "cod" and paid_at is not None:
            # Cash on delivery is paid when the parcel arrives.
            paid_at = delivered_at
        carrier = tracking = None
        if shipped_at is not None:
            carrier = rng.choice(sorted(CARRIERS))
            tracking = f"{carrier}{rng.randint(0, 10**12 - 1):012d}"
        order_rows.append(
            (order_id, customer_id, status, payment, _ts(created),
             _ts(paid_at) if paid_at else None, _ts(shipped_at) if shipped_at else None,
             _ts(delivered_at) if delivered_at else None, carrier, tracking, address,
             items_cents, shipping_cents, items_cents + shipping_cents)
        )
    conn.executemany("INSERT INTO orders VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", order_rows)
    conn.executemany("INSERT INTO order_items VALUES (?, ?, ?, ?, ?)", item_rows)
