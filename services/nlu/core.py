"""NLU core: understands one customer message. Knows nothing of gRPC."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from services.embedding import Embedder
from services.errors import DeadlineExceeded, Unavailable
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


class IntentPredictions(Protocol):
    labels: list[str]
    probabilities: np.ndarray  # [n, len(labels)], calibrated
    similarity: np.ndarray  # [n], cosine to the closest training example


class IntentModel(Protocol):
    """A trained intent classifier: calibrated probabilities for e5 query embeddings."""

    async def classify(self, embeddings: np.ndarray) -> IntentPredictions: ...


class TritonIntentModel:
    """The ``intent_classifier`` model in Triton (see services/nlu/training.py)."""

    def __init__(self, client, *, timeout_s: float = 10.0) -> None:
        self._client = client  # services.serving.triton_client.IntentClassifierClient
        self._timeout_s = timeout_s

    async def classify(self, embeddings: np.ndarray) -> IntentPredictions:
        from services.serving.triton_client import ModelTimeout, ModelUnavailable

        try:
            return await self._client.classify(embeddings, timeout_s=self._timeout_s)
        except ModelUnavailable as exc:
            raise Unavailable(f"intent model unavailable: {exc}") from exc
        except ModelTimeout as exc:
            raise DeadlineExceeded(f"intent model timed out: {exc}") from exc


class IntentMatcher:
    """Intent by a classifier over the message's e5 embedding.

    The classifier (a calibrated logistic regression trained on the domain pack's
    example utterances, served by Triton) gives one probability per intent. A message
    is out of scope when no intent is likely enough, or when it is far from every
    example: a softmax always picks some intent, also for "who won the match?".
    """

    def __init__(self, embedder: Embedder, model: IntentModel, *, min_probability: float = 0.5, min_similarity: float = 0.86) -> None:
        self._embedder = embedder
        self._model = model
        self._min_probability = min_probability
        self._min_similarity = min_similarity

    async def rank(self, text: str, top_k: int) -> tuple[list[IntentScore], bool]:
        query = await self._embedder.embed_queries([text])
        prediction = await self._model.classify(query)
        probabilities = np.asarray(prediction.probabilities, dtype=np.float64).reshape(len(query), -1)[0]
        ranked = sorted(
            (IntentScore(name, float(p)) for name, p in zip(prediction.labels, probabilities.tolist(), strict=True)),
            key=lambda s: -s.confidence,
        )
        similarity = float(np.asarray(prediction.similarity).reshape(-1)[0])
        out_of_scope = ranked[0].confidence < self._min_probability or similarity < self._min_similarity
        return ranked[:top_k], out_of_scope


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
