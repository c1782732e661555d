"""gRPC face of Generation."""

from __future__ import annotations

import time
from typing import AsyncIterator

import grpc

from kefu.v1 import common_pb2, generation_pb2, generation_pb2_grpc
from services.errors import grpc_errors
from services.generation.core import ReplyContext, ReplyWriter, Sampling
from services.generation.prompt import PromptPassage, PromptTurn, ReplyPrompt

_ROLE = {
    common_pb2.ChatMessage.ROLE_CUSTOMER: "customer",
    common_pb2.ChatMessage.ROLE_ASSISTANT: "assistant",
    common_pb2.ChatMessage.ROLE_AGENT: "agent",
}


def to_prompt(req: generation_pb2.GenerateRequest) -> tuple[ReplyPrompt, Sampling, ReplyContext]:
    prompt = ReplyPrompt(
        user_message=req.user_message,
        language=req.language or "zh",
        passages=[PromptPassage(p.doc_id, p.title, p.text) for p in req.passages],
        history=[PromptTurn(_ROLE.get(m.role, "customer"), m.text) for m in req.history if m.role in _ROLE],
        instruction=req.instruction,
    )
    p = req.params
    sampling = Sampling(
        max_tokens=p.max_tokens, temperature=p.temperature, top_p=p.top_p, seed=p.seed or None, stop=list(p.stop), min_tokens=p.min_tokens
    )
    return prompt, sampling, ReplyContext(intent=req.intent, kb_version=req.kb_version, use_cache=not req.no_cache)


class GenerationServicer(generation_pb2_grpc.GenerationServicer):
    def __init__(self, writer: ReplyWriter) -> None:
        self._writer = writer

    @grpc_errors
    async def Generate(self, request: generation_pb2.GenerateRequest, context: grpc.aio.ServicerContext) -> generation_pb2.GenerateResponse:
        result = await self._writer.write(*to_prompt(request))
        return generation_pb2.GenerateResponse(
            text=result.text, finish_reason=result.finish_reason,
            usage=common_pb2.Usage(completion_tokens=result.completion_tokens),
            time_to_first_token_ms=result.time_to_first_token_ms, cached=result.cached, degraded=result.degraded,
        )

    @grpc_errors
    async def GenerateStream(
        self, request: generation_pb2.GenerateRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[generation_pb2.GenerateChunk]:
        start = time.perf_counter()
        ttft = 0.0
        pieces: list[str] = []
        async for delta in self._writer.stream(*to_prompt(request)):
            if delta.text:
                if not pieces:
                    ttft = (time.perf_counter() - start) * 1000
                pieces.append(delta.text)
                yield generation_pb2.GenerateChunk(delta=delta.text)
            elif delta.finish_reason:
                yield generation_pb2.GenerateChunk(
                    final=generation_pb2.GenerateResponse(
                        text="".join(pieces), finish_reason=delta.finish_reason,
                        usage=common_pb2.Usage(completion_tokens=delta.completion_tokens),
                        time_to_first_token_ms=ttft, cached=delta.cached, degraded=delta.degraded,
                    )
                )
