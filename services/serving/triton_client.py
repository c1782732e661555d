"""Async clients for kefu's Triton models (``llm`` streaming, ``embedder`` batched,
``intent_classifier`` batched and versioned).

The services never see tritonclient or gRPC errors: a model that cannot be reached
or is not loaded raises :class:`ModelUnavailable` (the services answer UNAVAILABLE),
a deadline raises :class:`ModelTimeout`, anything else the model reports raises
:class:`ModelError`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import AsyncIterator, Iterable, Sequence

import grpc
import numpy as np
import tritonclient.grpc.aio as grpcclient
from tritonclient.utils import InferenceServerException

from services.server import RECONNECT_OPTIONS

EMBEDDING_DIM = 384
EMBEDDER_MAX_BATCH = 64  # max_batch_size in model_repository/embedder/config.pbtxt
INTENT_MAX_BATCH = 64  # max_batch_size in model_repository/intent_classifier/config.pbtxt


class ModelError(Exception):
    """The model server answered with an error."""


class ModelUnavailable(ModelError):
    """The model server cannot be reached, or the model is not loaded."""


class ModelTimeout(ModelError):
    """The model did not answer within the deadline."""


class ModelRejected(ModelError):
    """The model server refused the request itself (e.g. a prompt longer than the
    model's context): retrying will not help, the request must change."""


@dataclass(frozen=True)
class LlmChunk:
    """New text since the previous chunk; ``finish_reason`` is set on the last one only."""

    text: str
    finish_reason: str  # "" | "stop" | "length" | "cancelled"
    completion_tokens: int


_UNAVAILABLE_CODES = {"StatusCode.UNAVAILABLE", "StatusCode.NOT_FOUND", "StatusCode.UNIMPLEMENTED"}
_UNAVAILABLE_WORDS = ("unknown model", "is not ready", "not found", "failed to connect", "unavailable")


def _translate(exc: BaseException, what: str) -> ModelError:
    """Map tritonclient / gRPC errors onto kefu's model errors."""
    if isinstance(exc, ModelError):
        return exc
    if isinstance(exc, grpc.aio.AioRpcError):
        code, msg = str(exc.code()), exc.details() or ""
    elif isinstance(exc, InferenceServerException):
        code, msg = str(exc.status() or ""), exc.message() or str(exc)
    else:
        code, msg = "", str(exc)
    if code == "StatusCode.DEADLINE_EXCEEDED" or "deadline exceeded" in msg.lower():
        return ModelTimeout(f"{what}: deadline exceeded")
    if code in _UNAVAILABLE_CODES or any(w in msg.lower() for w in _UNAVAILABLE_WORDS):
        return ModelUnavailable(f"{what}: {msg or code}")
    if code.endswith("INVALID_ARGUMENT") or "exceeds the context" in msg:
        return ModelRejected(f"{what}: {msg or code}")
    return ModelError(f"{what}: {msg or code or type(exc).__name__}")


def trace_headers() -> dict[str, str] | None:
    """The current span's W3C trace context (``traceparent``) as request headers: Triton, when
    traced (``telemetry.triton_traces_url``), continues the caller's trace with its spans."""
    from opentelemetry.propagate import inject

    carrier: dict[str, str] = {}
    inject(carrier)
    return carrier or None


def _bytes_input(name: str, values: Sequence[str], shape: list[int]) -> grpcclient.InferInput:
    arr = np.array([v.encode("utf-8") for v in values], dtype=np.object_).reshape(shape)
    tensor = grpcclient.InferInput(name, shape, "BYTES")
    tensor.set_data_from_numpy(arr)
    return tensor


def _scalar_input(name: str, value, datatype: str, dtype) -> grpcclient.InferInput:
    tensor = grpcclient.InferInput(name, [1], datatype)
    tensor.set_data_from_numpy(np.array([value], dtype=dtype))
    return tensor


def _first_str(result, name: str) -> str:
    arr = result.as_numpy(name)
    if arr is None or arr.size == 0:
        return ""
    v = arr.reshape(-1)[0]
    return v.decode("utf-8") if isinstance(v, bytes) else str(v)


class _TritonClient:
    """Owns one gRPC channel, created lazily on the running event loop."""

    def __init__(self, target: str):
        self.target = target
        self._client: grpcclient.InferenceServerClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _get(self) -> grpcclient.InferenceServerClient:
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            # A grpc.aio channel belongs to the loop it was made on; the short
            # reconnect backoff finds Triton again soon after it restarts.
            self._client = grpcclient.InferenceServerClient(self.target, channel_args=RECONNECT_OPTIONS)
            self._loop = loop
        return self._client

    async def ready(self, model: str) -> bool:
        """Whether ``model`` is loaded and ready; False when the server is unreachable."""
        try:
            return bool(await self._get().is_model_ready(model, client_timeout=5))
        except Exception:
            return False

    async def close(self) -> None:
        client, self._client, self._loop = self._client, None, None
        if client is not None:
            await client.close()


class LlmClient(_TritonClient):
    def __init__(self, target: str, model: str = "llm"):
        super().__init__(target)
        self.model = model

    async def stream(
        self,
        prompt: str,
        *,
        max_tokens: int,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int | None = None,
        stop: Iterable[str] = (),
        min_tokens: int = 0,
        timeout_s: float,
        first_token_timeout_s: float | None = None,
    ) -> AsyncIterator[LlmChunk]:
        """Stream the reply to a complete ChatML ``prompt``.

        ``timeout_s`` bounds the whole stream, ``first_token_timeout_s`` (optional) the
        wait for the first chunk. Leaving the loop early, or cancelling the consuming
        task, cancels the gRPC stream and with it the generation in Triton.
        """
        inputs = [
            _bytes_input("text_input", [prompt], [1]),
            _scalar_input("max_tokens", int(max_tokens), "INT32", np.int32),
            _scalar_input("temperature", float(temperature), "FP32", np.float32),
            _scalar_input("top_p", float(top_p), "FP32", np.float32),
        ]
        if seed is not None:
            inputs.append(_scalar_input("seed", int(seed), "INT64", np.int64))
        if min_tokens > 0:
            inputs.append(_scalar_input("min_tokens", int(min_tokens), "INT32", np.int32))
        stops = [s for s in stop if s]
        if stops:
            inputs.append(_bytes_input("stop", stops, [len(stops)]))
        request = {"model_name": self.model, "inputs": inputs}
        done = asyncio.Event()

        async def requests():
            yield request
            # Keep the request side open until the reply is complete.
            await done.wait()

        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        try:
            responses = self._get().stream_infer(requests(), stream_timeout=timeout_s, headers=trace_headers())
        except Exception as exc:
            raise _translate(exc, f"{self.model} at {self.target}") from exc
        finished = False
        first = True
        try:
            while True:
                budget = deadline - loop.time()
                if first and first_token_timeout_s is not None:
                    budget = min(budget, first_token_timeout_s)
                if budget <= 0:
                    raise ModelTimeout(f"{self.model}: no reply within the deadline")
                try:
                    result, error = await asyncio.wait_for(responses.__anext__(), budget)
                except StopAsyncIteration:
                    raise ModelError(f"{self.model}: stream ended without a final response") from None
                except asyncio.TimeoutError:
                    raise ModelTimeout(
                        f"{self.model}: no {'first ' if first else ''}token within the deadline"
                    ) from None
                except (grpc.aio.AioRpcError, InferenceServerException) as exc:
                    raise _translate(exc, f"{self.model} at {self.target}") from exc
                if error is not None:
                    raise _translate(error, self.model)
                first = False
                chunk = LlmChunk(
                    text=_first_str(result, "text_output"),
                    finish_reason=_first_str(result, "finish_reason"),
                    completion_tokens=int(result.as_numpy("completion_tokens").reshape(-1)[0]),
                )
                if chunk.finish_reason:
                    finished = True
                yield chunk
                if finished:
                    return
        finally:
            done.set()
            if not finished:
                # Consumer left early, was cancelled or failed: stop the generation.
                responses.cancel()


class EmbedderClient(_TritonClient):
    def __init__(self, target: str, model: str = "embedder", batch_size: int = EMBEDDER_MAX_BATCH):
        super().__init__(target)
        self.model = model
        self.batch_size = batch_size

    async def embed(self, texts: list[str], *, timeout_s: float) -> np.ndarray:
        """L2-normalised embeddings, shape ``[len(texts), 384]``. Prefix texts with
        ``"query: "`` or ``"passage: "``."""
        if not texts:
            return np.zeros((0, EMBEDDING_DIM), dtype=np.float32)
        client = self._get()

        async def one(batch: list[str]) -> np.ndarray:
            inp = _bytes_input("text", batch, [len(batch), 1])
            out = grpcclient.InferRequestedOutput("embedding")
            try:
                result = await client.infer(self.model, [inp], outputs=[out], client_timeout=timeout_s, headers=trace_headers())
            except Exception as exc:
                raise _translate(exc, f"{self.model} at {self.target}") from exc
            return result.as_numpy("embedding").astype(np.float32, copy=False)

        batches = [texts[i:i + self.batch_size] for i in range(0, len(texts), self.batch_size)]
        try:
            parts = await asyncio.wait_for(asyncio.gather(*(one(b) for b in batches)), timeout_s)
        except asyncio.TimeoutError:
            raise ModelTimeout(f"{self.model}: no reply within {timeout_s} s") from None
        return np.concatenate(parts, axis=0)


class IntentClassifierClient(_TritonClient):
    """Calls the versioned ``intent_classifier`` model, and loads its newest version."""

    def __init__(self, target: str, model: str = "intent_classifier", batch_size: int = INTENT_MAX_BATCH):
        super().__init__(target)
        self.model = model
        self.batch_size = batch_size

    async def classify(self, embeddings: np.ndarray, texts: Sequence[str], *, timeout_s: float):
        """Calibrated intent probabilities and the out-of-scope verdict for ``[n, 384]``
        L2-normalised e5 query embeddings and the ``n`` texts they embed: an
        :class:`services.serving.intent_model.IntentClassification`."""
        from services.serving.intent_model import IntentClassification

        x = np.ascontiguousarray(np.asarray(embeddings, dtype=np.float32).reshape(-1, EMBEDDING_DIM))
        if len(texts) != len(x):
            raise ValueError(f"{len(texts)} texts for {len(x)} embeddings")
        words = np.array([t.encode("utf-8") for t in texts], dtype=np.object_).reshape(-1, 1)
        client = self._get()
        names = ("probabilities", "labels", "similarity", "novelty", "out_of_scope")

        async def one(start: int):
            batch, text = x[start:start + self.batch_size], words[start:start + self.batch_size]
            inp = grpcclient.InferInput("embedding", list(batch.shape), "FP32")
            inp.set_data_from_numpy(batch)
            txt = grpcclient.InferInput("text", list(text.shape), "BYTES")
            txt.set_data_from_numpy(text)
            try:
                return await client.infer(self.model, [inp, txt], outputs=[grpcclient.InferRequestedOutput(n) for n in names],
                                          client_timeout=timeout_s, headers=trace_headers())
            except Exception as exc:
                raise _translate(exc, f"{self.model} at {self.target}") from exc

        try:
            results = await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(0, max(len(x), 1), self.batch_size))), timeout_s)
        except asyncio.TimeoutError:
            raise ModelTimeout(f"{self.model}: no reply within {timeout_s} s") from None
        labels = [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in results[0].as_numpy("labels")[0]] if len(x) else []
        for r in results[1:]:
            if [v.decode("utf-8") for v in r.as_numpy("labels")[0]] != labels:
                # A new version was swapped in between two batches of one call.
                raise ModelError(f"{self.model}: versions changed during one request, retry")

        def column(name: str) -> np.ndarray:
            return np.concatenate([r.as_numpy(name).reshape(-1) for r in results], axis=0)

        return IntentClassification(
            labels=labels,
            probabilities=np.concatenate([r.as_numpy("probabilities") for r in results], axis=0).astype(np.float32, copy=False),
            similarity=column("similarity"),
            novelty=column("novelty"),
            out_of_scope=column("out_of_scope").astype(bool),
            version=results[0].get_response().model_version,
        )

    async def load(self, *, timeout_s: float = 120) -> None:
        """``load_model``: Triton re-reads the model's folder, loads the newest version
        (``version_policy: latest 1``) and unloads the one it replaces."""
        try:
            await self._get().load_model(self.model, client_timeout=timeout_s)
        except Exception as exc:
            raise _translate(exc, f"loading {self.model} at {self.target}") from exc

    async def versions(self, *, timeout_s: float = 10) -> dict[int, str]:
        """``{version: state}`` from the repository index, e.g. ``{1: "UNAVAILABLE", 2: "READY"}``."""
        try:
            index = await self._get().get_model_repository_index(as_json=True, client_timeout=timeout_s)
        except Exception as exc:
            raise _translate(exc, f"repository index at {self.target}") from exc
        return {
            int(m["version"]): m.get("state", "")
            for m in index.get("models", [])
            if m.get("name") == self.model and str(m.get("version", "")).isdigit()
        }

    async def serving_version(self, *, timeout_s: float = 10) -> int:
        """The version that answers requests now (``ModelUnavailable`` if none is ready)."""
        try:
            meta = await self._get().get_model_metadata(self.model, as_json=True, client_timeout=timeout_s)
        except Exception as exc:
            raise _translate(exc, f"{self.model} at {self.target}") from exc
        ready = [int(v) for v in meta.get("versions", []) if str(v).isdigit()]
        if not ready:
            raise ModelUnavailable(f"{self.model}: no version is ready")
        return max(ready)
