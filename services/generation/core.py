"""Generation core: a grounded reply from the language model, streamed."""

from __future__ import annotations

import logging
import time
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import AsyncIterator, Protocol

from services.errors import DeadlineExceeded, InvalidArgument, Unavailable
from services.generation.cache import CachedReply, ResponseCache
from services.generation.metrics import GenerationMetrics
from services.generation.prompt import ChatMessage, ReplyPrompt, build_messages, render_chatml
from services.generation.repetition import DEFAULT_LIMITS, RepetitionGuard, RepetitionLimits

log = logging.getLogger(__name__)


@dataclass
class Sampling:
    max_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    min_tokens: int = 0


@dataclass
class ReplyDelta:
    """New text, or (with ``finish_reason`` set) the end of the reply."""

    text: str
    finish_reason: str = ""
    completion_tokens: int = 0
    cached: bool = False
    degraded: bool = False


@dataclass
class ReplyContext:
    """What the caller knows about the reply beyond the prompt: it keys the cache."""

    intent: str = ""
    kb_version: int = 0  # 0: the passages' version is unknown, do not cache
    use_cache: bool = True


APOLOGY = {
    "zh": "抱歉，系统暂时无法生成回答。需要为您转人工客服吗？",
    "en": "Sorry, I can't answer that right now. Shall I connect you with a human agent?",
}


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

    def __init__(
        self, target: str, *, model: str, timeout_s: float, first_token_timeout_s: float | None = None, template: str = "qwen2.5"
    ) -> None:
        from services.serving.triton_client import LlmClient

        self._client = LlmClient(target, model=model)
        self._timeout_s = timeout_s
        self._first_token_timeout_s = first_token_timeout_s
        self._template = template

    async def stream(self, messages: list[ChatMessage], sampling: Sampling) -> AsyncIterator[ReplyDelta]:
        from services.serving.triton_client import ModelRejected, ModelTimeout, ModelUnavailable

        chunks = self._client.stream(
            render_chatml(messages, template=self._template), max_tokens=sampling.max_tokens, temperature=sampling.temperature, top_p=sampling.top_p,
            seed=sampling.seed, stop=list(sampling.stop), min_tokens=sampling.min_tokens, timeout_s=self._timeout_s,
            first_token_timeout_s=self._first_token_timeout_s,
        )
        try:
            # Closed explicitly: when this stream is closed early (a reply that loops,
            # a client that left) the gRPC stream, and the generation in Triton, are
            # cancelled now rather than whenever the generator is collected.
            async with aclosing(chunks):
                async for chunk in chunks:
                    yield ReplyDelta(chunk.text, chunk.finish_reason, chunk.completion_tokens)
        except ModelUnavailable as exc:
            raise Unavailable(f"language model unavailable: {exc}") from exc
        except ModelTimeout as exc:
            raise DeadlineExceeded(f"language model timed out: {exc}") from exc
        except ModelRejected as exc:
            raise InvalidArgument(f"the language model refused the request: {exc}") from exc

    async def close(self) -> None:
        await self._client.close()


@dataclass
class ReplyResult:
    text: str
    finish_reason: str
    completion_tokens: int
    time_to_first_token_ms: float
    cached: bool = False
    degraded: bool = False


REPETITION = "repetition"  # finish_reason of a reply stopped because it began repeating itself


async def _close(stream: AsyncIterator[ReplyDelta]) -> None:
    """Close a backend stream now: its cleanup cancels the generation on the server."""
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        await aclose()


