"""Reading what a customer says about their account, orders and items.

Rule-based and store-aware: the values a flow needs (an email, a name and zip, an
order id, which items, which variant, which payment method, an address, a yes or a
no) are read from the customer's own words and checked against the store's data,
never guessed. Every reader returns nothing rather than a doubtful value, so the
flow asks instead of acting on a misreading. Chinese and English.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from services.erp.port import ADDRESS_FIELDS, CANCEL_REASONS, Customer, Order, OrderItem, PaymentMethod, Product, Variant

EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
ZIP = re.compile(r"(?<![\d#])(\d{5})(?:-\d{4})?(?!\d)")
ORDER_ID = re.compile(r"(?<![A-Za-z0-9])#?\s?([Ww]\d{7})(?!\d)")
DEMO_ORDER_ID = re.compile(r"(?<![A-Za-z0-9])(KF\d{13})(?!\d)")
WORD = re.compile(r"[A-Za-z][A-Za-z'\-]*")

_YES = re.compile(
    r"^\s*(yes|yeah|yep|yup|sure|ok|okay|correct|confirm(ed)?|right|exactly|absolutely|please do|go ahead|do it|proceed|sounds good|that'?s (right|correct)|that works)\b"
    r"|\b(yes|confirm|go ahead|please proceed|proceed|that'?s correct|that is correct|all correct)\b"
    r"|^\s*(是|是的|对|对的|好|好的|可以|确认|没问题|行|嗯)",
    re.I,
)
_NO = re.compile(
    r"^\s*(no|nope|nah|not really|wait|hold on|cancel that|don'?t|stop)\b|\b(that'?s (not|wrong)|incorrect|not right|not what i)\b"
    r"|^\s*(不|不是|不对|不要|不用|算了|等等|错了)",
    re.I,
)


def yes_or_no(text: str) -> str:
    """"yes", "no" or "" for an answer to a confirmation question."""
    no, yes = bool(_NO.search(text)), bool(_YES.search(text))
    if no and not re.match(r"^\s*(yes|yeah|yep|sure|是|好|对)", text, re.I):
        return "no"
    return "yes" if yes else ""


PHONE = re.compile(r"(?<!\d)(1[3-9]\d)[\s-]?(\d{4})[\s-]?(\d{4})(?!\d)")


def phones(text: str) -> list[str]:
    """Mainland mobile numbers, as digits."""
    return ["".join(m.groups()) for m in PHONE.finditer(text)]


def emails(text: str) -> list[str]:
    return [m.group(0).rstrip(".") for m in EMAIL.finditer(text)]


def zip_codes(text: str) -> list[str]:
    masked = EMAIL.sub(" ", text)
    return [m.group(1) for m in ZIP.finditer(ORDER_ID.sub(" ", masked))]


def name_candidates(text: str) -> list[tuple[str, str]]:
    """(first, last) pairs worth looking up: consecutive words, the likeliest first
    ("my name is Omar Anderson", "this is omar anderson, zip 19031")."""
    words = [w for w in WORD.findall(EMAIL.sub(" ", text))]
    pairs = []
    m = re.search(r"\b(?:name is|name's|i am|i'm|this is|it's|call me)\s+([A-Za-z][A-Za-z'\-]*)\s+([A-Za-z][A-Za-z'\-]*)", text, re.I)
    if m:
        pairs.append((m.group(1), m.group(2)))
    pairs += [(a, b) for a, b in zip(words, words[1:], strict=False) if a[0].isupper() and b[0].isupper()]
    pairs += [(a, b) for a, b in zip(words, words[1:], strict=False)]
    seen, out = set(), []
    for a, b in pairs:
        key = (a.lower(), b.lower())
        if key not in seen:
            seen.add(key)
            out.append((a, b))
    return out


def order_ids(text: str) -> list[str]:
    found = [f"#{m.group(1).upper()}" for m in ORDER_ID.finditer(text)]
    found += [m.group(1) for m in DEMO_ORDER_ID.finditer(text)]
    return list(dict.fromkeys(found))


def cancel_reason(text: str) -> str:
    t = text.lower()
    if re.search(r"mistake|accident|wrong(ly)?|by error|didn'?t mean|错|误|拍错|下错", t):
        return "ordered by mistake"
    if re.search(r"no longer|not need|don'?t need|do not need|changed my mind|don'?t want|not want|不需要|不想要|用不着|不要了", t):
        return "no longer needed"
    for reason in CANCEL_REASONS:
        if reason in t:
            return reason
    return ""


# ----------------------------------------------------------------------------- payment


def payment_method(text: str, methods: list[PaymentMethod], original: str = "") -> PaymentMethod | None:
    """The customer's payment method the message names: "my gift card", "paypal",
    "the visa ending in 1234", "the original payment method", 「礼品卡」."""
    t = text.lower()
    if original and re.search(r"original|same (card|method|payment|account)|paid with|原路|原支付|原来的", t):
        chosen = [m for m in methods if m.id == original]
        if chosen and not re.search(r"gift ?card|paypal|credit|visa|master|amex|礼品卡|余额", t):
            return chosen[0]
    candidates: list[PaymentMethod] = []
    if re.search(r"gift[\s-]?card|store balance|balance|礼品卡|购物卡|余额", t):
        candidates = [m for m in methods if m.source == "gift_card"]
    elif re.search(r"pay ?pal", t):
        candidates = [m for m in methods if m.source == "paypal"]
    elif re.search(r"ali ?pay|支付宝", t):
        candidates = [m for m in methods if m.source == "alipay"]
    elif re.search(r"we ?chat|微信", t):
        candidates = [m for m in methods if m.source == "wechat_pay"]
    elif re.search(r"credit|card|visa|master|amex|discover|union ?pay|信用卡|银行卡|银联|卡", t):
        candidates = [m for m in methods if m.source == "credit_card"]
        digits = re.findall(r"(?<!\d)(\d{4})(?!\d)", t)
        by_digits = [m for m in candidates if m.last_four and m.last_four in digits]
        if by_digits:
            candidates = by_digits
        else:
            by_brand = [m for m in candidates if m.brand and m.brand.lower() in t]
            if by_brand:
                candidates = by_brand
    else:
        for m in methods:
            if m.id.lower() in t:
                return m
    return candidates[0] if len(candidates) == 1 else None


def describe_payment(m: PaymentMethod, language: str = "en", currency: str = "USD") -> str:
    if m.source == "gift_card":
        if currency == "CNY":  # the demo store's stored value
            bal = f"¥{m.balance:,.2f}" if m.balance is not None else ""
            return f"账户余额（{bal}）" if language == "zh" else f"store balance ({bal})"
        bal = f" (balance ${m.balance:.2f})" if m.balance is not None else ""
        return f"礼品卡 {m.id}{bal}" if language == "zh" else f"gift card {m.id}{bal}"
    if m.source == "credit_card":
        if m.brand == "unionpay":
            return f"银联卡（尾号 {m.last_four}）" if language == "zh" else f"UnionPay card ending in {m.last_four}"
        brand = m.brand.capitalize() if m.brand else "credit card"
        return f"{brand} 信用卡（尾号 {m.last_four}）" if language == "zh" else f"{brand} credit card ending in {m.last_four}"
    if m.source == "paypal":
        return f"PayPal ({m.id})"
    if m.source == "alipay":
        return "支付宝" if language == "zh" else "Alipay"
    if m.source == "wechat_pay":
        return "微信支付" if language == "zh" else "WeChat Pay"
    return m.id


# ----------------------------------------------------------------------------- address

_STATES = {
    "AL", "AK", "AZ", "AR", "CA", "CO", "CT", "DE", "FL", "GA", "HI", "ID", "IL", "IN", "IA", "KS", "KY", "LA", "ME", "MD", "MA",
    "MI", "MN", "MS", "MO", "MT", "NE", "NV", "NH", "NJ", "NM", "NY", "NC", "ND", "OH", "OK", "OR", "PA", "RI", "SC", "SD", "TN",
    "TX", "UT", "VT", "VA", "WA", "WV", "WI", "WY", "DC",
}


_ZH_ADDRESS = re.compile(
    r"(?P<city>[\u4e00-\u9fff]{2,8}?市)(?P<district>[\u4e00-\u9fff]{1,8}?[区县])?"
    r"(?P<street>[\u4e00-\u9fff0-9]{1,20}?(?:大道|路|街|道|巷|弄)\d+号(?:[\u4e00-\u9fff0-9\-]*?(?:室|栋|单元|楼))*)"
)


def address(text: str, default_country: str = "USA") -> dict[str, str] | None:
    """An address written on one line: "123 Main St, Apt 4, Springfield, IL 62701, USA"
    (address2 optional), or in Chinese 「上海市浦东新区人民路100号3栋201室」. None unless
    street, city and (in English) state and zip are all there."""
    zh = _ZH_ADDRESS.search(text)
    if zh:
        # The words before the city ("新地址是", "改成", "寄到") are not part of it.
        city = re.sub(r"^.*(?:地址|改成|改为|换成|换到|寄到|送到|发到|是|为|在|到)", "", zh["city"]) or zh["city"]
        return dict(zip(ADDRESS_FIELDS, (zh["street"], "", city, zh["district"] or "", "中国", ""), strict=True))
    m = re.search(r"\d+\s+[A-Za-z0-9].*", text)
    if not m:
        return None
    body = m.group(0).strip().rstrip(".!")
    parts = [p.strip() for p in re.split(r",|\n", body) if p.strip()]
    country = ""
    if parts and re.fullmatch(r"(usa|us|u\.s\.a?\.?|united states( of america)?)", parts[-1], re.I):
        country = "USA"
        parts = parts[:-1]
    state = zip_code = ""
    # "IL 62701" / "IL" "62701" / "Illinois 62701"
    sm = re.search(r"\b([A-Z]{2})\s+(\d{5})\b", parts[-1] if parts else "")
    if sm and sm.group(1) in _STATES:
        state, zip_code = sm.group(1), sm.group(2)
        parts[-1] = parts[-1][: sm.start()].strip()
        if not parts[-1]:
            parts = parts[:-1]
    elif len(parts) >= 2 and re.fullmatch(r"\d{5}", parts[-1]) and parts[-2].strip().upper() in _STATES:
        zip_code, state = parts[-1], parts[-2].strip().upper()
        parts = parts[:-2]
    else:
        return None
    if len(parts) < 2:
        return None
    address1, city = parts[0], parts[-1]
    address2 = ", ".join(parts[1:-1])
    return dict(zip(ADDRESS_FIELDS, (address1, address2, city, state, country or default_country, zip_code), strict=False))


# ----------------------------------------------------------------------------- items


_CJK = re.compile(r"[\u4e00-\u9fff]")


def _norm(text: str) -> str:
    """Lower case, punctuation to spaces; a dot stays only inside a number ("1.5l");
    Chinese characters stay (they are matched as substrings, having no spaces)."""
    t = re.sub(r"(?<!\d)\.|\.(?!\d)", " ", text.lower().replace("’", "'"))
    return " " + re.sub(r"[^a-z0-9%.+\-\u4e00-\u9fff]+", " ", t) + " "


def _has(text: str, form: str) -> bool:
    """``form`` in normalized ``text``: whole words (a Chinese character next to it
    counts as a boundary: 「S码的羽绒服」), or anywhere for Chinese."""
    if _CJK.search(form):
        return form.replace(" ", "") in text.replace(" ", "")
    return re.search(rf"(?<![a-z0-9.]){re.escape(form)}(?![a-z0-9])", text) is not None


def _singular(word: str) -> str:
    return word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word


def _find_all(text: str, forms: set[str] | tuple[str, ...]) -> list[tuple[int, int]]:
    """Every place one of ``forms`` occurs as whole words, (start, end)."""
    out: list[tuple[int, int]] = []
    for form in sorted(set(forms), key=len, reverse=True):
        if not form.strip():
            continue
        # Chinese has no spaces between words: a name is found anywhere.
        needle = form if _CJK.search(form) else " " + form + " "
        i = text.find(needle)
        while i >= 0:
            if not any(a <= i < b for a, b in out):
                out.append((i, i + len(needle) - 1))
            i = text.find(needle, i + 1)
    return out


def product_mentions(text: str, names: list[str], aliases: dict[str, str] | None = None) -> list[tuple[int, str]]:
    """(position, name) of each product name mentioned, by position, as often as it is
    mentioned ("the green speaker and the black speaker"). The whole name counts
    ("smart watch"), and so does its last word ("kettle", "keyboard") when no other
    product shares it and no longer name already covers that place."""
    t = _norm(text)
    unique = sorted(set(names), key=len, reverse=True)
    heads = [_norm(n).split()[-1] for n in unique]
    spans: list[tuple[int, int, str]] = []
    for name in unique:
        n = _norm(name).strip()
        for start, end in _find_all(t, (n, n + "s", n.replace("-", " "), n.replace("-", ""))):
            if not any(a <= start < b for a, b, _ in spans):
                spans.append((start, end, name))
    # Other names of a product ("耳机", "kettle", its English name), longest first.
    for alias, name in sorted((aliases or {}).items(), key=lambda kv: len(kv[0]), reverse=True):
        a = _norm(alias).strip()
        for start, end in _find_all(t, (a, a + "s")):
            if not any(x <= start < y for x, y, _ in spans):
                spans.append((start, end, name))
    for name, head in zip(unique, heads, strict=True):
        if heads.count(head) > 1 or len(head) < 3 or _CJK.search(head):
            continue
        for start, end in _find_all(t, {head, head + "s", _singular(head), head.replace("-", "")}):
            if not any(a <= start < b for a, b, _ in spans):
                spans.append((start, end, name))
    return sorted((a, name) for a, _, name in spans)


def _option_hits(segment: str, options: dict[str, set[str]]) -> dict[str, str]:
    """Option values a text segment names, for one product's options: "clicky",
    "rgb backlight", "size 10", "waterproof", "not waterproof", "no backlight"."""
    t = _norm(segment)
    found: dict[str, str] = {}
    for key, values in options.items():
        k = _norm(key).strip()
        for value in sorted(values, key=len, reverse=True):
            v = _norm(value).strip()
            if v in ("yes", "no", "none", "not resistant"):
                neg = re.search(rf"\b(no|not|non|without|isn't|not\s+\w+)[\s-]+{re.escape(k)}\b", t) or (v == "not resistant" and " not resistant " in t)
                pos = f" {k} " in t or re.search(rf"\b{re.escape(k.split()[0])}", t)
                if v in ("no", "none", "not resistant") and neg:
                    found[key] = value
                elif v == "yes" and pos and not neg:
                    found[key] = value
                continue
            if _has(t, v) or (len(v) > 3 and f" {v}s " in t):
                # A value that several keys share ("black" frame and lens colour) counts
                # only with its key next to it.
                shared = [other for other, vals in options.items() if other != key and value in vals]
                if shared and not re.search(rf"{re.escape(k)}\W+(?:\w+\W+)?{re.escape(v)}|{re.escape(v)}\W+(?:\w+\W+)?{re.escape(k)}", t):
                    continue
                found.setdefault(key, value)
                break
    return found


def product_options(product: Product) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for v in product.variants:
        for k, val in v.options.items():
            out.setdefault(k, set()).add(str(val))
    return out


_SPLIT_NEW = re.compile(
    r"\b(?:to|into|for|with|instead|should be|to be|i want|i'd like|i would like|would like|prefer|rather|but|->)\b|→|换成|改成|换为|改为|换个|换一个|想要|要"
)


# "... for the same one": the same variant again (τ-bench's stores accept it as a change).
SAME = "__same__"
_SAME = re.compile(r"\bsame (one|item|variant|options?|thing|kind)\b|\bidentical\b")


@dataclass
class ItemRequest:
    """One item the customer names: the product, what it is now (old option words),
    and what they want instead (new option words), when said."""

    product: str
    old: dict[str, str]
    new: dict[str, str]


def item_requests(
    text: str, names: list[str], options_of: dict[str, dict[str, set[str]]], aliases: dict[str, str] | None = None
) -> list[ItemRequest]:
    """The items a message names, in order, each with the option words said before
    ("the blue one") and after ("... for a red one in size L") a change word."""
    mentions = product_mentions(text, names, aliases)
    if not mentions:
        return []
    t = _norm(text)
    out = []
    for n, (pos, name) in enumerate(mentions):
        end = mentions[n + 1][0] if n + 1 < len(mentions) else len(t)
        # Words just before a name belong to it ("the blue t-shirt"): the segment of one
        # item ends where the next item's words begin (its last "and" or comma).
        prev_end = mentions[n - 1][0] + 1 if n else 0
        before = t[prev_end:pos]
        cut = max(before.rfind(" and "), before.rfind(" , "), before.rfind("和"), before.rfind("还有"))
        before = before[cut + 1:] if cut >= 0 and n else before[-40:]
        segment = t[pos:end]
        if n + 1 < len(mentions):
            cut = max(segment.rfind(" and "), segment.rfind(" , "), segment.rfind("和"), segment.rfind("还有"))
            if cut > 0:
                segment = segment[:cut]
        m = _SPLIT_NEW.search(segment)
        old_text, new_text = (segment[: m.start()], segment[m.end():]) if m else (segment, "")
        opts = options_of.get(name, {})
        new = _option_hits(new_text, opts)
        if not new and _SAME.search(new_text):
            new = {SAME: "yes"}
        out.append(ItemRequest(name, _option_hits(before + " " + old_text, opts), new))
    return out


def match_items(requests: list[ItemRequest], items: list[OrderItem]) -> list[OrderItem] | None:
    """Order items for the requests, one each, by product and the old option words;
    None when a request fits no item or several different ones."""
    chosen: list[OrderItem] = []
    used: list[int] = []
    for req in requests:
        fits = [i for i, it in enumerate(items) if it.name == req.product and i not in used]
        if req.old:
            narrowed = [i for i in fits if all(str(items[i].options.get(k)) == v for k, v in req.old.items())]
            fits = narrowed or fits
        distinct = {items[i].item_id for i in fits}
        if not fits or len(distinct) > 1:
            return None
        used.append(fits[0])
        chosen.append(items[fits[0]])
    return chosen


def choose_variant(product: Product, current: OrderItem, wanted: dict[str, str]) -> list[Variant]:
    """Available variants of ``product`` other than the current one that have every
    wanted option value; the closest to the current item first (fewest other changes).
    Several equally close ones mean the customer must say more."""
    if not wanted:
        return []
    if SAME in wanted:
        same = [v for v in product.variants if v.item_id == current.item_id and v.available]
        return same
    fits = [
        v for v in product.variants
        if v.available and v.item_id != current.item_id and all(str(v.options.get(k)) == val for k, val in wanted.items())
    ]

    def changes(v: Variant) -> int:
        return sum(1 for k, val in v.options.items() if k not in wanted and str(current.options.get(k)) != str(val))

    fits.sort(key=changes)
    if len(fits) > 1 and changes(fits[0]) < changes(fits[1]):
        return fits[:1]
    best = changes(fits[0]) if fits else 0
    return [v for v in fits if changes(v) == best]


def describe_options(options: dict[str, str]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in options.items() if k != SAME)


def item_name(item: OrderItem, language: str = "en") -> str:
    return item.name_en if language == "en" and item.name_en else item.name


def order_summary(order: Order, language: str = "en") -> str:
    return ", ".join(f"{item_name(it, language)} ({describe_options(it.options)})" for it in order.items)


def customer_name(c: Customer) -> str:
    return f"{c.first_name} {c.last_name}".strip()
