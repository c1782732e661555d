"""Dissatisfaction of a customer message: how angry or fed up the customer sounds, 0..1.

It combines the probability of negative polarity ``p`` with anger cues found by
:func:`anger_cues` (complaint and cancellation threats, swearing, angry words, "again / still /
third time", ``!!`` and ``??`` runs, SHOUTING)::

    cues = 1 - prod(1 - w_i)                 # noisy-OR over the cue kinds found, w_i in CUE_WEIGHTS
    dissatisfaction = p * (BASE + (1 - BASE) * cues) + (1 - p) * SPILL * cues

So a plainly negative message without cues scores ``BASE * p`` (~0.3: "it's a bit small"),
cues raise a negative message towards 1 ("the parcel is late AGAIN!!! third time" ~0.75), and a
threat in a message the classifier does not read as negative still counts a little
(``SPILL``). Dialog can count messages above :data:`DISSATISFIED_AT` across turns.

The probability ``p`` comes from the polarity classifier (``services.nlu.sentiment``).
"""

from __future__ import annotations

import re

DISSATISFIED_AT = 0.6  # a message at or above this reads as dissatisfied

BASE = 0.35  # dissatisfaction of a negative message without anger cues, per unit of P(negative)
SPILL = 0.5  # share of the cues that counts when the message does not read as negative
CUE_WEIGHTS = {
    "threat": 0.6,  # complain, report, cancel, chargeback, lawyer, bad review: 投诉 12315 差评 退货退款
    "swearing": 0.6,  # wtf, damn, 他妈, 垃圾
    "angry_words": 0.45,  # furious, unacceptable, ridiculous, 气死, 太过分, 忍无可忍
    "repeated": 0.3,  # again, still, third time, 又, 一直, 第三次, 到底
    "exclamations": 0.3,  # "!!" / "！！" (a single "!": a third of it)
    "questions": 0.25,  # "??" / "？？" / "?!"
    "shouting": 0.3,  # words IN CAPITALS
}
_CUE_PATTERNS = {
    "threat": re.compile(
        r"投诉|举报|曝光|12315|消协|消费者协会|工商局|市场监管|起诉|律师|法院|差评|打官司|维权|告你们|找媒体|再也不(?:买|来|用)|拉黑|"
        r"(?:不然|否则)我就|"
        r"\b(?:complain(?:t|ts|ing)?|report(?:ing)? (?:you|this)|lawyer|sue|legal action|chargeback|dispute|bbb|"
        r"bad review|1[- ]star|one[- ]star|cancel(?:l?ing)? my (?:membership|account|subscription)|(?:or|otherwise) i(?:'ll| will)|"
        r"never (?:buy|order|shop)(?:ing)? (?:from|here|again)|never again|escalate|manager|supervisor)\b", re.IGNORECASE),
    "swearing": re.compile(
        r"他妈|妈的|(?<![a-z])tmd(?![a-z])|草泥马|卧槽|我靠|垃圾(?!袋|桶|分类|箱|篓)|狗屁|什么玩意|破玩意|滚蛋|给我滚|傻逼|(?<![a-z])sb(?![a-z])|"
        r"坑爹|骗子|无良|黑店|"
        r"\b(?:wtf|f+u+c+k\w*|shit\w*|damn\w*|crap\w*|bullshit|hell|scam\w*|rip-?off|pathetic)\b", re.IGNORECASE),
    "angry_words": re.compile(
        r"气死|生气|愤怒|火大|恼火|受够|忍无可忍|太过分|过分|离谱|无语|失望透顶|太差|差劲|恶心|搞什么|什么破|怎么回事|凭什么|有病|"
        r"\b(?:furious|angry|mad|outrage\w*|unacceptable|ridiculous|disgust\w*|appall\w*|terrible|horrible|awful|worst|"
        r"fed up|sick of|tired of|joke|useless|incompetent|nonsense|absurd|insane)\b", re.IGNORECASE),
    "repeated": re.compile(
        r"又|还没|还是没|一直没|总是|第[二三四五六七八九十两\d]+次|多少次|几次了|好几次|到底|天天|每次都|催了|"
        r"\b(?:again|still|yet again|third time|second time|\w+ times|every time|keeps?|constantly|how many times|"
        r"for days|for weeks)\b", re.IGNORECASE),
}
_BOTH_AND = re.compile(r"又[^又，。！？,.!?\s]{1,3}又")  # 又快又好: "both ... and", not "again"
_EXCLAIM_RUN = re.compile(r"[!！]{2,}")
_EXCLAIM = re.compile(r"[!！]")
_QUESTION_RUN = re.compile(r"[?？]{2,}|[?？][!！]|[!！][?？]")
_CAPS_WORD = re.compile(r"\b[A-Z]{3,}\b")
_ACRONYMS = {"DHL", "UPS", "USPS", "SMS", "FAQ", "USB", "APP", "VIP", "ETA", "ASAP", "PDF", "CEO", "TV", "LED", "OK", "EMS", "SKU", "FYI",
             "BBB", "USA", "GPS", "ATM", "PIN", "CVV", "QR", "NFC", "HDMI", "CPU", "RAM", "SSD", "XXL", "XXXL", "WTF"}


def anger_cues(text: str) -> dict[str, float]:
    """The anger cue kinds found in ``text`` (case kept), each with its strength in [0, 1]."""
    found: dict[str, float] = {}
    plain = _BOTH_AND.sub(" ", text)
    for kind, pattern in _CUE_PATTERNS.items():
        if pattern.search(plain):
            found[kind] = 1.0
    if _EXCLAIM_RUN.search(text):
        found["exclamations"] = 1.0
    elif _EXCLAIM.search(text):
        found["exclamations"] = 1.0 / 3.0
    if _QUESTION_RUN.search(text):
        found["questions"] = 1.0
    caps = [w for w in _CAPS_WORD.findall(text) if w not in _ACRONYMS and not w.startswith("KF")]
    if len(caps) >= 2 or any(len(w) >= 5 for w in caps):
        found["shouting"] = 1.0
    elif caps and len(caps[0]) == 4:  # one short word in capitals may be a name or a code
        found["shouting"] = 0.6
    return found


def dissatisfaction_score(p_negative: float, cues: dict[str, float]) -> float:
    """``p * (BASE + (1 - BASE) * c) + (1 - p) * SPILL * c`` with ``c`` the noisy-OR of the weighted cues."""
    keep = 1.0
    for kind, strength in cues.items():
        keep *= 1.0 - CUE_WEIGHTS[kind] * strength
    c = 1.0 - keep
    p = min(max(float(p_negative), 0.0), 1.0)
    return float(min(max(p * (BASE + (1.0 - BASE) * c) + (1.0 - p) * SPILL * c, 0.0), 1.0))
