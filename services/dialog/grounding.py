"""Checking a generated reply before the customer sees it.

Dialog asks for a reply only once Knowledge has found a passage that answers the
question. A small model still sometimes opens with "Not sure." or answers in a
few words ("能。") that drop, or even contradict, what the passage says. The
start of the reply is therefore held back until it shows that it answers; a
reply that opens by declining, or that ends while still too short to carry an
answer, is replaced by the passage verbatim.

When the passage states figures (fees, days, thresholds), the reply is also held
until it repeats one of them: a reply that never does ("运费 = (实付金额 + 包裹费用) / 2"
for a passage that says 8 元 and 99 元) invents instead of answering, and the
customer gets the passage verbatim instead (reason ``no_facts``).
"""

from __future__ import annotations

import re

# Characters held back before streaming starts: enough to see how the reply opens,
# and the least a whole reply needs to carry the passage's answer.
HOLD_CHARS = {"zh": 12, "en": 24}

_DECLINES = re.compile(
    r"""^[\W_]*
    (?:(?:sorry|apologies|抱歉|对不起|不好意思)[\W_]*)?
    (?:
        (?:(?:i\s+am|(?:we|you)\s+are|(?:i|we|you)\W?(?:m|re))\s+)?(?:not\s+sure|unsure|not\s+certain)
      | i\s+(?:do\s+not|don\W?t)\s+know
      | (?:i\s+)?(?:can\W?t|cannot|am\s+unable\s+to)\s+(?:answer|help|tell)
      | (?:我|我们)?(?:不太?确定|不清楚|不知道|(?:无法|没法|没办法|不能)(?:回答|确定|协助|帮))
    )""",
    re.IGNORECASE | re.VERBOSE,
)


_FIGURE = re.compile(r"\d+(?:\.\d+)?")


def figures(text: str) -> set[str]:
    """The numbers a text states ("8", "99", "1.5")."""
    return set(_FIGURE.findall(text))


def declines(text: str) -> bool:
    """Whether a reply opens by saying it does not know, in Chinese or English."""
    return bool(_DECLINES.match(text))


class ReplyCheck:
    """Feed the model's deltas in order and stream what ``feed`` returns: nothing
    while the opening is held back, then the opening at once, then each delta as
    it comes. At the end, ``finish`` says whether the reply stands; when it does
    not, nothing of it has been streamed and ``reason`` says why."""

    def __init__(self, language: str, passage: str = "") -> None:
        self._hold = HOLD_CHARS.get(language, HOLD_CHARS["en"])
        self._figures = figures(passage)
        self._held = ""
        self._passed = False
        self.reason = ""

    def feed(self, delta: str) -> str:
        if self._passed:
            return delta
        self._held += delta
        if len(self._held.strip()) >= self._hold and not declines(self._held) and self._carries_facts():
            self._passed = True
            return self._held
        return ""

    def _carries_facts(self) -> bool:
        # The last number may still be growing ("9" of "99"): count only finished ones.
        return not self._figures or bool(figures(re.sub(r"[\d.]+$", "", self._held)) & self._figures)

    def finish(self) -> bool:
        if not self._passed:
            if declines(self._held):
                self.reason = "declined"
            elif len(self._held.strip()) >= self._hold:
                self.reason = "no_facts"
            else:
                self.reason = "too_short"
        return self._passed
