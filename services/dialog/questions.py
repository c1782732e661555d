"""The questions inside a customer's message.

Customers ask two things at once (「签收5天了还能退吗？退了的话钱多久回到微信」, "do you
take Mastercard? and can I pay the laptop off monthly") or put the question after a
story. ``sub_questions`` splits a message into its sentences and clauses that ask
something, so that each can be looked up on its own: the FAQ entry that answers the
whole message may answer only one of them.
"""

from __future__ import annotations

import re

# Sentence ends, and the words customers use to start a second question.
_SPLIT = re.compile(
    r"(?<=[。？！?!；;\n])\s*|"
    r"(?<=[.])\s+(?=[A-Za-z])|"
    r"[，,、]?\s*(?=另外|还有就是|还有|顺便问一下|顺便问下|顺便|再问一下|再问下|对了)|"
    r"[,;]?\s+(?=(?:and )?also\b|another question\b|and (?:can|could|do|does|is|are|how|what|when|where|will|would|should)\b)",
    re.I,
)
_ASKS_EN = re.compile(
    r"[?]|^\W*(?:and\s+|also\s+|so\s+)*(?:what|how|why|when|where|which|who|whose|is|are|am|do|does|did|can|could|will|would|should|may|any)\b",
    re.I,
)
_ASKS_ZH = re.compile(
    r"[？?]|什么|啥|怎么|咋|为什么|多久|多少|多长时间|几天|几个|几点|几号|哪|谁|是不是|能不能|可不可以|可以吗|能否|是否|有没有|要不要|"
    r"[吗么嘛呢]\W*$|[^不]不\W*$"
)


_REQUEST = re.compile(
    r"^\W*(?:(?:hi|hello|hey|ok|okay)\W+)?(?:(?:can|could|would) you\s+|please\s+|pls\s+|plz\s+)?"
    r"(?:help|solve|translate|write|tell|explain|calculate|compute|make|give|show|recommend|find|draw|teach|summari[sz]e)\b"
    r"|^\W*(?:你好\W*)?(?:请|麻烦|能不能|可以)?(?:帮我|给我|替我|帮忙|教我|告诉我|翻译|写一|讲一|讲个|算一下)",
    re.I,
)


def requests_something(text: str) -> bool:
    """Whether the message opens by asking kefu to do something ("help with my homework",
    「给我讲个笑话」): never a greeting or thanks, whatever words it shares with one."""
    return bool(_REQUEST.search(text.strip()))


def asks(clause: str) -> bool:
    """Whether a sentence or clause asks something (a question mark, a question word)."""
    return bool(_ASKS_ZH.search(clause) if re.search(r"[\u4e00-\u9fff]", clause) else _ASKS_EN.search(clause))


def asks_anything(text: str) -> bool:
    """Whether any sentence or clause of ``text`` asks something."""
    return any(asks(p) for p in _SPLIT.split(text) if p and p.strip())


def sub_questions(text: str, *, min_chars: int = 4) -> list[str]:
    """The clauses of ``text`` that ask something, in order; [] when there are fewer
    than two (the message is one question, looked up whole)."""
    return [clause for clause, _ in sub_questions_in_context(text, min_chars=min_chars)]


def sub_questions_in_context(text: str, *, min_chars: int = 4) -> list[tuple[str, str]]:
    """:func:`sub_questions` each with the query to look it up by: the clause after the
    story the message opens with ("I need a company invoice for my order. How do I ask
    for it and what details do you need?" — "how do I ask for it" alone has no subject)."""
    parts = [p.strip(" \t，,、;；") for p in _SPLIT.split(text) if p and p.strip()]
    asking = [i for i, p in enumerate(parts) if len(p) >= min_chars and asks(p)]
    if len(asking) < 2:
        return []
    story = "".join(_after_punctuation(p) for p in parts[: asking[0]])
    return [(parts[i], f"{story}{parts[i]}") for i in asking]


def _after_punctuation(part: str) -> str:
    """``part`` as it stands before the next one: ended by its mark, or by a comma."""
    if re.search(r"[\u4e00-\u9fff]", part):
        return part if re.search(r"[。？！?!；;…]$", part) else part + "，"
    return part + " " if re.search(r"[.?!;…]$", part) else part + ", "
