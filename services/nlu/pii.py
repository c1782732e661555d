"""Personal data in customer messages: detection with validation, and reversible masking.

Detectors (each validates what its pattern finds, so lookalikes are left alone):

* ``phone``      Chinese mobile numbers (``1[3-9]`` + 9 digits, optional ``+86``/``0086``, groups 3-4-4
                 split by spaces or dashes) and landlines written with an area code (``010-12345678``).
* ``email``      e-mail addresses.
* ``id_card``    resident ID numbers: 18 characters, province code, plausible birth date and the
                 ISO 7064 MOD 11-2 check character; the old 15-digit format only right after a word
                 such as 身份证 / "ID card" (bare 15-digit numbers are too often parcel tracking numbers).
* ``bank_card``  13-19 digits (optionally in groups of four) with a card-network prefix and a valid
                 Luhn check digit.
* ``address``    Chinese postal addresses (province / city / district / street / road / number /
                 building / room chains) and English street addresses ("1200 Market Street, Apt 5, ...").

Order ids of the demo store (``ORDER_ID``: "KF" + 13 digits) are business data, never PII.

``mask_pii`` swaps every finding for a numbered placeholder (``[PHONE_1]``, ``[EMAIL_1]``,
``[ID_CARD_1]``, ``[BANK_CARD_1]``, ``[ADDRESS_1]``); the same value gets the same placeholder, and
``MaskedText.unmask`` puts the values back into the masked text or into any other text that repeats
the placeholders (a model's reply, say). ``PiiLogFilter`` masks log records the same way.
"""

from __future__ import annotations

import datetime as _dt
import logging
import re
from dataclasses import dataclass, field
from typing import Callable, Iterable

# Order ids of the demo store: "KF" + 13 digits (date + sequence). Not personal data.
# No \b at the start: in "订单KF2026110100299" the Chinese character before K is a word character.
ORDER_ID = re.compile(r"(?<![A-Za-z0-9])KF\d{13}(?!\d)", re.IGNORECASE)

PII_TYPES = ("email", "id_card", "bank_card", "phone", "address")  # also the precedence on overlaps

# ---------------------------------------------------------------- validators


_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"
# First two digits of a resident ID: the province-level division.
_ID_PROVINCES = frozenset(
    "11 12 13 14 15 21 22 23 31 32 33 34 35 36 37 41 42 43 44 45 46 50 51 52 53 54 61 62 63 64 65 71 81 82 83".split()
)


def id_check_char(first17: str) -> str:
    """The ISO 7064 MOD 11-2 check character of the first 17 digits of a resident ID."""
    return _ID_CHECK[sum(int(d) * w for d, w in zip(first17, _ID_WEIGHTS, strict=True)) % 11]


def _plausible_birth(year: int, month: int, day: int) -> bool:
    try:
        born = _dt.date(year, month, day)
    except ValueError:
        return False
    return _dt.date(1900, 1, 1) <= born <= _dt.date.today()


def valid_resident_id(number: str) -> bool:
    """True for a well-formed Chinese resident ID number (18 characters, or the old 15-digit form).

    18 characters: province code, a real birth date between 1900 and today, and the check character.
    15 digits (issued before 1999, no check character): province code and a real 19YY birth date.
    Spaces are ignored.
    """
    n = number.replace(" ", "").upper()
    if len(n) == 18 and n[:17].isdigit() and (n[17].isdigit() or n[17] == "X"):
        return (
            n[:2] in _ID_PROVINCES
            and _plausible_birth(int(n[6:10]), int(n[10:12]), int(n[12:14]))
            and id_check_char(n[:17]) == n[17]
        )
    if len(n) == 15 and n.isdigit():
        return n[:2] in _ID_PROVINCES and _plausible_birth(1900 + int(n[6:8]), int(n[8:10]), int(n[10:12]))
    return False


