"""Intent classification of one customer message: the model interface and the matcher.

Knows nothing of gRPC. The classifier itself is trained by ``services/nlu/training.py``
and served by Triton (``services/serving/intent_model.py``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol, Sequence

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
    labels: list[str]  # may include OUT_OF_SCOPE when the training set had such examples
    probabilities: np.ndarray  # [n, len(labels)], calibrated
    similarity: np.ndarray  # [n], cosine to the closest training example
    novelty: np.ndarray  # [n], out-of-scope score
    out_of_scope: np.ndarray  # [n] bool, the classifier's out-of-scope verdict


class IntentModel(Protocol):
    """A trained intent classifier: calibrated probabilities for messages, given their
    e5 query embeddings and their texts."""

    async def classify(self, embeddings: np.ndarray, texts: Sequence[str]) -> IntentPredictions: ...


class TritonIntentModel:
    """The ``intent_classifier`` model in Triton (see services/nlu/training.py)."""

    def __init__(self, client, *, timeout_s: float = 10.0) -> None:
        self._client = client  # services.serving.triton_client.IntentClassifierClient
        self._timeout_s = timeout_s

    async def classify(self, embeddings: np.ndarray, texts: Sequence[str]) -> IntentPredictions:
        from services.serving.triton_client import ModelTimeout, ModelUnavailable

        try:
            return await self._client.classify(embeddings, texts, timeout_s=self._timeout_s)
        except ModelUnavailable as exc:
            raise Unavailable(f"intent model unavailable: {exc}") from exc
        except ModelTimeout as exc:
            raise DeadlineExceeded(f"intent model timed out: {exc}") from exc


class FallbackIntentModel:
    """Triton's ``intent_classifier``, and while Triton cannot be reached the newest version
    NLU published, run in this process (the same arithmetic): intents are still ranked and
    the request is marked degraded (services/degraded.py)."""

    def __init__(self, primary: IntentModel, model_dir, *, retry_s: float = 5.0) -> None:
        self._primary = primary
        self._model_dir = model_dir
        self._retry_s = retry_s
        self._down_until = 0.0
        self._local: tuple[int, LocalIntentModel] | None = None

    def _latest(self) -> LocalIntentModel:
        from pathlib import Path

        from services.nlu.training import intent_versions
        from services.serving.intent_model import IntentArtifact

        versions = intent_versions(Path(self._model_dir))
        if not versions:
            raise Unavailable(f"intent model unavailable and no published version in {self._model_dir}")
        if self._local is None or self._local[0] != versions[-1]:
            artifact = IntentArtifact.load(Path(self._model_dir) / str(versions[-1]))
            self._local = (versions[-1], LocalIntentModel(artifact))
        return self._local[1]

    async def classify(self, embeddings: np.ndarray, texts: Sequence[str]) -> IntentPredictions:
        import asyncio
        import logging
        import time

        from services import degraded

        if time.monotonic() >= self._down_until:
            try:
                return await self._primary.classify(embeddings, texts)
            except (Unavailable, DeadlineExceeded) as exc:
                logging.getLogger(__name__).warning("intent model: %s; classifying in process for %.0f s", exc, self._retry_s)
                self._down_until = time.monotonic() + self._retry_s
        degraded.note("intent_classifier")
        local = await asyncio.to_thread(self._latest)
        return local.classify_now(embeddings, texts)


class LocalIntentModel:
    """A trained :class:`~services.serving.intent_model.IntentArtifact` in this process
    (``kefu eval intents``, tests): the same arithmetic Triton runs."""

    def __init__(self, artifact) -> None:
        self.artifact = artifact

    async def classify(self, embeddings: np.ndarray, texts: Sequence[str]) -> IntentPredictions:
        return self.classify_now(embeddings, texts)

    def classify_now(self, embeddings: np.ndarray, texts: Sequence[str]) -> IntentPredictions:
        from services.serving.intent_model import IntentClassification

        probabilities, similarity, novelty, out_of_scope = self.artifact.predict(embeddings, list(texts))
        return IntentClassification(list(self.artifact.labels), probabilities, similarity, novelty, out_of_scope,
                                    str(self.artifact.meta.get("version", "")))


class IntentMatcher:
    """Intent by a classifier over the message's e5 embedding and its words.

    The classifier (trained on the domain pack's example utterances, served by Triton)
    gives one calibrated probability per intent and says whether the message is out of
    scope: a softmax always picks some intent, also for "who won the match?", so the
    classifier also scores how far the message is from every intent (its threshold is
    set in training, see services/nlu/training.py). An ``oos`` class, when the training
    set has one, is never ranked: it only makes the message out of scope.
    """

    def __init__(self, embedder: Embedder, model: IntentModel) -> None:
        self._embedder = embedder
        self._model = model

    async def rank(self, text: str, top_k: int) -> tuple[list[IntentScore], bool]:
        """The ``top_k`` intents, most likely first, and whether the message is out of scope."""
        query = await self._embedder.embed_queries([text])
        ranked, out_of_scope, _ = await self.rank_embedded(text, query[0], top_k)
        return ranked, out_of_scope

    @property
    def embedder_id(self) -> str:
        """The weights behind :meth:`embed` (``model_id`` of the embedder, services/embedding.py); "" when unknown."""
        return str(getattr(self._embedder, "model_id", "") or "")

    async def embed(self, text: str) -> np.ndarray:
        """The message's e5 query embedding (what :meth:`rank_embedded` takes; other readers reuse it)."""
        return np.asarray((await self._embedder.embed_queries([text]))[0], dtype=np.float32)

    async def rank_embedded(self, text: str, embedding: np.ndarray, top_k: int) -> tuple[list[IntentScore], bool, float]:
        """:meth:`rank` for a message whose embedding is already known, with the probability
        of the ``oos`` class (the pack's out-of-scope examples; 0 without any)."""
        query = np.asarray(embedding, dtype=np.float32).reshape(1, -1)
        prediction = await self._model.classify(query, [text])
        probabilities = np.asarray(prediction.probabilities, dtype=np.float64).reshape(len(query), -1)[0]
        ranked = sorted(
            (IntentScore(name, float(p)) for name, p in zip(prediction.labels, probabilities.tolist(), strict=True)
             if name != OUT_OF_SCOPE),
            key=lambda s: -s.confidence,
        )
        out_of_scope = bool(np.asarray(prediction.out_of_scope).reshape(-1)[0])
        labels = list(prediction.labels)
        off_topic = float(probabilities[labels.index(OUT_OF_SCOPE)]) if OUT_OF_SCOPE in labels else 0.0
        return ranked[:top_k], out_of_scope, off_topic
