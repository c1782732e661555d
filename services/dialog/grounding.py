"""Checking a generated reply before the customer sees it.

Dialog asks for a reply only once Knowledge has found a passage that answers the
question. A small model still sometimes opens with "Not sure." or answers in a
few words ("能。") that drop, or even contradict, what the passage says. The
start of the reply is therefore held back until it shows that it answers; a
reply that opens by declining, or that ends while still too short to carry an
answer, is replaced by the passage verbatim.
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


def declines(text: str) -> bool:
    """Whether a reply opens by saying it does not know, in Chinese or English."""
    return bool(_DECLINES.match(text))


class ReplyCheck:
    """Feed the model's deltas in order and stream what ``feed`` returns: nothing
    while the opening is held back, then the opening at once, then each delta as
    it comes. At the end, ``finish`` says whether the reply stands; when it does
    not, nothing of it has been streamed and ``reason`` says why."""

    def __init__(self, language: str) -> None:
        self._hold = HOLD_CHARS.get(language, HOLD_CHARS["en"])
        self._held = ""
        self._passed = False
        self.reason = ""

    def feed(self, delta: str) -> str:
        if self._passed:
            return delta
        self._held += delta
        if len(self._held.strip()) >= self._hold and not declines(self._held):
            self._passed = True
            return self._held
        return ""

    def finish(self) -> bool:
        if not self._passed:
            self.reason = "declined" if declines(self._held) else "too_short"
        return self._passed
