"""Intent classification of one customer message: the model interface and the matcher.

Knows nothing of gRPC. The classifier itself is trained by ``services/nlu/training.py``
and served by Triton (``services/serving/intent_model.py``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from services.embedding import Embedder
from services.errors import DeadlineExceeded, Unavailable

log = logging.getLogger(__name__)

OUT_OF_SCOPE = "oos"


@dataclass
class IntentScore:
    name: str
    confidence: float


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