class ReplyWriter:
    """Validates a request, serves hot questions from the cache, streams the
    model's reply, and degrades to the passage verbatim when the model fails.

    Every reply passes through a ``RepetitionGuard`` (``repetition=None`` turns it
    off): a small model can loop on one sentence until the token limit, so when the
    reply starts repeating itself the model is stopped, the repeat is not streamed,
    and the reply ends with ``finish_reason="repetition"``."""

    def __init__(
        self, llm: LlmBackend, *, default_max_tokens: int, max_tokens_limit: int = 1024,
        cache: ResponseCache | None = None, metrics: GenerationMetrics | None = None,
        repetition: RepetitionLimits | None = DEFAULT_LIMITS,
    ) -> None:
        self._llm = llm
        self._default_max_tokens = default_max_tokens
        self._max_tokens_limit = max_tokens_limit
        self._cache = cache
        self._metrics = metrics or GenerationMetrics(None)
        self._repetition = repetition

    def check(self, prompt: ReplyPrompt, sampling: Sampling) -> Sampling:
        if not prompt.user_message.strip():
            raise InvalidArgument("user_message must not be empty")
        if sampling.max_tokens < 0 or sampling.max_tokens > self._max_tokens_limit:
            raise InvalidArgument(f"max_tokens must be between 1 and {self._max_tokens_limit}")
        if not 0.0 <= sampling.temperature <= 2.0:
            raise InvalidArgument("temperature must be between 0 and 2")
        if not 0.0 <= sampling.top_p <= 1.0:
            raise InvalidArgument("top_p must be between 0 and 1")
        if sampling.min_tokens < 0 or (sampling.max_tokens and sampling.min_tokens > sampling.max_tokens):
            raise InvalidArgument("min_tokens must be between 0 and max_tokens")
        sampling.max_tokens = sampling.max_tokens or self._default_max_tokens
        sampling.top_p = sampling.top_p or 1.0
        return sampling

    def _cache_key(self, prompt: ReplyPrompt, sampling: Sampling, ctx: ReplyContext):
        if self._cache is None or not ctx.use_cache or ctx.kb_version <= 0 or sampling.temperature > 0:
            return None
        return ResponseCache.key(
            prompt.user_message, intent=ctx.intent, language=prompt.language, kb_version=ctx.kb_version,
            passages=tuple(p.doc_id for p in prompt.passages), instruction=prompt.instruction,
        )

    async def stream(self, prompt: ReplyPrompt, sampling: Sampling, ctx: ReplyContext | None = None) -> AsyncIterator[ReplyDelta]:
        """Deltas of the reply; the last one has ``finish_reason`` set and no text
        ("repetition" when the reply began repeating itself and the model was stopped)."""
        ctx = ctx or ReplyContext()
        sampling = self.check(prompt, sampling)
        key = self._cache_key(prompt, sampling, ctx)
        if key is not None:
            hit = self._cache.get(key, ctx.kb_version)  # type: ignore[union-attr]
            self._metrics.cache_lookup(hit is not None)
            if hit is not None:
                yield ReplyDelta(hit.text)
                yield ReplyDelta("", hit.finish_reason, hit.completion_tokens, cached=True)
                return
        # min_tokens forbids the end of the reply before a length the caller fixed
        # (benchmarks): that caller wants those tokens, repetitive or not.
        guard = RepetitionGuard(self._repetition) if self._repetition is not None and not sampling.min_tokens else None
        pieces: list[str] = []
        tokens = 0
        finish = ""
        tail = ""  # the rest of the reply once the guard has stopped the model
        llm_stream = self._llm.stream(build_messages(prompt), sampling)
        asked, first_text = time.perf_counter(), False
        try:
            async for delta in llm_stream:
                tokens = delta.completion_tokens or tokens
                finish = delta.finish_reason or finish
                if not delta.text:
                    continue
                if not first_text:
                    first_text = True
                    self._metrics.first_token(time.perf_counter() - asked)
                if guard is None:
                    pieces.append(delta.text)
                    yield ReplyDelta(delta.text)
                    continue
                text = guard.feed(delta.text)
                if guard.fired:
                    # Stop the model first (as for a client that left: closing the
                    # stream cancels the generation), then send what is left.
                    tail = text
                    await _close(llm_stream)
                    break
                if text:
                    pieces.append(text)
                    yield ReplyDelta(text)
        except (Unavailable, DeadlineExceeded) as exc:
            self._metrics.degraded()
            log.warning("model failed (%s): degrading", exc)
            held = guard.finish() if guard is not None else ""
            if held:
                pieces.append(held)
                yield ReplyDelta(held)
            if not pieces:
                yield ReplyDelta(prompt.passages[0].text if prompt.passages else APOLOGY.get(prompt.language, APOLOGY["en"]))
            yield ReplyDelta("", "degraded", tokens, degraded=True)
            return
        finally:
            await _close(llm_stream)
        if guard is not None:
            tail += guard.finish()
            if tail:
                pieces.append(tail)
                yield ReplyDelta(tail)
            if guard.fired:
                finish = REPETITION
                log.warning(
                    "reply began repeating itself (%s) after %d characters: model stopped, %d characters of repeat dropped: %r",
                    guard.reason, len(guard.text), len(guard.dropped), guard.dropped[:80],
                )
        finish = finish or "stop"
        self._metrics.reply_speed(tokens, time.perf_counter() - asked)
        if key is not None and finish in ("stop", REPETITION) and pieces:
            # A stopped loop is cached as the trimmed reply: greedy decoding would loop the same way again.
            self._cache.put(key, ctx.kb_version, CachedReply("".join(pieces), finish, tokens))  # type: ignore[union-attr]
        yield ReplyDelta("", finish, tokens)

    async def write(self, prompt: ReplyPrompt, sampling: Sampling, ctx: ReplyContext | None = None) -> ReplyResult:
        start = time.perf_counter()
        first: float | None = None
        pieces: list[str] = []
        last = ReplyDelta("")
        async for delta in self.stream(prompt, sampling, ctx):
            if delta.text:
                first = first if first is not None else time.perf_counter()
                pieces.append(delta.text)
            last = delta
        ttft = ((first or time.perf_counter()) - start) * 1000
        return ReplyResult("".join(pieces), last.finish_reason, last.completion_tokens, ttft, last.cached, last.degraded)
