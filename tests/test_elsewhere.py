"""Questions about an order placed at another shop (services/dialog/elsewhere.py)."""

from __future__ import annotations

import pytest

from services.config import KefuConfig
from services.demo.pack import load_domain_pack
from services.dialog.elsewhere import other_shop

SHOPS = load_domain_pack(KefuConfig().domain_pack).other_shops


@pytest.mark.parametrize(
    "text, shop",
    [
        ("I bought headphones on Amazon and they broke. How do I return them?", "Amazon"),
        ("my Temu order never came, can you check", "Temu"),
        ("拼多多的仅退款要怎么申请", "拼多多"),
        ("在淘宝买的衣服能在你们这退吗", "淘宝"),
        ("京东上买的耳机坏了怎么保修", "京东"),
    ],
)
def test_a_purchase_at_another_shop_is_recognised(text, shop):
    assert other_shop(text, SHOPS) == shop


@pytest.mark.parametrize(
    "text",
    ["京东比你们便宜50，能保价吗", "I saw it cheaper on Amazon, can you match the price?", "我想退货", "Where is my order?",
     "Do you sell the same brands as JD?"],
)
def test_a_shop_merely_mentioned_is_not_a_purchase_there(text):
    """Price-match questions name other shops: this store's FAQ answers those."""
    assert other_shop(text, SHOPS) == ""


def test_no_shops_in_the_pack_means_nothing_is_matched():
    assert other_shop("I bought it on Amazon", []) == ""
