"""Entities of a customer message: validated rules, plus the learned tagger for open slots.

:class:`EntityExtractor` works on the *normalized* message (``services.nlu.text.normalize``:
NFKC, so full-width digits and ``￥`` are already ASCII digits and ``¥``); offsets are
``[start, end)`` into that text. Rule entities (``source="rule"``, confidence 1):

==============  ================================================  ==========================
type            matches                                           value
==============  ================================================  ==========================
``order_id``    demo order ids ``KF`` + 13 digits                 upper-cased ``KF2026...``
``phone``       CN mobiles (``+86``/``0086`` optional, spaces or  digits only ``13812345678``
                dashes between the 3-4-4 groups); landlines
                ``0xx-xxxxxxxx``
``email``       ``name@domain.tld``                               lower-cased
``amount``      an amount in yuan: ``¥12.90``, ``12,900元``,       cents ``"1290"``
                ``三百块``, ``两千五百元``, ``1.5万``, ``3块5``,
                ``RMB 20``, ``20 CNY``, ``20 yuan``
``amount_usd``  ``$12.99``, ``12.99 USD``, ``12 dollars``         cents ``"1299"``
``date``        see ``services.nlu.dates``                        ISO ``2026-11-22``
``time``        ``15:30``, ``下午3点``, ``3点半``, ``3pm``,         ``HH:MM`` (24 h); a bare
                ``3:30 pm``                                       ``1点``–``6点`` is p.m.
``address``     zh: 省/市/区/县/镇/路/街/号/弄/栋/楼/单元/室 parts  the text, spaces removed (zh)
                (two or more); en: ``88 Century Avenue, ...``     or collapsed (en)
``quantity``    ``3件``, ``两双``, ``2 pieces``, ``three pairs``   the number ``"3"``
==============  ================================================  ==========================

The currency is carried by the type (``amount`` is the store's currency, CNY; other
currencies are ``amount_<iso code>``), so ``value`` is always an integer number of cents,
as the proto documents. Where two rule matches overlap, the longer wins (then the order
of the table). Tagger spans (``source="tagger"``) are added where they overlap no rule
entity; their confidence is the lowest CRF marginal over the span's tokens.
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import TYPE_CHECKING

from services.nlu.dates import CHINESE_NUMERAL_CHARS, EN_NUMBER_WORDS, chinese_number, english_number, resolve_dates
from services.nlu.results import EntityMatch
from services.nlu.text import ORDER_ID

if TYPE_CHECKING:
    from services.nlu.slots import SlotTagger

__all__ = ["EntityExtractor", "chinese_number", "extract_rule_entities"]

_PRIORITY = ("order_id", "email", "phone", "amount", "date", "time", "address", "quantity")

# ------------------------------------------------------------------ phone, email

_MOBILE = re.compile(r"(?<![0-9A-Za-z+])(?:(?:\+|00)?86[\s-]?)?(1[3-9]\d)[\s-]?(\d{4})[\s-]?(\d{4})(?![0-9A-Za-z])")
_LANDLINE = re.compile(r"(?<![0-9A-Za-z])(0\d{2,3})-(\d{7,8})(?![0-9A-Za-z-])")
_EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}\.)+[A-Za-z]{2,24}(?![A-Za-z0-9-])")


def _phones(text: str) -> list[EntityMatch]:
    out = []
    for m in _MOBILE.finditer(text):
        out.append(EntityMatch("phone", m.group(0), "".join(m.groups()), m.start(), m.end()))
    for m in _LANDLINE.finditer(text):
        out.append(EntityMatch("phone", m.group(0), "".join(m.groups()), m.start(), m.end()))
    return out


def _emails(text: str) -> list[EntityMatch]:
    out = []
    for m in _EMAIL.finditer(text):
        local, _, domain = m.group(0).partition("@")
        if ".." in m.group(0) or local.endswith(".") or any(part.startswith("-") or part.endswith("-") for part in domain.split(".")):
            continue
        out.append(EntityMatch("email", m.group(0), m.group(0).lower(), m.start(), m.end()))
    return out


def _order_ids(text: str) -> list[EntityMatch]:
    return [EntityMatch("order_id", m.group(0), m.group(0).upper(), m.start(), m.end()) for m in ORDER_ID.finditer(text)]


# ------------------------------------------------------------------ amounts

_ZH_NUM = f"[{CHINESE_NUMERAL_CHARS}]+"
_ARABIC = r"\d{1,3}(?:,\d{3})+(?:\.\d{1,2})?|\d+(?:\.\d{1,2})?"
_NUMBER = rf"(?:(?:{_ARABIC})\s*[万千]?|{_ZH_NUM})"
_YUAN_AFTER = r"块钱|元钱|元整|元|块|圆|rmb\b|cny\b|yuan\b|kuai\b"
_USD_AFTER = r"美元|美金|usd\b|dollars?\b|bucks\b"
_AMOUNT = re.compile(
    rf"(?P<pre>[¥$]|rmb|cny|usd|us\$)\s*(?P<n1>{_ARABIC})(?:\s*(?P<big1>[万千]))?(?![\d.])(?:\s*(?:块钱|元|块))?"
    rf"|(?P<n2>{_NUMBER})\s*(?P<unit>{_YUAN_AFTER}|{_USD_AFTER})(?:(?P<jiao>[0-9一二两三四五六七八九])(?:毛|角)?(?![0-9{CHINESE_NUMERAL_CHARS}]))?"
    rf"|(?P<n3>{_NUMBER})\s*(?P<small>毛钱?|角钱?|分钱)",
    re.IGNORECASE,
)


def _decimal(number: str) -> Decimal | None:
    """``"12,900.5"`` -> 12900.5, ``"1.5万"`` -> 15000, ``"两千五"`` -> 2500."""
    number = number.replace(" ", "")
    scale = Decimal(1)
    if number and number[-1] in "万千" and re.search(r"\d", number):
        scale = Decimal(10_000 if number[-1] == "万" else 1000)
        number = number[:-1]
    if re.fullmatch(r"[\d,]+(?:\.\d+)?", number):
        try:
            return Decimal(number.replace(",", "")) * scale
        except InvalidOperation:
            return None
    value = chinese_number(number)
    return Decimal(value) * scale if value is not None else None


def _cents(amount: Decimal) -> str:
    return str(int((amount * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP)))


def _amounts(text: str) -> list[EntityMatch]:
    out = []
    for m in _AMOUNT.finditer(text):
        g = m.groupdict()
        if g["pre"]:
            amount = _decimal(g["n1"] + (g["big1"] or ""))
            currency = "usd" if g["pre"].lower() in ("$", "usd", "us$") else "cny"
        elif g["n2"]:
            amount = _decimal(g["n2"])
            currency = "usd" if re.fullmatch(_USD_AFTER, g["unit"], re.IGNORECASE) else "cny"
            if amount is not None and g["jiao"]:
                jiao = chinese_number(g["jiao"])
                amount += Decimal(jiao or 0) / 10
        else:
            amount = _decimal(g["n3"])
            if amount is not None:
                amount = amount / (100 if g["small"].startswith("分") else 10)
            currency = "cny"
        if amount is None or amount <= 0:
            continue
        kind = "amount" if currency == "cny" else f"amount_{currency}"
        out.append(EntityMatch(kind, m.group(0), _cents(amount), m.start(), m.end()))
    return out


# ------------------------------------------------------------------ time of day

_ZH_TIME = re.compile(
    rf"(?P<part>凌晨|早上|上午|中午|下午|傍晚|晚上|今晚|夜里)?\s*(?P<h>\d{{1,2}}|[{CHINESE_NUMERAL_CHARS}]{{1,3}})\s*[点時时](?:\s*(?P<half>半)|\s*(?P<m>\d{{1,2}}|[{CHINESE_NUMERAL_CHARS}]{{1,3}})\s*分?|(?P<q>一刻|三刻))?"
)
_CLOCK = re.compile(r"(?<![\d:])(?P<h>[01]?\d|2[0-3]):(?P<m>[0-5]\d)(?:\s*(?P<ap>[ap]\.?m\.?))?(?![\d:])", re.IGNORECASE)
_EN_TIME = re.compile(r"\b(?P<h>1[0-2]|0?[1-9])(?:\s*(?P<ap>[ap]\.?m)\b\.?|\s+o'clock\b)", re.IGNORECASE)


# A bare Chinese hour up to this one, with no 上午/凌晨..., is an afternoon hour: customers
# arranging a delivery or a call back mean 15:30 by "3点半", never 03:30.
BARE_HOURS_READ_AS_AFTERNOON = 6


def _hhmm(hour: int, minute: int) -> str | None:
    if 0 <= hour <= 24 and 0 <= minute < 60:
        return f"{hour % 24:02d}:{minute:02d}"
    return None


def _times(text: str) -> list[EntityMatch]:
    out = []
    for m in _ZH_TIME.finditer(text):
        hour = chinese_number(m.group("h"))
        if hour is None or hour > 24:
            continue
        minute = 30 if m.group("half") else (15 if m.group("q") == "一刻" else 45 if m.group("q") else 0)
        if m.group("m"):
            minute = chinese_number(m.group("m"))
            if minute is None:
                continue
        part = m.group("part") or ""
        if part in ("下午", "傍晚", "晚上", "今晚", "夜里") and hour < 12:
            hour += 12
        elif not part and 1 <= hour <= BARE_HOURS_READ_AS_AFTERNOON:
            hour += 12  # "3点半送" is half past three in the afternoon, not in the night
        elif part == "中午" and hour < 6:
            hour += 12
        value = _hhmm(hour, minute)
        if value and (part or m.group("half") or m.group("m") or m.group("q") or not re.search(r"[一二三四五六七八九十两]", m.group("h"))):
            out.append(EntityMatch("time", m.group(0).strip(), value, m.start() + (len(m.group(0)) - len(m.group(0).lstrip())), m.end()))
    for m in _CLOCK.finditer(text):
        hour, minute = int(m.group("h")), int(m.group("m"))
        ap = (m.group("ap") or "").lower()[:1]
        if ap == "p" and hour < 12:
            hour += 12
        elif ap == "a" and hour == 12:
            hour = 0
        value = _hhmm(hour, minute)
        if value:
            out.append(EntityMatch("time", m.group(0), value, m.start(), m.end()))
    for m in _EN_TIME.finditer(text):
        hour = int(m.group("h"))
        ap = (m.group("ap") or "").lower()[:1]
        if ap == "p" and hour < 12:
            hour += 12
        elif ap == "a" and hour == 12:
            hour = 0
        out.append(EntityMatch("time", m.group(0), f"{hour:02d}:00", m.start(), m.end()))
    return out


# ------------------------------------------------------------------ addresses

_HAN = "\u4e00-\u9fff"
_NUMERAL = rf"(?:\d+|[{CHINESE_NUMERAL_CHARS}]+)"
_ZH_ADDRESS = re.compile(
    rf"(?P<prov>[{_HAN}]{{2,8}}?(?:省|自治区|特别行政区))?"
    rf"(?:\s?(?P<city>[{_HAN}]{{2,8}}?市))?"
    rf"(?:\s?(?P<dist>[{_HAN}]{{1,8}}?(?:新区|区|县|旗)))?"
    rf"(?:\s?(?P<town>[{_HAN}]{{1,8}}?(?:镇|乡|街道)))?"
    rf"(?:\s?(?P<road>[{_HAN}\d]{{1,10}}?(?:大道|大街|路|街|巷|胡同|里)))?"
    rf"(?P<rest>(?:\s*(?:{_NUMERAL}|[A-Za-z]\d*)\s*(?:号院|号楼|号|弄|栋|幢|座|单元|层|楼|室|户))*)"
)
# Words that introduce an address: cut there ("我住在上海市..." -> "上海市...").
_ADDRESS_LEAD = re.compile(r".*(?:地址是|地址为|地址|住在|寄到|寄往|送到|送至|发到|发往|改到|改成|改为|换到|搬到|位于|在|到|是|为|往|至|去|从)")
_EN_STREET = (
    r"street|st|road|rd|avenue|ave|lane|ln|boulevard|blvd|drive|dr|way|court|ct|place|pl|terrace|highway|hwy"
)
# Words that are not part of a street name ("2 blue shirts on the road" is no address).
_EN_STOP = "the|a|an|on|in|at|to|of|for|and|or|my|your|our|is|was|it|this|that|by|with|from|days?|weeks?|items?|pieces?"
_EN_ADDRESS = re.compile(
    rf"(?:\b(?:apt|apartment|unit|suite|room|flat)\.?\s*#?\s*\w{{1,6}},?\s+)?"
    rf"\b\d{{1,5}}[A-Za-z]?\s+(?:(?!(?:{_EN_STOP})\b)[A-Za-z][A-Za-z'.-]*\s+){{1,4}}(?:{_EN_STREET})\b\.?"
    rf"(?:,?\s*(?:apt|apartment|unit|suite|room|flat|#)\.?\s*#?\s*\w{{1,6}})?"
    rf"(?:,\s*[A-Z][A-Za-z'.-]*(?:\s+[A-Z][A-Za-z'.-]*){{0,3}}){{0,3}}(?:,?\s*\d{{5,6}})?",
    re.IGNORECASE,
)


def _addresses(text: str) -> list[EntityMatch]:
    out = []
    for m in _ZH_ADDRESS.finditer(text):
        if m.end() == m.start():
            continue
        parts = [name for name in ("prov", "city", "dist", "town", "road") if m.group(name)]
        rest_parts = re.findall(r"号院|号楼|号|弄|栋|幢|座|单元|层|楼|室|户", m.group("rest") or "")
        if len(parts) + len(rest_parts) < 2 or not (parts and (len(parts) >= 2 or rest_parts)):
            continue
        start = m.start(parts[0])
        first = m.group(parts[0])
        lead = _ADDRESS_LEAD.match(first[:-1])  # never cut into the suffix (省/市/区/路...)
        if lead and len(first) - lead.end() >= 2:
            start += lead.end()
        elif lead:
            continue
        span = text[start : m.end()].rstrip()
        if len(span) < 4:
            continue
        out.append(EntityMatch("address", span, re.sub(r"\s+", "", span), start, start + len(span)))
    for m in _EN_ADDRESS.finditer(text):
        span = m.group(0).rstrip(" ,")
        out.append(EntityMatch("address", span, re.sub(r"\s+", " ", span), m.start(), m.start() + len(span)))
    return out


# ------------------------------------------------------------------ quantities, dates

_ZH_QUANTITY = re.compile(r"(?<![\d.])(?P<n>\d{1,3}|[一二两三四五六七八九十]{1,3})\s*(?P<u>件|双|套|台|条|瓶|盒|包|箱|份|支|部|只|袋|副|块(?!钱))(?!钱|元)")
_EN_COUNT = "|".join(w for w in EN_NUMBER_WORDS.split("|") if w not in ("a", "an"))  # "return an item" counts nothing
_EN_QUANTITY = re.compile(
    rf"\b(?P<n>\d{{1,3}}|{_EN_COUNT})\s+(?P<u>pieces?|items?|units?|pairs?|boxes|box|packs?|sets?|bottles?)\b", re.IGNORECASE
)


def _quantities(text: str) -> list[EntityMatch]:
    out = []
    for m in _ZH_QUANTITY.finditer(text):
        n = chinese_number(m.group("n"))
        if n:
            out.append(EntityMatch("quantity", m.group(0), str(n), m.start(), m.end()))
    for m in _EN_QUANTITY.finditer(text):
        n = english_number(m.group("n"))
        if n:
            out.append(EntityMatch("quantity", m.group(0), str(n), m.start(), m.end()))
    return out


def _dates(text: str, reference: datetime, language: str) -> list[EntityMatch]:
    return [EntityMatch("date", d.text, d.date.isoformat(), d.start, d.end) for d in resolve_dates(text, reference, language)]


def _resolve_overlaps(found: list[EntityMatch]) -> list[EntityMatch]:
    """Keep the longer of overlapping matches (ties: the order of ``_PRIORITY``), in text order."""

    def rank(e: EntityMatch) -> tuple:
        kind = "amount" if e.type.startswith("amount") else e.type
        return (-(e.end - e.start), _PRIORITY.index(kind) if kind in _PRIORITY else len(_PRIORITY), e.start)

    chosen: list[EntityMatch] = []
    for e in sorted(found, key=rank):
        if all(e.end <= c.start or c.end <= e.start for c in chosen):
            chosen.append(e)
    return sorted(chosen, key=lambda e: (e.start, e.end))


def extract_rule_entities(text: str, *, reference_time: datetime, language: str = "zh") -> list[EntityMatch]:
    """The validated rule entities of a normalized message, in text order, without overlaps."""
    found = _order_ids(text) + _emails(text) + _phones(text) + _amounts(text)
    found += _dates(text, reference_time, language) + _times(text) + _addresses(text) + _quantities(text)
    return _resolve_overlaps(found)


class EntityExtractor:
    """Rule entities plus, when a tagger is given, its open-slot spans (product, colour, size...)."""

    def __init__(self, tagger: SlotTagger | None = None, *, min_confidence: float = 0.5) -> None:
        self.tagger = tagger
        self.min_confidence = min_confidence

    def extract(self, text: str, *, reference_time: datetime, language: str = "zh") -> list[EntityMatch]:
        """Entities of the normalized ``text``; offsets index into it. Sorted by start."""
        entities = extract_rule_entities(text, reference_time=reference_time, language=language)
        if self.tagger is None or not text.strip():
            return entities
        from services.nlu.slots import tokenize

        tokens = tokenize(text, language)
        if not tokens:
            return entities
        for span in self.tagger.tag_spans([t for t, _, _ in tokens]):
            if span.confidence < self.min_confidence:
                continue
            start, end = tokens[span.start][1], tokens[span.end - 1][2]
            if any(start < e.end and e.start < end for e in entities):
                continue
            surface = text[start:end]
            value = surface.lower() if surface.isascii() else surface
            entities.append(EntityMatch(span.type, surface, value, start, end, round(span.confidence, 4), "tagger"))
        return sorted(entities, key=lambda e: (e.start, e.end))
