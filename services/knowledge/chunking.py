"""Cutting article bodies into passages for retrieval, sentence-aware in Chinese and English.

The body is read as light Markdown (markdown_text.py: blocks, soft wraps, list items,
sentence ends), then:

* ``#``-headings open a section. Every chunk of a section starts with the path of
  headings above it as context: ``"退货政策 > 运费: <passage>"`` (joined with
  ``" > "``, then ``": "``; when the last heading already ends in punctuation
  such as ``？`` or ``:`` only a space follows). A too-long path is cut to its
  last heading and at most a third of ``max_chars``. Chunks never cross a heading.
* Code blocks are kept whole when they fit; otherwise they are cut between lines.
* List items and table rows start a new line inside a chunk.
* Consecutive sentences of one paragraph are packed greedily into chunks of at most
  ``max_chars`` characters (heading context included). A short last chunk of a
  paragraph takes sentences back from the one before it while both stay at least
  ``min_chars`` long; a chunk shorter than ``min_chars`` is joined (with a line break)
  to its neighbour in the same section when the result fits. ``min_chars`` is capped
  at half of ``max_chars``.
* A sentence longer than the budget is cut after a clause mark (``，,、;；：:``), and a
  clause that is still too long at the budget, moved back to the start of a Latin
  word or number when it would cut through one.

Chunks are never empty (a body of nothing but headings gives the headings, one of
nothing but markup its bare text) and the result depends only on the input.
"""

from __future__ import annotations

from services.knowledge.markdown_text import (
    CLAUSE_MARKS,
    block_sentences,
    is_cjk,
    is_word,
    join_text,
    normalise_inline,
    parse,
    protected_spans,
    split_sentences,
)


# --- packing ---------------------------------------------------------------------------------------------------


def _hard_split(text: str, budget: int) -> list[str]:
    """Cut at ``budget`` characters, moved back to the start of a Latin word or number it would cut through."""
    out: list[str] = []
    while len(text) > budget:
        cut = budget
        if is_word(text[cut - 1]) and is_word(text[cut]):
            j = cut - 1
            while j > 0 and is_word(text[j - 1]):
                j -= 1
            if text[:j].strip():
                cut = j
        out.append(text[:cut].rstrip())
        text = text[cut:].lstrip()
    if text:
        out.append(text)
    return out


def _clauses(sentence: str) -> list[str]:
    protected = protected_spans(sentence)
    pieces: list[str] = []
    start = 0
    for i, ch in enumerate(sentence):
        if ch not in CLAUSE_MARKS or protected[i]:
            continue
        nxt = sentence[i + 1] if i + 1 < len(sentence) else ""
        if ch in ",;:" and nxt and not (nxt.isspace() or is_cjk(nxt)):
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
        joined = join_text(text, piece)
        if groups and len(joined) <= budget:
            groups[-1].append(piece)
            text = joined
        else:
            groups.append([piece])
            text = join_text("", piece)
    return groups


def _text(group: list[str]) -> str:
    out = ""
    for piece in group:
        out = join_text(out, piece)
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

    for block in parse(text):
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
            sentences = block_sentences(block)
            section.extend(_paragraph_pieces(sentences, budget, min_chars))
    close_section()
    if not chunks:
        # Nothing but headings: the headings themselves are the passage.
        titles = [b.text for b in parse(text) if b.kind == "heading"]
        for group in _pack([p for t in titles for p in _split_long(t, max_chars)], max_chars):
            chunks.append(("", _text(group)))
    if not chunks and text.strip():
        # Nothing but markup (a rule, an empty fence...): the bare text.
        chunks = [("", c) for c in _hard_split(normalise_inline(text), max_chars)]
    out = []
    for head, piece in chunks:
        full = (head + piece).strip()
        if full:
            head = head.lstrip() if full.startswith(head.lstrip()) else ""
            out.append((head, full[len(head):]))
    return out