def luhn_valid(number: str) -> bool:
    """The Luhn (mod 10) check used by payment cards; spaces and dashes are ignored."""
    digits = [int(c) for c in number if c.isdigit()]
    if len(digits) < 2:
        return False
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _card_network_ok(digits: str) -> bool:
    """A card-network prefix fits the length: UnionPay/Visa/Mastercard/... 16-19 digits, Amex 15,
    Diners 14, old Visa 13. Keeps phone numbers, tracking numbers and ids out of the bank cards."""
    n = len(digits)
    if 16 <= n <= 19:
        return digits[0] in "234569"
    if n == 15:
        return digits[:2] in ("34", "37")
    if n == 14:
        return digits[:2] in ("30", "36", "38")
    if n == 13:
        return digits[0] == "4"
    return False


def valid_bank_card(number: str) -> bool:
    """A plausible payment card number: 13-19 digits, a card-network prefix, a valid Luhn digit."""
    digits = "".join(c for c in number if c.isdigit())
    return _card_network_ok(digits) and luhn_valid(digits)


def valid_mobile(number: str) -> bool:
    """A Chinese mobile number (optionally with +86 / 0086 and separators)."""
    digits = "".join(c for c in number if c.isdigit())
    if digits.startswith("0086"):
        digits = digits[4:]
    elif digits.startswith("86") and len(digits) == 13:
        digits = digits[2:]
    return len(digits) == 11 and digits[0] == "1" and digits[1] in "3456789"


# ---------------------------------------------------------------- patterns

_EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@"
    r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*\.[A-Za-z]{2,24}"
    r"(?![A-Za-z0-9-])"
)
_MOBILE = re.compile(r"(?<![\d+])(?:(?:\+|00)86[ -]?)?1[3-9]\d(?:[ -]?\d{4}){2}(?!\d)")
_LANDLINE = re.compile(r"(?<![\d-])(?:\(0\d{2,3}\)[ -]?|0\d{2,3}-)[2-9]\d{6,7}(?![\d-])")
_ID18 = re.compile(r"(?<![\d])\d{6} ?\d{8} ?\d{3}[\dXx](?![\dA-Za-z])")
_ID15 = re.compile(r"(?:身份证(?:号码|号)?|证件号(?:码)?|\bID(?: card)?(?: number| no\.?)?)\D{0,4}?(?<!\d)(\d{15})(?!\d)", re.I)
_CARD = re.compile(r"(?<![\d-])(?:\d{13,19}|\d{4}(?:[ -]\d{4}){2,3}(?:[ -]\d{1,3})?|\d{4}[ -]\d{6}[ -]\d{4,5})(?![\d])")

# Chinese addresses: a chain of adjacent components, at least two, at least one finer than a district.
_NAME = r"[^\W\d_的了在是我你他她它们把给从往去寄送住改为与及或请帮要想吗呢吧啊呀哦嗯址到]"
_PROVINCES = (
    "北京|天津|上海|重庆|河北|山西|辽宁|吉林|黑龙江|江苏|浙江|安徽|福建|江西|山东|河南|湖北|湖南|广东|海南|四川|贵州|云南|"
    "陕西|甘肃|青海|台湾|内蒙古|广西|西藏|宁夏|新疆|香港|澳门"
)
_ZH_COMPONENT = re.compile(
    rf"(?P<prov>(?:{_PROVINCES})(?:壮族自治区|回族自治区|维吾尔自治区|自治区|特别行政区|省|市)?)"
    rf"|(?P<city>{_NAME}{{1,6}}?(?:自治州|地区|市|盟))"
    rf"|(?P<dist>{_NAME}{{1,6}}?(?:自治县|新区|区|县|旗))"
    rf"|(?P<town>{_NAME}{{1,6}}?(?:街道|镇|乡))"
    rf"|(?P<road>{_NAME}{{1,8}}?(?:大道|大街|胡同|路|街|巷))"
    rf"|(?P<place>{_NAME}{{1,10}}?(?:小区|花园|家园|新村|公寓|大厦|广场|中心|大楼|写字楼|公馆|园区|社区|苑|城|村))"
    r"|(?P<number>\d+(?:-\d+){0,2}(?:号院|号楼|号|弄|支弄|栋|幢|座|单元|层|楼|室|房|户)|\d+(?:-\d+){1,2}|[A-Za-z]\d{0,3}(?:座|栋|区))"
)
_ZH_GAP = re.compile(r"[ ,]{0,2}")
_ZH_COARSE = frozenset({"prov", "city", "dist"})
_ZH_ADDRESS_HINT = re.compile(r"[路街巷弄号楼室区县市省镇乡村苑城栋幢座道]")

