"""Cleaning and normalization of a customer message (and the names NLU has always imported from here).

``clean``      strips HTML (tags out, entities decoded, links kept as "text (url)"), drops invisible
               and control characters, caps repeated emoji and punctuation, tidies whitespace. Letters,
               digits, CJK characters and URLs are never dropped.
``normalize``  NFKC (full-width -> half-width), traditional -> simplified Chinese (OpenCC t2s, only when
               the text has traditional characters), colloquial -> standard wording from
               ``resources/colloquial.tsv`` (咋回事儿 -> 怎么回事, pls -> please), whitespace collapsed.

Offsets of PII spans and entities refer to the *normalized* text: mask after normalizing.

Language detection lives in ``services.nlu.language`` and PII masking in ``services.nlu.pii``; both are
re-exported here for existing callers.
"""

from __future__ import annotations

import html
import re
import threading
import unicodedata
from functools import lru_cache
from itertools import islice
from pathlib import Path
from typing import Any

import regex

from services.nlu.language import detect_language, identify_language
from services.nlu.pii import ORDER_ID, MaskedText, PiiMatch, mask_pii

__all__ = [
    "ORDER_ID",
    "MaskedText",
    "PiiMatch",
    "clean",
    "detect_language",
    "identify_language",
    "mask_pii",
    "normalize",
    "normalize_colloquial",
    "to_simplified",
]

RESOURCES = Path(__file__).with_name("resources")
MAX_REPEAT = 3  # of one emoji, or of one punctuation mark, in a row
MAX_EMOJI_RUN = 6  # emoji in a row, of any kind

# ---------------------------------------------------------------- cleaning

# Zero-width and formatting characters, bidi controls, soft hyphen, Unicode tag characters (which can
# smuggle invisible ASCII), C0/C1 controls other than tab and newlines. ZWJ (U+200D) is handled apart:
# it is kept inside emoji sequences only.
_INVISIBLE = regex.compile(
    r"[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180e\u200b\u200c\u200e\u200f\u202a-\u202e"
    r"\u2060-\u2064\u2066-\u206f\u3164\ufeff\uffa0\U000e0000-\U000e007f\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]"
    r"|(?<!\p{Extended_Pictographic}[\ufe0f\U0001f3fb-\U0001f3ff]?)\u200d|\u200d(?!\p{Extended_Pictographic})"
)
_HTML_HINT = re.compile(r"<[A-Za-z/!]|&(?:#\d+|#x[0-9a-fA-F]+|[A-Za-z]+);")
_HTML_DROP = re.compile(r"<(script|style|head|template)\b[^<>]*>.*?</\1\s*>|<!--.*?-->|<!DOCTYPE[^<>]*>", re.I | re.S)
_HTML_LINK = re.compile(r"<a\b[^<>]*?\bhref\s*=\s*[\"']?([^\"'\s<>]+)[\"']?[^<>]*>([^<]{0,500}?)</a\s*>", re.I)
_HTML_BREAK = re.compile(r"<(?:br|/p|/div|/li|/tr|/h[1-6]|/blockquote|hr)\b[^>]*>", re.I)
# Only real HTML elements: "<|im_start|>" or "<system>" are left for the injection screen to see.
_HTML_TAG = re.compile(
    r"</?(?:a|abbr|b|big|blockquote|body|br|center|code|col|colgroup|dd|del|div|dl|dt|em|font|form|h[1-6]|head|hr|"
    r"html|i|img|input|ins|kbd|label|li|link|mark|meta|ol|p|pre|q|s|small|span|strike|strong|sub|sup|table|tbody|td|"
    r"tfoot|th|thead|title|tr|tt|u|ul)\b[^<>]*/?>",
    re.I,
)
_EMOJI = (
    r"(?:\p{Regional_Indicator}{2}|\p{Extended_Pictographic}[\ufe0e\ufe0f\U0001f3fb-\U0001f3ff]*"
    r"(?:\u200d\p{Extended_Pictographic}[\ufe0e\ufe0f\U0001f3fb-\U0001f3ff]*)*)"
)
_EMOJI_REPEAT = regex.compile(rf"(?P<e>{_EMOJI})(?:[ \t]*(?P=e)(?![\ufe0e\ufe0f\U0001f3fb-\U0001f3ff\u200d])){{{MAX_REPEAT},}}")
_EMOJI_RUN = regex.compile(rf"{_EMOJI}(?:[ \t]*{_EMOJI}){{{MAX_EMOJI_RUN},}}")
_EMOJI_ONE = regex.compile(_EMOJI)
# Runs of one punctuation family (full- and half-width together), and of mixed ?/! marks.
_PUNCT_FAMILIES = ("!！", "?？", ".", "。", ",，", "、", "~～", "…", "-", "—", "=", "*", "#", "_", "+", "^", ";；")
_PUNCT_REPEAT = re.compile(
    "|".join(f"[{re.escape(f)}]{{{MAX_REPEAT + 1},}}" for f in _PUNCT_FAMILIES) + f"|[!?！？]{{{MAX_REPEAT + 1},}}"
)
_HSPACE = re.compile(r"[^\S\n]+")
_BLANK_LINES = re.compile(r"\n(?:[^\S\n]*\n)+")


