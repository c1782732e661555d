"""Preprocessing of a customer message: normalization, language, PII masking.

The skeleton's rules are deliberately small; they keep personal data out of
logs and prompts from the first day.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_LATIN = re.compile(r"[A-Za-z]")
_SPACES = re.compile(r"\s+")

# Order ids of the demo store: "KF" + 13 digits (date + sequence).
ORDER_ID = re.compile(r"\bKF\d{13}\b", re.IGNORECASE)
_PII_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("email", re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")),
    ("id_card", re.compile(r"(?<!\d)\d{17}[\dXx](?!\d)")),
    ("bank_card", re.compile(r"(?<!\d)\d{16,19}(?!\d)")),
    ("phone", re.compile(r"(?<!\d)(?:\+?86[- ]?)?1[3-9]\d{9}(?!\d)")),
]


def normalize(text: str) -> str:
    """NFKC (full-width → half-width letters, digits and punctuation), trimmed, spaces collapsed."""
    text = unicodedata.normalize("NFKC", text)
    return _SPACES.sub(" ", text).strip()


def detect_language(text: str) -> str:
    """"zh" when the message has Chinese characters in a fair share, else "en"."""
    cjk = len(_CJK.findall(text))
    latin = len(_LATIN.findall(text))
    if cjk and cjk * 3 >= latin:
        return "zh"
    return "en"


@dataclass
class PiiMatch:
    type: str
    placeholder: str
    start: int
    end: int
    value: str


@dataclass
class MaskedText:
    text: str
    spans: list[PiiMatch] = field(default_factory=list)

    def unmask(self) -> str:
        out = self.text
        for span in self.spans:
            out = out.replace(span.placeholder, span.value, 1)
        return out


def mask_pii(text: str) -> MaskedText:
    """Replace personal data with numbered placeholders such as ``[PHONE_1]``."""
    found: list[tuple[int, int, str]] = []
    for kind, pattern in _PII_PATTERNS:
        for m in pattern.finditer(text):
            if ORDER_ID.fullmatch(text[max(0, m.start() - 2) : m.end()]):
                continue  # the digits of an order id are not personal data
            if any(s < m.end() and m.start() < e for s, e, _ in found):
                continue
            found.append((m.start(), m.end(), kind))
    found.sort()
    counters: dict[str, int] = {}
    spans: list[PiiMatch] = []
    pieces: list[str] = []
    last = 0
    for start, end, kind in found:
        counters[kind] = counters.get(kind, 0) + 1
        placeholder = f"[{kind.upper()}_{counters[kind]}]"
        spans.append(PiiMatch(kind, placeholder, start, end, text[start:end]))
        pieces += [text[last:start], placeholder]
        last = end
    pieces.append(text[last:])
    return MaskedText("".join(pieces), spans)
