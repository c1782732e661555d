"""Generation core: a grounded reply from the language model, streamed."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import AsyncIterator, Protocol

from services.errors import DeadlineExceeded, InvalidArgument, Unavailable
from services.generation.prompt import ChatMessage, ReplyPrompt, build_messages, render_chatml


@dataclass
class Sampling:
    max_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop: list[str] = field(default_factory=list)


@dataclass
class ReplyDelta:
    """New text, or (with ``finish_reason`` set) the end of the reply."""

    text: str
    finish_reason: str = ""
    completion_tokens: int = 0


class LlmBackend(Protocol):
    """A language model that streams a reply to a conversation.

    Implementations raise ``Unavailable`` when the model server cannot be reached
    and ``DeadlineExceeded`` when it does not answer in time.
    """

    def stream(self, messages: list[ChatMessage], sampling: Sampling) -> AsyncIterator[ReplyDelta]: ...
    async def close(self) -> None: ...


class TritonLlm:
    """The ``llm`` model of the Triton repository, over Triton's gRPC streaming API.
    The prompt is rendered here with the Qwen chat template."""

    def __init__(self, target: str, *, model: str, timeout_s: float, template: str = "qwen2.5") -> None:
        from services.serving.triton_client import LlmClient

        self._client = LlmClient(target, model=model)
        self._timeout_s = timeout_s
        self._template = template

    async def stream(self, messages: list[ChatMessage], sampling: Sampling) -> AsyncIterator[ReplyDelta]:
        from services.serving.triton_client import ModelTimeout, ModelUnavailable

        try:
            async for chunk in self._client.stream(
                render_chatml(messages, template=self._template), max_tokens=sampling.max_tokens, temperature=sampling.temperature, top_p=sampling.top_p,
                seed=sampling.seed, stop=list(sampling.stop), timeout_s=self._timeout_s,
            ):
                yield ReplyDelta(chunk.text, chunk.finish_reason, chunk.completion_tokens)
        except ModelUnavailable as exc:
            raise Unavailable(f"language model unavailable: {exc}") from exc
        except ModelTimeout as exc:
            raise DeadlineExceeded(f"language model timed out: {exc}") from exc

    async def close(self) -> None:
        await self._client.close()


@dataclass
class ReplyResult:
    text: str
    finish_reason: str
    completion_tokens: int
    time_to_first_token_ms: float


class ReplyWriter:
    """Validates a request, assembles the prompt and streams the model's reply."""

    def __init__(self, llm: LlmBackend, *, default_max_tokens: int, max_tokens_limit: int = 1024) -> None:
        self._llm = llm
        self._default_max_tokens = default_max_tokens
        self._max_tokens_limit = max_tokens_limit

    def check(self, prompt: ReplyPrompt, sampling: Sampling) -> Sampling:
        if not prompt.user_message.strip():
            raise InvalidArgument("user_message must not be empty")
        if sampling.max_tokens < 0 or sampling.max_tokens > self._max_tokens_limit:
            raise InvalidArgument(f"max_tokens must be between 1 and {self._max_tokens_limit}")
        if not 0.0 <= sampling.temperature <= 2.0:
            raise InvalidArgument("temperature must be between 0 and 2")
        if not 0.0 <= sampling.top_p <= 1.0:
            raise InvalidArgument("top_p must be between 0 and 1")
        sampling.max_tokens = sampling.max_tokens or self._default_max_tokens
        sampling.top_p = sampling.top_p or 1.0
        return sampling

    async def stream(self, prompt: ReplyPrompt, sampling: Sampling) -> AsyncIterator[ReplyDelta]:
        """Deltas of the reply; the last one has ``finish_reason`` set and no text."""
        sampling = self.check(prompt, sampling)
        tokens = 0
        finish = ""
        async for delta in self._llm.stream(build_messages(prompt), sampling):
            if delta.text:
                yield ReplyDelta(delta.text)
            tokens = delta.completion_tokens or tokens
            finish = delta.finish_reason or finish
        yield ReplyDelta("", finish or "stop", tokens)

    async def write(self, prompt: ReplyPrompt, sampling: Sampling) -> ReplyResult:
        start = time.perf_counter()
        first: float | None = None
        pieces: list[str] = []
        last = ReplyDelta("")
        async for delta in self.stream(prompt, sampling):
            if delta.text:
                first = first if first is not None else time.perf_counter()
                pieces.append(delta.text)
            last = delta
        ttft = ((first or time.perf_counter()) - start) * 1000
        return ReplyResult("".join(pieces), last.finish_reason, last.completion_tokens, ttft)