def _strip_html(text: str) -> str:
    if not _HTML_HINT.search(text):
        return text
    text = _HTML_DROP.sub(" ", text)

    def link(m: re.Match[str]) -> str:
        url, label = m.group(1), _HTML_TAG.sub("", m.group(2)).strip()
        if not label or label == url:
            return url
        return f"{label} ({url})"

    text = _HTML_LINK.sub(link, text)
    text = _HTML_BREAK.sub("\n", text)
    text = _HTML_TAG.sub(" ", text)
    return html.unescape(text)


def _cap_emoji_run(m: regex.Match[str]) -> str:
    return "".join(e.group(0) for e in islice(_EMOJI_ONE.finditer(m.group(0)), MAX_EMOJI_RUN))


def clean(text: str) -> str:
    """Noise out, meaning kept: HTML, invisible characters, emoji spam, repeated punctuation, spacing.

    Lines are kept (a pasted address may span several); blank lines collapse to one line break.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _strip_html(text)
    text = _INVISIBLE.sub("", text)
    if not text.isascii():
        text = _EMOJI_REPEAT.sub(lambda m: m.group("e") * MAX_REPEAT, text)
        text = _EMOJI_RUN.sub(_cap_emoji_run, text)
    text = _PUNCT_REPEAT.sub(lambda m: m.group(0)[:MAX_REPEAT], text)
    text = _HSPACE.sub(" ", text)
    text = _BLANK_LINES.sub("\n", text)
    return "\n".join(line.strip() for line in text.split("\n")).strip()


# ---------------------------------------------------------------- normalization

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_SPACES = re.compile(r"\s+")
_WORD_CHAR = re.compile(r"[A-Za-z0-9]")


@lru_cache(maxsize=1)
def _traditional_chars() -> frozenset[str]:
    """Characters OpenCC's t2s tables convert: text without any of them needs no conversion."""
    import opencc

    table = Path(opencc.__file__).with_name("dictionary") / "TSCharacters.txt"
    with table.open(encoding="utf-8") as f:
        return frozenset(line.split("\t", 1)[0] for line in f if "\t" in line)


_converter: Any = None
_converter_lock = threading.Lock()


def to_simplified(text: str) -> str:
    """Traditional -> simplified Chinese (OpenCC t2s); text without traditional characters is returned as is."""
    global _converter
    traditional = _traditional_chars()
    if not any(c in traditional for c in text):
        return text
    if _converter is None:
        with _converter_lock:
            if _converter is None:
                import opencc

                _converter = opencc.OpenCC("t2s")
    return _converter.convert(text)


class ColloquialTable:
    """Colloquial -> standard wording, longest match first (see ``resources/colloquial.tsv``)."""

    def __init__(self, entries: dict[str, str]) -> None:
        self.entries = {k.lower() if k.isascii() else k: v for k, v in entries.items()}
        cjk = sorted((k for k in entries if not k.isascii()), key=len, reverse=True)
        ascii_ = sorted((k for k in entries if k.isascii()), key=len, reverse=True)
        self._cjk = re.compile("|".join(map(re.escape, cjk))) if cjk else None
        self._ascii = (
            re.compile(r"(?<![\w@/'-])(?<!\w\.)(?:" + "|".join(map(re.escape, ascii_)) + r")(?![\w@/'-])(?!\.\w)", re.I)
            if ascii_
            else None
        )

    @classmethod
    def load(cls, path: str | Path) -> ColloquialTable:
        entries: dict[str, str] = {}
        for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            parts = line.split("\t")
            if len(parts) != 2 or not parts[0].strip() or not parts[1].strip():
                raise ValueError(f"{path}:{number}: expected '<colloquial>\\t<standard>'")
            entries[parts[0].strip()] = parts[1].strip()
        return cls(entries)

    def _ascii_replacement(self, m: re.Match[str]) -> str:
        word = m.group(0)
        standard = self.entries[word.lower()]
        if len(word) > 1 and word.isupper():  # PLS -> PLEASE
            return standard.upper()
        if word[0].isupper():  # Pls -> Please
            return standard[0].upper() + standard[1:]
        return standard

    def apply(self, text: str) -> str:
        if self._cjk is not None and _CJK.search(text):
            text = self._cjk.sub(lambda m: self.entries[m.group(0)], text)
        if self._ascii is not None and _WORD_CHAR.search(text):
            text = self._ascii.sub(self._ascii_replacement, text)
        return text


@lru_cache(maxsize=1)
def colloquial_table() -> ColloquialTable:
    return ColloquialTable.load(RESOURCES / "colloquial.tsv")


def normalize_colloquial(text: str) -> str:
    """咋回事儿 -> 怎么回事, 木有 -> 没有, pls -> please, u -> you (whole words only)."""
    return colloquial_table().apply(text)


def normalize(text: str) -> str:
    """NFKC, traditional -> simplified, colloquial -> standard, whitespace collapsed to single spaces.

    NFKC turns full-width letters, digits and the marks ，！？：；（） into their ASCII forms; 。、《》【】“”
    have no compatibility form and stay. Invisible characters go first, so "忽\u200b略" reads as 忽略.
    """
    text = _INVISIBLE.sub("", text)
    text = unicodedata.normalize("NFKC", text)
    if _CJK.search(text):
        text = to_simplified(text)
    text = normalize_colloquial(text)
    return _SPACES.sub(" ", text).strip()
