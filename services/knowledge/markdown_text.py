"""Reading an article body as light Markdown, in blocks and sentences (chunking.py packs
them into passages). Plain text is Markdown without markup:

* ``#``-headings are blocks of their own; fenced code blocks (```` ``` ```` / ``~~~``)
  are kept verbatim, without the fence lines.
* Blank lines separate paragraphs. Inside a paragraph, single line breaks are soft
  wraps (joined with a space between Latin text, with nothing next to Chinese)
  except before a list item (``-``, ``*``, ``+``, ``•``, ``1.``, ``1)``, ``1、``,
  ``（1）``, ``一、``) or a table row (``|``), which start a new sentence. Blockquote
  markers and horizontal rules are dropped.
* Sentences end at ``。｡！？；…`` (``！？；。`` also in their ASCII forms ``!?;.``
  right after a Chinese character; ``．`` unless a digit follows) and at English
  ``. ! ?`` followed by a space, a Chinese character or the end. Closing quotes and
  brackets after the end stay with the sentence. A ``.`` does not end a sentence inside
  URLs, e-mail addresses or numbers (``3.5``), after titles and abbreviations (``Mr.``,
  ``Dr.``, ``e.g.``, ``i.e.``, ``approx.``, initials ``J.``, and ``No.`` / ``p.`` /
  ``fig.`` before a number), nor when the next word starts with a lowercase letter.

Whitespace is normalised (runs become one space, spaces between two Chinese
characters are removed).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# Han ideographs, CJK symbols and punctuation, full-width forms, kana: next to these
# no space is needed (or wanted) when joining pieces of text.
_CJK_RANGES = (
    (0x2E80, 0x2FDF),  # radicals
    (0x3000, 0x303F),  # CJK symbols and punctuation
    (0x3040, 0x30FF),  # kana
    (0x3400, 0x4DBF),
    (0x4E00, 0x9FFF),
    (0xF900, 0xFAFF),
    (0xFE30, 0xFE4F),  # CJK compatibility forms
    (0xFF00, 0xFFEF),  # half- and full-width forms
    (0x20000, 0x2FFFF),
)

_ZH_END = "。｡！？；…⋯"
_ASCII_AFTER_ZH_END = "!?;"
_EN_END = ".!?"
_CLOSERS = "\"'”’」』）)】]》〉»›"
_OPENERS = "\"'“‘「『（(【[《〈«‹"
_ENDS = _ZH_END + _EN_END + _ASCII_AFTER_ZH_END + "．"
_END_RUN = _ZH_END + _EN_END + "．"
CLAUSE_MARKS = "，、；：,;:"

# Never end a sentence after these (lower case, without the final dot).
_ABBREVIATIONS = frozenset(
    "mr mrs ms mx dr prof rev hon st mt sr jr e.g i.e cf vs viz approx appx ca est dept attn "
    "a.k.a incl excl govt univ".split()
)
# ... nor after these when a number follows ("No. 5", "p. 12", "Fig. 3").
_NUMBER_ABBREVIATIONS = frozenset("no nos nr p pp fig figs vol vols art sec ch ext tel ref refs para".split())

_URL = re.compile(r"(?:https?://|ftp://|www\.)[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+", re.IGNORECASE)
_EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}")
_URL_TRAILING = ".,;:!?'\")]"

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$")
_RULE = re.compile(r"^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$")
_TABLE_SEPARATOR = re.compile(r"^\s*\|?\s*:?-{2,}:?\s*(?:\|\s*:?-{2,}:?\s*)*\|?\s*$")
_QUOTE = re.compile(r"^\s*>\s?")
_LIST_ITEM = re.compile(
    r"^\s*((?:[-*+•·])|(?:\d{1,3}[.)、])|(?:[（(]\d{1,3}[)）])|(?:[一二三四五六七八九十]{1,3}、))\s*(?=\S)"
)
_SPACES = re.compile(r"\s+")
_CJK_SPACE = re.compile(r"(?<=[\u2e80-\u303f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef])\s+"
                        r"(?=[\u2e80-\u303f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef])")
_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"), None)


def is_cjk(ch: str) -> bool:
    o = ord(ch)
    return any(lo <= o <= hi for lo, hi in _CJK_RANGES)


def is_word(ch: str) -> bool:
    """Part of a Latin word or a number (which must not be cut through)."""
    return ch.isalnum() and not is_cjk(ch)


def join_text(left: str, right: str) -> str:
    """Join two pieces of running text: a space between Latin text, none next to Chinese.

    A piece that starts with a line break (the first sentence of a list item or a
    table row) keeps it, except at the start of a chunk.
    """
    if not left:
        return right.lstrip("\n")
    if not right:
        return left
    if right.startswith("\n"):
        return left + right
    if is_cjk(left[-1]) or is_cjk(right[0]):
        return left + right
    return left + " " + right


def normalise_inline(text: str) -> str:
    text = _SPACES.sub(" ", text.translate(_INVISIBLE)).strip()
    return _CJK_SPACE.sub("", text)


# --- sentences -------------------------------------------------------------------------------------------------


def protected_spans(text: str) -> list[bool]:
    """True at every position inside a URL or an e-mail address."""
    mask = [False] * len(text)
    for pattern in (_URL, _EMAIL):
        for m in pattern.finditer(text):
            end = m.end()
            while end > m.start() and text[end - 1] in _URL_TRAILING:
                end -= 1
            for i in range(m.start(), end):
                mask[i] = True
    return mask


def _ends_at_dot(text: str, dot: int, after: int) -> bool:
    """Whether the ``.`` at ``dot`` (followed by closers up to ``after``) ends a sentence."""
    if after >= len(text):
        return True
    nxt = text[after]
    if is_cjk(nxt):
        return not (dot > 0 and text[dot - 1].isdigit() and nxt in "０１２３４５６７８９")
    if not nxt.isspace():
        return False  # 3.5, example.com, e.g (inner dot), a.m
    start = dot
    while start > 0 and not text[start - 1].isspace():
        start -= 1
    token = text[start:dot].lstrip(_OPENERS).lower()
    j = after
    while j < len(text) and (text[j].isspace() or text[j] in _OPENERS):
        j += 1
    following = text[j] if j < len(text) else ""
    if token in _ABBREVIATIONS:
        return False
    if token in _NUMBER_ABBREVIATIONS and following.isdigit():
        return False
    if len(token) == 1 and token.isalpha() and text[dot - 1].isupper():
        return False  # an initial: "J. Smith"
    if following.islower():
        return False  # "approx. five days", "Wait... what"
    return True


def _split_unit(text: str) -> list[str]:
    """Sentences of one normalised line of running text."""
    if not text:
        return []
    protected = protected_spans(text)
    sentences: list[str] = []
    start = 0
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if protected[i] or ch not in _ENDS:
            i += 1
            continue
        j = i + 1
        while j < n and text[j] in _END_RUN and not protected[j]:
            j += 1  # "?!", "……", "..."
        while j < n and text[j] in _CLOSERS:
            j += 1
        prev = text[i - 1] if i > 0 else ""
        if ch in _ZH_END:
            ends = True
        elif ch == "．":
            ends = not (j < n and (text[j].isdigit()))
        elif ch == ".":
            ends = _ends_at_dot(text, i, j) or (bool(prev) and is_cjk(prev) and not (j < n and text[j].isdigit()))
        elif ch == ";":
            ends = bool(prev) and is_cjk(prev)
        else:  # ! ?
            ends = j >= n or text[j].isspace() or is_cjk(text[j]) or (bool(prev) and is_cjk(prev))
        if ends:
            sentence = text[start:j].strip()
            if sentence:
                sentences.append(sentence)
            start = j
        i = j
    rest = text[start:].strip()
    if rest:
        sentences.append(rest)
    return sentences


# --- blocks ----------------------------------------------------------------------------------------------------


@dataclass
class _Unit:
    """A piece of running text that starts a new sentence: a paragraph's text, a list item, a table row."""

    text: str = ""
    marker: str = ""
    joinable: bool = True


