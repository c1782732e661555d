"""Cutting article bodies into passages for retrieval, sentence-aware in Chinese and English.

The body is read as light Markdown (plain text is Markdown without markup):

* ``#``-headings open a section. Every chunk of a section starts with the path of
  headings above it as context: ``"退货政策 > 运费: <passage>"`` (joined with
  ``" > "``, then ``": "``; when the last heading already ends in punctuation
  such as ``？`` or ``:`` only a space follows). A too-long path is cut to its
  last heading and at most a third of ``max_chars``. Chunks never cross a heading.
* Fenced code blocks (```` ``` ```` / ``~~~``) are kept verbatim (without the fence
  lines) and whole when they fit; otherwise they are cut between lines.
* Blank lines separate paragraphs. Inside a paragraph, single line breaks are soft
  wraps (joined with a space between Latin text, with nothing next to Chinese)
  except before a list item (``-``, ``*``, ``+``, ``•``, ``1.``, ``1)``, ``1、``,
  ``（1）``, ``一、``) or a table row (``|``), which start a new sentence and, inside
  a chunk, a new line. Blockquote markers and horizontal rules are dropped.
* Sentences end at ``。｡！？；…`` (``！？；。`` also in their ASCII forms ``!?;.``
  right after a Chinese character; ``．`` unless a digit follows) and at English
  ``. ! ?`` followed by a space, a Chinese character or the end. Closing quotes and brackets after the end stay with the
  sentence. A ``.`` does not end a sentence inside URLs, e-mail addresses or
  numbers (``3.5``), after titles and abbreviations (``Mr.``, ``Dr.``, ``e.g.``,
  ``i.e.``, ``approx.``, initials ``J.``, and ``No.`` / ``p.`` / ``fig.`` before a
  number), nor when the next word starts with a lowercase letter.
* Consecutive sentences of one paragraph are packed greedily into chunks of at most
  ``max_chars`` characters (heading context included). A short last chunk of a
  paragraph takes sentences back from the one before it while both stay at least
  ``min_chars`` long; a chunk shorter than ``min_chars`` is joined (with a line break)
  to its neighbour in the same section when the result fits. ``min_chars`` is capped
  at half of ``max_chars``.
* A sentence longer than the budget is cut after a clause mark (``，,、;；：:``), and a
  clause that is still too long at the budget, moved back to the start of a Latin
  word or number when it would cut through one.

Whitespace is normalised (runs become one space, spaces between two Chinese
characters are removed); chunks are never empty (a body of nothing but headings
gives the headings, one of nothing but markup its bare text) and the result
depends only on the input.
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
_CLAUSE_MARKS = "，、；：,;:"

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


def _is_cjk(ch: str) -> bool:
    o = ord(ch)
    return any(lo <= o <= hi for lo, hi in _CJK_RANGES)


def _is_word(ch: str) -> bool:
    """Part of a Latin word or a number (which must not be cut through)."""
    return ch.isalnum() and not _is_cjk(ch)


def _join(left: str, right: str) -> str:
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
    if _is_cjk(left[-1]) or _is_cjk(right[0]):
        return left + right
    return left + " " + right


def _normalise_inline(text: str) -> str:
    text = _SPACES.sub(" ", text.translate(_INVISIBLE)).strip()
    return _CJK_SPACE.sub("", text)


# --- sentences -------------------------------------------------------------------------------------------------


def _protected(text: str) -> list[bool]:
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
    if _is_cjk(nxt):
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
    protected = _protected(text)
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
            ends = _ends_at_dot(text, i, j) or (bool(prev) and _is_cjk(prev) and not (j < n and text[j].isdigit()))
        elif ch == ";":
            ends = bool(prev) and _is_cjk(prev)
        else:  # ! ?
            ends = j >= n or text[j].isspace() or _is_cjk(text[j]) or (bool(prev) and _is_cjk(prev))
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
class _Block:
    kind: str  # "heading" | "prose" | "code"
    text: str = ""
    level: int = 0
    units: list[_Unit] = field(default_factory=list)


def _parse(text: str) -> list[_Block]:
    lines = text.replace("\r\n", "\n").replace("\r", "\n").translate(_INVISIBLE).expandtabs(4).split("\n")
    blocks: list[_Block] = []
    units: list[_Unit] = []

    def flush() -> None:
        kept = [u for u in units if u.text.strip()]
        if kept:
            blocks.append(_Block("prose", units=kept))
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
                blocks.append(_Block("code", text=body))
            continue
        i += 1
        heading = _HEADING.match(line)
        if heading:
            flush()
            title = _normalise_inline(heading.group(2)).strip("*_` ")
            if title:
                blocks.append(_Block("heading", text=title, level=len(heading.group(1))))
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
                units.append(_Unit(_normalise_inline(line), joinable=False))
            continue
        item = _LIST_ITEM.match(line)
        if item:
            units.append(_Unit(_normalise_inline(line[item.end():]), marker=item.group(1)))
            continue
        text_part = _normalise_inline(line)
        if units and units[-1].joinable:
            units[-1].text = _join(units[-1].text, text_part)
        else:
            units.append(_Unit(text_part))
    flush()
    return blocks


def _unit_sentences(unit: _Unit) -> list[str]:
    sentences = _split_unit(unit.text)
    if unit.marker and sentences:
        sentences[0] = f"{unit.marker} {sentences[0]}"
    return sentences


def _block_sentences(block: _Block) -> list[str]:
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
    for block in _parse(text):
        if block.kind == "prose":
            for unit in block.units:
                out += _unit_sentences(unit)
        else:
            out.append(block.text)
    return out


# --- packing ---------------------------------------------------------------------------------------------------


def _hard_split(text: str, budget: int) -> list[str]:
    """Cut at ``budget`` characters, moved back to the start of a Latin word or number it would cut through."""
    out: list[str] = []
    while len(text) > budget:
        cut = budget
        if _is_word(text[cut - 1]) and _is_word(text[cut]):
            j = cut - 1
            while j > 0 and _is_word(text[j - 1]):
                j -= 1
            if text[:j].strip():
                cut = j
        out.append(text[:cut].rstrip())
        text = text[cut:].lstrip()
    if text:
        out.append(text)
    return out


def _clauses(sentence: str) -> list[str]:
    protected = _protected(sentence)
    pieces: list[str] = []
    start = 0
    for i, ch in enumerate(sentence):
        if ch not in _CLAUSE_MARKS or protected[i]:
            continue
        nxt = sentence[i + 1] if i + 1 < len(sentence) else ""
        if ch in ",;:" and nxt and not (nxt.isspace() or _is_cjk(nxt)):
            continue  # 1,000 / 10:30 / a;b
        piece = sentence[start : i + 1].strip()
        if piece:
            pieces.append(piece)
        start = i + 1
    rest = sentence[start:].strip()
    if rest:
        pieces.append(rest)
    return pieces


def _pack(pieces: list[str], budget: int) -> list[list[str]]:
    """Greedy: consecutive pieces into groups whose joined text fits ``budget``."""
    groups: list[list[str]] = []
    text = ""
    for piece in pieces:
        joined = _join(text, piece)
        if groups and len(joined) <= budget:
            groups[-1].append(piece)
            text = joined
        else:
            groups.append([piece])
            text = _join("", piece)
    return groups


def _text(group: list[str]) -> str:
    out = ""
    for piece in group:
        out = _join(out, piece)
    return out


def _split_long(sentence: str, budget: int) -> list[str]:
    if len(sentence.lstrip("\n")) <= budget:
        return [sentence]
    out: list[str] = []
    for group in _pack(_clauses(sentence.lstrip("\n")), budget):
        text = _text(group)
        out += _hard_split(text, budget) if len(text) > budget else [text]
    if sentence.startswith("\n"):
        out[0] = "\n" + out[0]
    return out


def _paragraph_pieces(sentences: list[str], budget: int, min_chars: int) -> list[str]:
    units: list[str] = []
    for sentence in sentences:
        units += _split_long(sentence, budget)
    groups = _pack(units, budget)
    # A short last chunk takes sentences back from the one before while both stay long enough.
    if len(groups) >= 2:
        prev, last = groups[-2], groups[-1]
        while len(_text(last)) < min_chars and len(prev) > 1:
            new_prev, new_last = prev[:-1], [prev[-1], *last]
            if len(_text(new_last)) > budget or len(_text(new_prev)) < min_chars:
                break
            prev, last = new_prev, new_last
        groups[-2:] = [prev, last]
    return [_text(g) for g in groups]


def _code_pieces(code: str, budget: int) -> list[str]:
    if len(code) <= budget:
        return [code]
    lines: list[str] = []
    for line in code.split("\n"):
        lines += _hard_split(line, budget) if len(line) > budget else [line]
    out: list[str] = []
    for line in lines:
        if out and len(out[-1]) + 1 + len(line) <= budget:
            out[-1] += "\n" + line
        else:
            out.append(line)
    return [p.strip("\n") for p in out if p.strip()]


def _prefix(path: list[str], max_chars: int) -> str:
    if not path:
        return ""
    limit = max(1, max_chars // 3)

    def render(parts: list[str]) -> str:
        label = " > ".join(parts)
        return label + (" " if label[-1] in "。！？；：:?!.;…" else ": ")

    prefix = render(path)
    if len(prefix) > limit:
        prefix = render(path[-1:])
    if len(prefix) > limit:
        prefix = path[-1][: max(0, limit - 3)].rstrip() + "…: "
    return prefix


def _merge_short(pieces: list[str], budget: int, min_chars: int) -> list[str]:
    out: list[str] = []
    for piece in pieces:
        if out and (len(piece) < min_chars or len(out[-1]) < min_chars) and len(out[-1]) + 1 + len(piece) <= budget:
            out[-1] += "\n" + piece
        else:
            out.append(piece)
    return out


def chunk_text(text: str, *, max_chars: int = 400, min_chars: int = 80) -> list[str]:
    """Passages of ``text`` (an article body, light Markdown) of at most ``max_chars`` characters each."""
    return [head + piece for head, piece in chunk_sections(text, max_chars=max_chars, min_chars=min_chars)]


def sentence_keys(head: str, piece: str) -> list[str]:
    """The sentences of a passage, each after the headings it sits under (``head``), to be
    looked up by on their own: a customer asks about one sentence of a passage that says
    several things ("Items printed with your company logo need at least 50 units" in a
    passage about corporate prices). None for a passage of one sentence."""
    sentences = [s.strip() for s in split_sentences(piece) if s.strip()]
    return [head + s for s in sentences] if len(sentences) > 1 else []


def chunk_sections(text: str, *, max_chars: int = 400, min_chars: int = 80) -> list[tuple[str, str]]:
    """:func:`chunk_text`'s passages as (the headings' prefix, the passage under them)."""
    if max_chars < 20:
        raise ValueError("max_chars must be at least 20")
    if min_chars < 0:
        raise ValueError("min_chars must not be negative")
    min_chars = min(min_chars, max_chars // 2)
    chunks: list[tuple[str, str]] = []
    headings: list[tuple[int, str]] = []
    section: list[str] = []

    def prefix() -> str:
        return _prefix([t for _, t in headings], max_chars)

    def close_section() -> None:
        head = prefix()
        budget = max_chars - len(head)
        for piece in _merge_short(section, budget, min_chars):
            chunks.append((head, piece))
        section.clear()

    for block in _parse(text):
        if block.kind == "heading":
            close_section()
            while headings and headings[-1][0] >= block.level:
                headings.pop()
            headings.append((block.level, block.text))
            continue
        budget = max_chars - len(prefix())
        if block.kind == "code":
            section.extend(_code_pieces(block.text, budget))
        else:
            sentences = _block_sentences(block)
            section.extend(_paragraph_pieces(sentences, budget, min_chars))
    close_section()
    if not chunks:
        # Nothing but headings: the headings themselves are the passage.
        titles = [b.text for b in _parse(text) if b.kind == "heading"]
        for group in _pack([p for t in titles for p in _split_long(t, max_chars)], max_chars):
            chunks.append(("", _text(group)))
    if not chunks and text.strip():
        # Nothing but markup (a rule, an empty fence...): the bare text.
        chunks = [("", c) for c in _hard_split(_normalise_inline(text), max_chars)]
    out = []
    for head, piece in chunks:
        full = (head + piece).strip()
        if full:
            head = head.lstrip() if full.startswith(head.lstrip()) else ""
            out.append((head, full[len(head):]))
    return out
