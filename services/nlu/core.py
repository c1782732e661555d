"""NLU core: understands one customer message. Knows nothing of gRPC."""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, field

import numpy as np

from services.demo.pack import DomainPack
from services.embedding import Embedder
from services.nlu.text import ORDER_ID, MaskedText, detect_language, mask_pii, normalize

log = logging.getLogger(__name__)

OUT_OF_SCOPE = "oos"


@dataclass
class IntentScore:
    name: str
    confidence: float


@dataclass
class EntityMatch:
    type: str
    text: str
    value: str
    start: int
    end: int
    confidence: float = 1.0


@dataclass
class SentimentReading:
    polarity: str  # negative | neutral | positive
    confidence: float
    dissatisfaction: float


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


class IntentMatcher:
    """Intent by embedding similarity to the domain pack's example utterances.

    Each intent scores the mean of its two most similar examples; a softmax with
    a small temperature turns the scores into confidences (e5 cosines sit in a
    narrow band, so differences of a few hundredths matter).
    """

    def __init__(self, pack: DomainPack, embedder: Embedder, *, temperature: float = 0.02, min_similarity: float = 0.80) -> None:
        self._pack = pack
        self._embedder = embedder
        self._temperature = temperature
        self._min_similarity = min_similarity
        self._labels: list[str] = []
        self._vectors: np.ndarray | None = None

    async def load(self) -> None:
        texts: list[str] = []
        labels: list[str] = []
        for intent in self._pack.intents:
            for examples in intent.examples.values():
                texts += examples
                labels += [intent.name] * len(examples)
        self._vectors = await self._embedder.embed_queries(texts)
        self._labels = labels
        log.info("intent matcher: %d examples over %d intents", len(texts), len(self._pack.intents))

    async def rank(self, text: str, top_k: int) -> tuple[list[IntentScore], bool]:
        assert self._vectors is not None, "IntentMatcher.load() first"
        query = (await self._embedder.embed_queries([text]))[0]
        sims = self._vectors @ query
        per_intent: dict[str, list[float]] = {}
        for label, sim in zip(self._labels, sims.tolist(), strict=True):
            per_intent.setdefault(label, []).append(sim)
        scores = {name: float(np.mean(sorted(v, reverse=True)[:2])) for name, v in per_intent.items()}
        best = max(scores.values())
        exps = {name: math.exp((s - best) / self._temperature) for name, s in scores.items()}
        total = sum(exps.values())
        ranked = sorted((IntentScore(n, e / total) for n, e in exps.items()), key=lambda s: -s.confidence)
        return ranked[:top_k], best < self._min_similarity


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