@dataclass
class Block:
    kind: str  # "heading" | "prose" | "code"
    text: str = ""
    level: int = 0
    units: list[_Unit] = field(default_factory=list)


def parse(text: str) -> list[Block]:
    lines = text.replace("\r\n", "\n").replace("\r", "\n").translate(_INVISIBLE).expandtabs(4).split("\n")
    blocks: list[Block] = []
    units: list[_Unit] = []

    def flush() -> None:
        kept = [u for u in units if u.text.strip()]
        if kept:
            blocks.append(Block("prose", units=kept))
        units.clear()

    i = 0
    while i < len(lines):
        line = lines[i]
        fence = _FENCE.match(line)
        if fence:
            flush()
            mark = fence.group(1)
            code: list[str] = []
            i += 1
            while i < len(lines) and not lines[i].strip().startswith(mark[0] * len(mark)):
                code.append(lines[i].rstrip())
                i += 1
            i += 1  # the closing fence (or the end)
            body = "\n".join(code).strip("\n")
            if body.strip():
                blocks.append(Block("code", text=body))
            continue
        i += 1
        heading = _HEADING.match(line)
        if heading:
            flush()
            title = normalise_inline(heading.group(2)).strip("*_` ")
            if title:
                blocks.append(Block("heading", text=title, level=len(heading.group(1))))
            continue
        if not line.strip() or _RULE.match(line):
            flush()
            continue
        while _QUOTE.match(line):
            line = _QUOTE.sub("", line, count=1)
        if not line.strip():
            flush()
            continue
        if line.lstrip().startswith("|"):
            if not _TABLE_SEPARATOR.match(line):
                units.append(_Unit(normalise_inline(line), joinable=False))
            continue
        item = _LIST_ITEM.match(line)
        if item:
            units.append(_Unit(normalise_inline(line[item.end():]), marker=item.group(1)))
            continue
        text_part = normalise_inline(line)
        if units and units[-1].joinable:
            units[-1].text = join_text(units[-1].text, text_part)
        else:
            units.append(_Unit(text_part))
    flush()
    return blocks


def _unit_sentences(unit: _Unit) -> list[str]:
    sentences = _split_unit(unit.text)
    if unit.marker and sentences:
        sentences[0] = f"{unit.marker} {sentences[0]}"
    return sentences


def block_sentences(block: Block) -> list[str]:
    """Sentences of a prose block; those that start a list item or table row after the first carry a leading "\\n"."""
    out: list[str] = []
    for k, unit in enumerate(block.units):
        sentences = _unit_sentences(unit)
        if sentences and k > 0 and (unit.marker or not unit.joinable or not block.units[k - 1].joinable):
            sentences[0] = "\n" + sentences[0]
        out += sentences
    return out


def split_sentences(text: str) -> list[str]:
    """The sentences of ``text`` as ``chunk_text`` sees them (headings and code blocks count as one each)."""
    out: list[str] = []
    for block in parse(text):
        if block.kind == "prose":
            for unit in block.units:
                out += _unit_sentences(unit)
        else:
            out.append(block.text)
    return out
