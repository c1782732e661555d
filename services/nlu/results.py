"""What NLU finds in a message: plain data shared by the extractors and the analyzer."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class EntityMatch:
    type: str
    text: str
    value: str
    start: int
    end: int
    confidence: float = 1.0
    # Where it came from: "rule" (a validated pattern) or "tagger" (the learned slot tagger).
    source: str = "rule"


@dataclass
class SentimentReading:
    polarity: str  # negative | neutral | positive
    confidence: float
    dissatisfaction: float
