"""Dialog's view of the other kefu services: gRPC calls with deadlines,
failures translated to domain errors."""

from __future__ import annotations

from typing import AsyncIterator, Sequence

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


class Upstream:
    def __init__(self, *, nlu: str, knowledge: str, generation: str, call_timeout_s: float, generate_timeout_s: float) -> None:
        self._channels = [channel(nlu), channel(knowledge), channel(generation)]
        self._nlu = nlu_pb2_grpc.NLUStub(self._channels[0])
        self._knowledge = knowledge_pb2_grpc.KnowledgeStub(self._channels[1])
        self._generation = generation_pb2_grpc.GenerationStub(self._channels[2])
        self._call_timeout_s = call_timeout_s
        self._generate_timeout_s = generate_timeout_s

    async def analyze(self, text: str, *, language_hint: str, session_id: str) -> nlu_pb2.AnalyzeResponse:
        try:
            return await self._nlu.Analyze(
                nlu_pb2.AnalyzeRequest(text=text, language_hint=language_hint, session_id=session_id),
                timeout=self._call_timeout_s,
            )
        except grpc.RpcError as err:
            raise from_rpc_error(err, "NLU") from err

    async def search(self, query: str, *, locales: Sequence[str], top_k: int) -> knowledge_pb2.SearchResponse:
        try:
            return await self._knowledge.Search(
                knowledge_pb2.SearchRequest(query=query, locales=list(locales), top_k=top_k), timeout=self._call_timeout_s
            )
        except grpc.RpcError as err:
            raise from_rpc_error(err, "Knowledge") from err

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
