"""Text analysis for lexical retrieval: Chinese through jieba's search-mode
segmentation, English lower-cased, stop words dropped and Snowball-stemmed.

Mixed text is split into runs of Han characters and runs of Latin letters and
digits; each run goes to its own analyzer, so "我的order还没到" gives
["我", "order", "还", "没到"]-like terms from both.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from functools import lru_cache

import jieba
import snowballstemmer

jieba.setLogLevel(logging.WARNING)

_RUNS = re.compile(r"([\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+)|([a-z0-9]+(?:['’][a-z]+)?)")
_EN_STOP = frozenset(
    "a an the and or but if of to in on at by for with from as is are was were be been being do does did "
    "i me my we our you your he him his she her it its they them their this that these those what which who "
    "whom how can could should would will shall may might must have has had not no so than too very just "
    "about into over under again there here when where why all any both each few more most other some such "
    "only own same s t".split()
)
# Single characters and particles that carry no meaning on their own in a query.
_ZH_STOP = frozenset("的 了 吗 呢 吧 啊 呀 是 在 和 与 及 或 我 你 您 他 她 它 们 这 那 个 么 什么 怎么 请问 一下 可以 能 会 要 有 没有 就 都 也 还 把 被 给".split())


@lru_cache(maxsize=1)
def _stemmer():
    return snowballstemmer.stemmer("english")


_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ffff]")


def detect_locale(text: str) -> str:
    """``"zh"`` when Han characters are at least 30% of the letters of ``text``, else ``"en"``."""
    letters = sum(1 for ch in text if ch.isalpha())
    if not letters:
        return "en"
    return "zh" if len(_HAN.findall(text)) / letters >= 0.3 else "en"


def analyze(text: str) -> list[str]:
    """Index terms of ``text`` (for documents and queries alike)."""
    text = unicodedata.normalize("NFKC", text).casefold()
    terms: list[str] = []
    for han, latin in _RUNS.findall(text):
        if han:
            terms += [w for w in jieba.cut_for_search(han) if w.strip() and w not in _ZH_STOP]
        elif latin not in _EN_STOP:
            terms.append(_stemmer().stemWord(latin.replace("’", "'").split("'")[0]))
    return terms