_EN_NOT_NAME = r"(?!(?:the|a|an|my|your|our|their|his|her|on|in|of|for|to|is|are|was|and|or|at|by|with|from|this|that|it|more|items?|orders?|days?|hours?|weeks?|times?)\b)"
_EN_WORD = rf"{_EN_NOT_NAME}[A-Za-z][A-Za-z'.-]*"
_EN_STREET = re.compile(
    r"(?<![\w-])(?:\d{1,6}[A-Za-z]?|P\.?O\.? Box \d+)"
    rf"(?:[ ]+{_EN_WORD}){{1,4}}?[ ]+"
    r"(?:(?i:street|st\.?|avenue|ave\.?|road|rd\.?|boulevard|blvd\.?|highway|hwy\.?|parkway|pkwy\.?)"
    r"|(?:Lane|Ln\.?|Drive|Dr\.?|Court|Ct\.?|Way|Place|Pl\.?|Square|Sq\.?|Terrace|Close|Crescent|Circle|Alley))"
    r"(?![A-Za-z])"
    r"(?:,?[ ]+(?i:apt\.?|apartment|suite|ste\.?|unit|room|rm\.?|floor|fl\.?|#)[ ]*#?[A-Za-z0-9-]+)?"
    r"(?:,[ ]*(?!(?:Thanks|Thank|Please|Pls|Hi|Hello|I|The|And|But|My|It)\b)[A-Z][a-z]+(?:[ ][A-Z][a-z]+){0,2})?"
    r"(?:,?[ ]+[A-Z]{2}[ ]+\d{5}(?:-\d{4})?)?"
)
_EN_ADDRESS_HINT = re.compile(r"\d[A-Za-z]? +[A-Za-z]|P\.?O\.? Box", re.I)


# ---------------------------------------------------------------- detection


@dataclass
class PiiMatch:
    """One piece of personal data: its type, its placeholder, its offsets in the scanned text, its value.

    ``value`` is left out of ``repr`` so that logging a match does not leak it.
    """

    type: str
    placeholder: str
    start: int
    end: int
    value: str = field(repr=False)


_PLACEHOLDER = re.compile(r"\[(?:PHONE|EMAIL|ID_CARD|BANK_CARD|ADDRESS)_\d+\]")


@dataclass
class MaskedText:
    """Text with personal data replaced by placeholders, and the spans needed to put it back.

    ``spans`` refer to offsets in the text that was masked (for the NLU pipeline: the normalized text).
    """

    text: str
    spans: list[PiiMatch] = field(default_factory=list)

    @property
    def values(self) -> dict[str, str]:
        """Placeholder -> original value."""
        return {s.placeholder: s.value for s in self.spans}

    def unmask(self, text: str | None = None) -> str:
        """Put the original values back: into ``text`` (a reply that repeats placeholders), or by
        default into the masked text itself, which restores the input exactly. Placeholders this
        masking did not make are left as they are."""
        values = self.values
        source = self.text if text is None else text
        if not values:
            return source
        return _PLACEHOLDER.sub(lambda m: values.get(m.group(0), m.group(0)), source)


Candidate = tuple[int, int, str]  # start, end, type
Detector = Callable[[str], Iterable[Candidate]]


def _emails(text: str) -> Iterable[Candidate]:
    if "@" in text:
        for m in _EMAIL.finditer(text):
            yield m.start(), m.end(), "email"


def _id_cards(text: str) -> Iterable[Candidate]:
    for m in _ID18.finditer(text):
        if valid_resident_id(m.group(0)):
            yield m.start(), m.end(), "id_card"
    for m in _ID15.finditer(text):
        if valid_resident_id(m.group(1)):
            yield m.start(1), m.end(1), "id_card"


def _bank_cards(text: str) -> Iterable[Candidate]:
    for m in _CARD.finditer(text):
        if valid_bank_card(m.group(0)):
            yield m.start(), m.end(), "bank_card"


def _phones(text: str) -> Iterable[Candidate]:
    for m in _MOBILE.finditer(text):
        if valid_mobile(m.group(0)):
            yield m.start(), m.end(), "phone"
    for m in _LANDLINE.finditer(text):
        yield m.start(), m.end(), "phone"


