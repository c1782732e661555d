"""NLU core: understands one customer message. Knows nothing of gRPC.

    text ─ Preprocessor ─> normalized, language, masked (PII), flags (lexicon, injection)
         ─ IntentMatcher(masked) ─> intent candidates, margin, out of scope
         ─ EntityReader(normalized) ─> order ids, phones, dates, amounts, addresses, open slots
         ─ SentimentReader(masked) ─> polarity, dissatisfaction
         ─ the masked text's e5 query embedding and the embedder's id, for Knowledge to reuse

Entities are found on the normalized text (their offsets point into it); an entity that
covers masked personal data shows the placeholder as its ``text`` and keeps the value
(Dialog and the workflows need the phone number; logs and the model see the placeholder).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Protocol

import numpy as np

from services.nlu.intents import IntentMatcher, IntentScore
from services.nlu.preprocess import Preprocessor
from services.nlu.results import EntityMatch, SentimentReading
from services.nlu.text import MaskedText

log = logging.getLogger(__name__)


@dataclass
class Understanding:
    language: str
    normalized_text: str
    masked: MaskedText
    intents: list[IntentScore]
    margin: float
    out_of_scope: bool
    # Probability of the pack's out-of-scope class (intents.yaml `out_of_scope`), 0 without one.
    off_topic: float = 0.0
    entities: list[EntityMatch] = field(default_factory=list)
    sentiment: SentimentReading = field(default_factory=lambda: SentimentReading("neutral", 0.5, 0.0))
    flags: list[str] = field(default_factory=list)
    # The e5 query embedding of ``masked.text`` (L2-normalised) and the id of the embedder
    # that made it: Knowledge reuses it instead of embedding the message again.
    embedding: np.ndarray | None = None
    embedder_id: str = ""


class EntityReader(Protocol):
    def extract(self, text: str, *, reference_time: datetime, language: str) -> list[EntityMatch]: ...


class SentimentReader(Protocol):
    def read(self, text: str, embedding: np.ndarray | None = None) -> SentimentReading: ...


def _show_masked(entity: EntityMatch, masked: MaskedText) -> EntityMatch:
    """The entity as the masked message shows it: a span over personal data reads as its placeholder(s)."""
    covered = [s for s in masked.spans if s.start < entity.end and entity.start < s.end]
    if not covered:
        return entity
    return EntityMatch(entity.type, " ".join(s.placeholder for s in covered), entity.value, entity.start, entity.end,
                       entity.confidence, entity.source)


class MessageAnalyzer:
    """Turns a raw customer message into an ``Understanding``."""

    def __init__(
        self, matcher: IntentMatcher, *, preprocessor: Preprocessor, entities: EntityReader, sentiment: SentimentReader
    ) -> None:
        self._matcher = matcher
        self._preprocessor = preprocessor
        self._entities = entities
        self._sentiment = sentiment

    async def analyze(
        self, text: str, *, language_hint: str = "", top_k: int = 3, reference_time: datetime | None = None
    ) -> Understanding:
        pre = self._preprocessor.process(text, language_hint=language_hint)
        masked = pre.masked
        embedding = await self._matcher.embed(masked.text)
        intents, out_of_scope, off_topic = await self._matcher.rank_embedded(masked.text, embedding, max(top_k, 2))
        margin = intents[0].confidence - intents[1].confidence if len(intents) > 1 else intents[0].confidence
        when = reference_time or datetime.now(timezone.utc)
        entities = [_show_masked(e, masked) for e in self._entities.extract(pre.normalized, reference_time=when, language=pre.language)]
        return Understanding(
            language=pre.language,
            normalized_text=pre.normalized,
            masked=masked,
            intents=intents[:top_k],
            margin=margin,
            out_of_scope=out_of_scope,
            off_topic=off_topic,
            entities=entities,
            sentiment=self._sentiment.read(masked.text, embedding),
            flags=list(pre.flags),
            embedding=embedding,
            embedder_id=self._matcher.embedder_id,
        )
