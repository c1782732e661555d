"""Dialog's view of the other kefu services: gRPC calls with deadlines,
failures translated to domain errors."""

from __future__ import annotations

import time
from typing import AsyncIterator, Awaitable, Callable, Sequence, TypeVar

import grpc

from kefu.v1 import (
    common_pb2,
    generation_pb2,
    generation_pb2_grpc,
    knowledge_pb2,
    knowledge_pb2_grpc,
    nlu_pb2,
    nlu_pb2_grpc,
)
from services.errors import from_rpc_error
from services.server import channel

T = TypeVar("T")

# A call that fails because the channel is still reconnecting (the service behind
# it has just started or restarted) is tried once more, waiting at most this long
# for the connection. The channels' reconnect backoff is at most 2 s (server.py).
RECONNECT_WAIT_S = 3.0


class Upstream:
    def __init__(self, *, nlu: str, knowledge: str, generation: str, call_timeout_s: float, generate_timeout_s: float) -> None:
        self._channels = [channel(nlu), channel(knowledge), channel(generation)]
        self._nlu = nlu_pb2_grpc.NLUStub(self._channels[0])
        self._knowledge = knowledge_pb2_grpc.KnowledgeStub(self._channels[1])
        self._generation = generation_pb2_grpc.GenerationStub(self._channels[2])
        self._call_timeout_s = call_timeout_s
        self._generate_timeout_s = generate_timeout_s

    async def analyze(self, text: str, *, language_hint: str, session_id: str) -> nlu_pb2.AnalyzeResponse:
        request = nlu_pb2.AnalyzeRequest(text=text, language_hint=language_hint, session_id=session_id)
        return await self._unary(self._nlu.Analyze, request, "NLU")

    async def search(
        self, query: str, *, locales: Sequence[str], top_k: int, tags: Sequence[str] = (),
        query_embedding: Sequence[float] = (), embedder_id: str = "",
    ) -> knowledge_pb2.SearchResponse:
        """``query_embedding``/``embedder_id``: ``query``'s e5 query embedding when NLU already
        made it (AnalyzeResponse), so that Knowledge does not embed it again."""
        request = knowledge_pb2.SearchRequest(
            query=query, locales=list(locales), top_k=top_k, tags=list(tags), query_embedding=query_embedding, embedder_id=embedder_id
        )
        return await self._unary(self._knowledge.Search, request, "Knowledge")

    async def _unary(self, method: Callable[..., Awaitable[T]], request, dependency: str) -> T:
        """One idempotent call within the deadline; UNAVAILABLE (typically a channel
        still in reconnect backoff) gets one more try that waits for the connection."""
        deadline = time.monotonic() + self._call_timeout_s
        try:
            return await method(request, timeout=self._call_timeout_s)
        except grpc.RpcError as err:
            if err.code() != grpc.StatusCode.UNAVAILABLE:
                raise from_rpc_error(err, dependency) from err
            first = err
        wait = min(RECONNECT_WAIT_S, deadline - time.monotonic())
        if wait <= 0:
            raise from_rpc_error(first, dependency) from first
        try:
            return await method(request, timeout=wait, wait_for_ready=True)
        except grpc.RpcError as err:
            # Still no connection when the wait ran out: report why the first try failed.
            cause = first if err.code() == grpc.StatusCode.DEADLINE_EXCEEDED else err
            raise from_rpc_error(cause, dependency) from err

    async def generate(self, request: generation_pb2.GenerateRequest) -> AsyncIterator[generation_pb2.GenerateChunk]:
        call = self._generation.GenerateStream(request, timeout=self._generate_timeout_s)
        try:
            async for chunk in call:
                yield chunk
        except grpc.RpcError as err:
            raise from_rpc_error(err, "Generation") from err
        finally:
            call.cancel()

    async def close(self) -> None:
        for ch in self._channels:
            await ch.close()


def history_message(role: str, text: str) -> common_pb2.ChatMessage:
    roles = {"customer": common_pb2.ChatMessage.ROLE_CUSTOMER, "assistant": common_pb2.ChatMessage.ROLE_ASSISTANT}
    return common_pb2.ChatMessage(role=roles[role], text=text)