def _zh_addresses(text: str) -> Iterable[Candidate]:
    if not _ZH_ADDRESS_HINT.search(text):
        return
    chain: list[re.Match[str]] = []

    def finish() -> Iterable[Candidate]:
        if len(chain) >= 2 and any(m.lastgroup not in _ZH_COARSE for m in chain):
            yield chain[0].start(), chain[-1].end(), "address"

    pos = 0
    while pos < len(text):
        m = _ZH_COMPONENT.search(text, pos)
        if m is None:
            break
        if chain:
            gap = _ZH_GAP.match(text, chain[-1].end())
            if gap is None or gap.end() != m.start():
                yield from finish()
                chain = []
        chain.append(m)
        pos = m.end()
    yield from finish()


def _en_addresses(text: str) -> Iterable[Candidate]:
    if _EN_ADDRESS_HINT.search(text):
        for m in _EN_STREET.finditer(text):
            yield m.start(), m.end(), "address"


DETECTORS: tuple[Detector, ...] = (_emails, _id_cards, _bank_cards, _phones, _zh_addresses, _en_addresses)
_PRECEDENCE = {kind: i for i, kind in enumerate(PII_TYPES)}


def find_pii(text: str) -> list[Candidate]:
    """Validated findings as (start, end, type), sorted, without overlaps and outside order ids.

    On overlap the more specific type wins (email > id_card > bank_card > phone > address), then the
    longer finding.
    """
    reserved = [(m.start(), m.end()) for m in ORDER_ID.finditer(text)]
    candidates = [c for detect in DETECTORS for c in detect(text)]
    candidates.sort(key=lambda c: (_PRECEDENCE[c[2]], c[0] - c[1], c[0]))
    taken: list[tuple[int, int]] = list(reserved)
    kept: list[Candidate] = []
    for start, end, kind in candidates:
        if any(s < end and start < e for s, e in taken):
            continue
        taken.append((start, end))
        kept.append((start, end, kind))
    kept.sort()
    return kept


def mask_pii(text: str) -> MaskedText:
    """Replace personal data with numbered placeholders such as ``[PHONE_1]``.

    Numbers count per type in order of appearance; a value seen before reuses its placeholder.
    Placeholders that already occur literally in ``text`` are skipped, so ``unmask()`` is exact.
    """
    found = find_pii(text)
    if not found:
        return MaskedText(text, [])
    counters: dict[str, int] = {}
    assigned: dict[tuple[str, str], str] = {}
    spans: list[PiiMatch] = []
    pieces: list[str] = []
    last = 0
    for start, end, kind in found:
        value = text[start:end]
        placeholder = assigned.get((kind, value))
        if placeholder is None:
            while True:
                counters[kind] = counters.get(kind, 0) + 1
                placeholder = f"[{kind.upper()}_{counters[kind]}]"
                if placeholder not in text:
                    break
            assigned[(kind, value)] = placeholder
        spans.append(PiiMatch(kind, placeholder, start, end, value))
        pieces += [text[last:start], placeholder]
        last = end
    pieces.append(text[last:])
    return MaskedText("".join(pieces), spans)


def redact(text: str) -> str:
    """The masked form of ``text`` alone (for logs, traces, error messages)."""
    return mask_pii(text).text


# ---------------------------------------------------------------- logging


class PiiLogFilter(logging.Filter):
    """Masks personal data in log records: the message after %-formatting, and exception text.

    Attach it to handlers (see ``install_pii_log_filter``): a filter on a logger does not see the
    records that its child loggers propagate. It never drops a record.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: let logging report it as usual
            return True
        masked = redact(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def install_pii_log_filter(logger: logging.Logger | None = None) -> PiiLogFilter:
    """Add one ``PiiLogFilter`` to every handler of ``logger`` (default: the root logger).

    Idempotent; handlers added later need another call.
    """
    target = logger or logging.getLogger()
    shared = PiiLogFilter()
    for handler in target.handlers:
        if not any(isinstance(f, PiiLogFilter) for f in handler.filters):
            handler.addFilter(shared)
    return shared
