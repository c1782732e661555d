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

# How a small model frames an answer instead of giving it: a role label, a sentence about
# the customer, a pointer to "the reference". Removed from the opening of a reply.
_ROLE = re.compile(r"^\s*(?:客服|助手|回答|答|Agent|Assistant|Answer|A)\s*[:：]\s*", re.I)
_ABOUT_CUSTOMER = re.compile(r"^\s*(?:The customer|The user|顾客|客户|用户)(?:[^。.!?！？]|\.\d)*[。.!?！？]\s*", re.I)
_FRAME = re.compile(
    r"^\s*(?:根据(?:参考)?资料|参考资料(?:中)?(?:提到|显示|说明)?|根据(?:您?提供的|以上|上述)?(?:信息|内容|资料|说明))[，,:：]?\s*"
    r"|^\s*(?:the )?(?:reference|passage|information)(?: provided)? (?:states|says|mentions|indicates|shows)(?: that)?[,:]?\s*"
    r"|^\s*(?:based on|according to) the (?:reference|passage|information)(?: provided)?,?\s*",
    re.I,
)
# An opening that may still become one of the above: held until it shows.
_MAY_FRAME = re.compile(r"^\s*(?:客服|助手|回答|Agent|Assistant|Answer|The customer|The user|顾客|客户|用户|The reference|The passage|Based on|According to|根据|参考)", re.I)
MAX_FRAME_HOLD = 240


def tidy_opening(text: str) -> str:
    """The reply without a framing opening: 「客服：根据资料，会员日是每月 18 日。」 →
    「会员日是每月 18 日。」, "The reference states that gift cards ..." → "Gift cards ..."."""
    before = None
    while before != text:
        before = text
        text = _ROLE.sub("", text, count=1)
        text = _ABOUT_CUSTOMER.sub("", text, count=1)
        text = _FRAME.sub("", text, count=1)
    if text[:1].islower():
        text = text[0].upper() + text[1:]
    return text


def _framing_undecided(held: str) -> bool:
    """Whether the opening could still turn out to be framing (no comma, colon or end of
    the first sentence yet), so it is held a little longer."""
    if len(held) > MAX_FRAME_HOLD or not _MAY_FRAME.match(held):
        return False
    if re.match(r"^\s*(?:The customer|The user|顾客|客户|用户)", held, re.I):
        return not re.search(r"[。!?！？]|\.(?!\d)", held)
    return not re.search(r"[，,:：。.!?！？]|\bthat\b", held)


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
        if _framing_undecided(self._held):
            return ""
        opening = tidy_opening(self._held)
        if len(opening.strip()) >= self._hold and not declines(opening) and self._carries_facts():
            self._passed = True
            return opening
        return ""

    def _carries_facts(self) -> bool:
        # The last number may still be growing ("9" of "99"): count only finished ones.
        return not self._figures or bool(figures(re.sub(r"[\d.]+$", "", self._held)) & self._figures)

    def finish(self) -> bool:
        if not self._passed:
            if declines(tidy_opening(self._held)):
                self.reason = "declined"
            elif len(self._held.strip()) >= self._hold:
                self.reason = "no_facts"
            else:
                self.reason = "too_short"
        return self._passed
