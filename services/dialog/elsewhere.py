"""Questions about an order placed at another shop.

"I bought headphones on Amazon and they broke, how do I return them to Amazon?" shares
every word with this store's return policy, and retrieval finds it with confidence;
answering with it would be wrong. ``other_shop`` finds where the customer says the
purchase (or the order, refund, return...) belongs to another shop named in the pack
(intents.yaml ``other_shops``). A shop merely mentioned ("京东比你们便宜", "it's cheaper
on Amazon": a price-match question this store does answer) does not count.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Sequence

_ZH = (
    r"(?:在|从|去)\s*{shop}\s*(?:上|里|那儿|那里)?\s*(?:买|购|下单|下的单|拍|订)"
    r"|{shop}\s*(?:上|里)?\s*(?:买|购|拍|订)的"
    r"|{shop}\s*(?:的|上的|那边的)?\s*(?:订单|仅退款|退款|退货|退换货|客服|售后|快递|包裹|店铺|商家|会员|优惠券)"
)
_EN = (
    r"\b(?:bought|ordered|purchased|got|paid for)\b[^.?!]{{0,60}}?\b(?:on|from|at|through|via|off)\s+{shop}\b"
    r"|\b(?:my|an?|the|this|that)\s+{shop}\s+(?:order|purchase|package|parcel|refund|return|account|seller|coupon|gift card)"
    r"|\b(?:return|send)\b[^.?!]{{0,40}}?\bto\s+{shop}\b"
    r"|\b{shop}(?:'s)?\s+(?:customer service|support|refund|return policy|seller)"
)


@lru_cache(maxsize=8)
def _pattern(shops: tuple[str, ...]) -> re.Pattern[str] | None:
    if not shops:
        return None
    names = "(" + "|".join(re.escape(s) for s in sorted(shops, key=len, reverse=True)) + ")"
    return re.compile(_ZH.format(shop=names) + "|" + _EN.format(shop=names), re.I)


def other_shop(text: str, shops: Sequence[str]) -> str:
    """The other shop the customer's purchase or question belongs to, or ""."""
    pattern = _pattern(tuple(shops))
    match = pattern.search(text) if pattern else None
    if not match:
        return ""
    return next(g for g in match.groups() if g)
