"""NLU core: understands one customer message. Knows nothing of gRPC."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

from services.nlu.intents import IntentMatcher, IntentScore
from services.nlu.results import EntityMatch, SentimentReading
from services.nlu.text import ORDER_ID, MaskedText, detect_language, mask_pii, normalize

log = logging.getLogger(__name__)


@dataclass
class Understanding:
    language: str
    normalized_text: str
    masked: MaskedText
    intents: list[IntentScore]
    margin: float
    out_of_scope: bool
    entities: list[EntityMatch] = field(default_factory=list)
    sentiment: SentimentReading = field(default_factory=lambda: SentimentReading("neutral", 0.5, 0.0))
    flags: list[str] = field(default_factory=list)


_NEGATIVE_WORDS = re.compile(
    r"投诉|差劲|太差|垃圾|生气|气死|失望|骗子|不满|怎么回事|还没到|退钱|糟糕|"
    r"terrible|awful|angry|unacceptable|disappointed|worst|ridiculous|complain|scam|furious",
    re.IGNORECASE,
)
_POSITIVE_WORDS = re.compile(r"谢谢|感谢|太好了|满意|不错|棒|thanks|thank you|great|perfect|awesome|helpful", re.IGNORECASE)


def read_sentiment(text: str) -> SentimentReading:
    """A lexicon reading of polarity and dissatisfaction (a learned model replaces it later)."""
    neg = len(_NEGATIVE_WORDS.findall(text)) + text.count("!") * 0.25 + text.count("！") * 0.25
    pos = len(_POSITIVE_WORDS.findall(text))
    if neg > pos:
        return SentimentReading("negative", min(0.5 + 0.15 * neg, 0.95), min(0.4 + 0.2 * neg, 1.0))
    if pos > neg:
        return SentimentReading("positive", min(0.5 + 0.15 * pos, 0.95), 0.0)
    return SentimentReading("neutral", 0.5, 0.0)


def extract_entities(text: str) -> list[EntityMatch]:
    return [EntityMatch("order_id", m.group(0), m.group(0).upper(), m.start(), m.end()) for m in ORDER_ID.finditer(text)]


class MessageAnalyzer:
    """Turns a raw customer message into an ``Understanding``."""

    def __init__(self, matcher: IntentMatcher) -> None:
        self._matcher = matcher

    async def analyze(self, text: str, *, language_hint: str = "", top_k: int = 3) -> Understanding:
        normalized = normalize(text)
        masked = mask_pii(normalized)
        language = language_hint or detect_language(normalized)
        intents, out_of_scope = await self._matcher.rank(masked.text, max(top_k, 2))
        margin = intents[0].confidence - intents[1].confidence if len(intents) > 1 else intents[0].confidence
        return Understanding(
            language=language,
            normalized_text=normalized,
            masked=masked,
            intents=intents[:top_k],
            margin=margin,
            out_of_scope=out_of_scope,
            entities=extract_entities(normalized),
            sentiment=read_sentiment(normalized),
        )
