"""A language model behind an OpenAI-compatible HTTP server, streamed.

``POST {base_url}/v1/chat/completions`` with ``stream: true`` answers with
Server-Sent Events (``data: {json}`` lines, ``data: [DONE]`` at the end), as vLLM,
SGLang, llama.cpp's llama-server and Ollama's ``/v1`` endpoint serve it. Ollama's
native ``POST {base_url}/api/chat`` (one JSON object a line) is spoken with
``protocol="ollama"``.

The server renders the chat template, so the messages go as they are. Errors
become kefu's domain errors: the server cannot be reached or fails (5xx) →
``Unavailable``; it rejects the request (4xx: unknown model, bad parameter) →
``InvalidArgument`` with its own message; no answer in time → ``DeadlineExceeded``.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, AsyncGenerator, AsyncIterator, Callable

import aiohttp

from services.errors import DeadlineExceeded, InvalidArgument, KefuError, ResourceExhausted, Unavailable
from services.generation.core import ReplyDelta, Sampling
from services.generation.prompt import ChatMessage

PROTOCOLS = ("openai", "ollama")

# Finish reasons of the servers, as kefu's "stop" / "length".
_FINISH = {
    "stop": "stop", "eos": "stop", "stop_sequence": "stop", "end_turn": "stop", "tool_calls": "stop",
    "length": "length", "max_tokens": "length",
}
# Seconds allowed for the TCP (and TLS) connection itself, within the other deadlines.
_CONNECT_TIMEOUT_S = 10.0


def openai_request_body(messages: list[ChatMessage], sampling: Sampling, *, model: str, thinking: bool = False) -> dict[str, Any]:
    """The JSON body of a streaming ``/v1/chat/completions`` request."""
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": m.role, "content": m.content} for m in messages],
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": sampling.max_tokens,
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
    }
    if sampling.seed is not None:
        body["seed"] = sampling.seed
    if sampling.stop:
        body["stop"] = list(sampling.stop)
    if not thinking:
        # Qwen3's template thinks unless told not to; vLLM and SGLang pass these to the
        # template (llama-server with --jinja too), templates without the flag ignore it.
        body["chat_template_kwargs"] = {"enable_thinking": False}
    return body


def ollama_request_body(messages: list[ChatMessage], sampling: Sampling, *, model: str, thinking: bool = False) -> dict[str, Any]:
    """The JSON body of a streaming Ollama ``/api/chat`` request."""
    options: dict[str, Any] = {
        "num_predict": sampling.max_tokens,
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
    }
    if sampling.seed is not None:
        options["seed"] = sampling.seed
    if sampling.stop:
        options["stop"] = list(sampling.stop)
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": m.role, "content": m.content} for m in messages],
        "stream": True,
        "options": options,
    }
    if not thinking:
        body["think"] = False
    return body


def _server_message(payload: Any, fallback: str) -> str:
    """The human-readable message of an error body, in the shapes the servers use:
    ``{"error": {"message": ...}}`` (OpenAI, llama.cpp, SGLang), ``{"message": ...}``
    (vLLM), ``{"error": "..."}`` (Ollama)."""
    if isinstance(payload, dict):
        err = payload.get("error")
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
        if isinstance(err, str) and err:
            return err
        if payload.get("message"):
            return str(payload["message"])
        if payload.get("detail"):
            return str(payload["detail"])
    return fallback


def _error_code(payload: Any) -> int:
    """The HTTP-like status an in-stream error object carries, or 0."""
    if not isinstance(payload, dict):
        return 0
    err = payload.get("error")
    for source in (err if isinstance(err, dict) else {}, payload):
        code = source.get("code")
        if isinstance(code, int):
            return code
        if isinstance(code, str) and code.isdigit():
            return int(code)
    return 0


def _error_for_status(status: int, message: str, url: str) -> KefuError:
    if status == 429:
        return ResourceExhausted(f"language model server {url} is overloaded (HTTP 429): {message}")
    if 400 <= status < 500:
        return InvalidArgument(f"language model server {url} rejected the request (HTTP {status}): {message}")
    return Unavailable(f"language model server {url} failed (HTTP {status}): {message}")


class _SseDecoder:
    """Bytes in, the data of complete Server-Sent Events out (``event: error`` and
    llama.cpp's non-standard ``error: {json}`` line come out as ("error", data))."""

    def __init__(self) -> None:
        self._buffer = b""
        self._data: list[str] = []
        self._event = ""

    def feed(self, chunk: bytes) -> list[tuple[str, str]]:
        self._buffer += chunk
        events: list[tuple[str, str]] = []
        # Split on b"\n" only: UTF-8 never has that byte inside a character, so a
        # Chinese character cut across two network reads is decoded whole.
        *lines, self._buffer = self._buffer.split(b"\n")
        for raw in lines:
            line = raw.rstrip(b"\r").decode("utf-8", errors="replace")
            if not line:
                events.extend(self._dispatch())
                continue
            if line.startswith(":"):
                continue  # a comment, e.g. a keep-alive
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "data":
                self._data.append(value)
            elif name == "event":
                self._event = value
            elif name == "error":
                events.append(("error", value))
        return events

    def close(self) -> list[tuple[str, str]]:
        """Events still pending when the stream ends (a last event with no blank line)."""
        events = self.feed(b"\n") if self._buffer else []
        return events + self._dispatch()

    def _dispatch(self) -> list[tuple[str, str]]:
        if not self._data:
            self._event = ""
            return []
        event = ("error" if self._event == "error" else "data", "\n".join(self._data))
        self._data, self._event = [], ""
        return [event]


class _StopStrings:
    """Cuts the reply at the first stop string, whatever the server did with it.

    vLLM, SGLang and llama-server leave the stop string out; some servers (e.g.
    ``transformers serve``) stop after it but send it. Text that could be the start
    of a stop string is held back until the next delta tells."""

    def __init__(self, stops: list[str]) -> None:
        self._stops = [s for s in stops if s]
        self._held = ""

    def push(self, text: str) -> tuple[str, bool]:
        """The text that can go out now, and whether a stop string was reached."""
        if not self._stops:
            return text, False
        buffer = self._held + text
        found = [i for i in (buffer.find(s) for s in self._stops) if i >= 0]
        if found:
            self._held = ""
            return buffer[: min(found)], True
        keep = max((n for s in self._stops for n in range(1, len(s)) if buffer.endswith(s[:n])), default=0)
        self._held = buffer[len(buffer) - keep:]
        return buffer[: len(buffer) - keep], False

    def flush(self) -> str:
        held, self._held = self._held, ""
        return held


class OpenAICompatibleLlm:
    """An ``LlmBackend`` over an OpenAI-compatible server (or Ollama's native API).

    ``timeout_s`` bounds the whole reply, ``first_token_timeout_s`` (default: the
    same) the wait for its first text. ``thinking=False`` asks Qwen3-style models
    not to think. ``base_url`` is the server's root; a trailing ``/v1`` is accepted.
    """

    def __init__(
        self, base_url: str, *, model: str, api_key: str = "", timeout_s: float, first_token_timeout_s: float | None = None,
        thinking: bool = False, protocol: str = "openai",
    ) -> None:
        if protocol not in PROTOCOLS:
            raise ValueError(f"unknown protocol {protocol!r}: expected one of {', '.join(PROTOCOLS)}")
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {base_url!r}")
        if not model:
            raise ValueError("model must name the served model")
        root = base_url.rstrip("/")
        if protocol == "openai" and root.endswith("/v1"):
            root = root[: -len("/v1")]
        self.url = root + ("/v1/chat/completions" if protocol == "openai" else "/api/chat")
        self.model = model
        self.protocol = protocol
        self._api_key = api_key
        self._timeout_s = timeout_s
        self._first_token_timeout_s = first_token_timeout_s if first_token_timeout_s is not None else timeout_s
        self._thinking = thinking
        self._session: aiohttp.ClientSession | None = None

    def request_body(self, messages: list[ChatMessage], sampling: Sampling) -> dict[str, Any]:
        build = openai_request_body if self.protocol == "openai" else ollama_request_body
        return build(messages, sampling, model=self.model, thinking=self._thinking)

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            headers = {"Accept": "text/event-stream" if self.protocol == "openai" else "application/x-ndjson"}
            if self._api_key:
                headers["Authorization"] = f"Bearer {self._api_key}"
            # Deadlines are enforced per read below; aiohttp's own total timeout would
            # also count the time the consumer spends between two deltas.
            self._session = aiohttp.ClientSession(
                headers=headers, timeout=aiohttp.ClientTimeout(total=None, sock_connect=_CONNECT_TIMEOUT_S)
            )
        return self._session

    async def stream(self, messages: list[ChatMessage], sampling: Sampling) -> AsyncIterator[ReplyDelta]:
        loop = asyncio.get_running_loop()
        start = loop.time()
        deadline = start + self._timeout_s
        first_deadline = min(deadline, start + self._first_token_timeout_s)
        got_text = False

        def remaining() -> float:
            return (deadline if got_text else first_deadline) - loop.time()

        body = self.request_body(messages, sampling)
        response: aiohttp.ClientResponse | None = None
        events: AsyncGenerator[ReplyDelta, None] | None = None
        finished = False
        try:
            try:
                async with asyncio.timeout(remaining()):
                    response = await self._client().post(self.url, json=body)
                    if response.status >= 400:
                        raise await self._http_error(response)
            except TimeoutError as exc:
                raise DeadlineExceeded(f"language model server {self.url} did not answer within {self._first_token_timeout_s:g} s") from exc
            except aiohttp.ClientConnectorError as exc:
                raise Unavailable(f"language model server {self.url} is unreachable: {exc.os_error or exc}") from exc
            except aiohttp.ClientError as exc:
                raise Unavailable(f"language model server {self.url} failed: {exc!r}") from exc

            events = self._events(response, remaining) if self.protocol == "openai" else self._ndjson(response, remaining)
            stops = _StopStrings(sampling.stop)
            async for delta in events:
                if delta.text:
                    got_text = True
                    text, stopped = stops.push(delta.text)
                    if text:
                        yield ReplyDelta(text)
                    if stopped:
                        # Generation past the stop string is not wanted: the connection
                        # is dropped below, which ends it on the server.
                        yield ReplyDelta("", "stop", 0)
                        return
                    continue
                held = stops.flush()
                if held:
                    yield ReplyDelta(held)
                yield delta
            finished = True
        finally:
            if events is not None:
                await events.aclose()
            if response is not None:
                if finished:
                    response.release()
                else:
                    # Cancelled or failed mid-reply: drop the connection so the server
                    # stops generating for nobody.
                    response.close()

    async def _read(self, response: aiohttp.ClientResponse, remaining: Callable[[], float]) -> bytes:
        """The next bytes of the body, within the current deadline; b"" at its end."""
        left = remaining()
        try:
            if left <= 0:
                raise TimeoutError
            async with asyncio.timeout(left):
                return await response.content.readany()
        except TimeoutError as exc:
            raise DeadlineExceeded(f"language model server {self.url} did not finish the reply in time") from exc
        except aiohttp.ClientError as exc:
            raise Unavailable(f"language model server {self.url} broke off the reply: {exc!r}") from exc

    async def _events(self, response: aiohttp.ClientResponse, remaining: Callable[[], float]) -> AsyncGenerator[ReplyDelta, None]:
        decoder = _SseDecoder()
        finish = ""
        tokens = 0
        done = False
        while not done:
            chunk = await self._read(response, remaining)
            events = decoder.feed(chunk) if chunk else decoder.close()
            for kind, data in events:
                if kind == "data" and data.strip() == "[DONE]":
                    done = True
                    break
                try:
                    payload = json.loads(data)
                except json.JSONDecodeError as exc:
                    if kind == "error":
                        raise Unavailable(f"language model server {self.url} failed mid-reply: {data[:500]}") from exc
                    raise Unavailable(f"language model server {self.url} sent an unreadable event: {data[:200]!r}") from exc
                if kind == "error" or (isinstance(payload, dict) and ("error" in payload or payload.get("object") == "error")):
                    raise self._stream_error(payload)
                usage = payload.get("usage") or {}
                tokens = int(usage.get("completion_tokens") or tokens)
                for choice in payload.get("choices") or []:
                    text = (choice.get("delta") or {}).get("content") or ""
                    if text:
                        yield ReplyDelta(text)
                    if choice.get("finish_reason"):
                        finish = self._finish(choice["finish_reason"])
            if not chunk:
                break
        if not done and not finish:
            raise Unavailable(f"language model server {self.url} closed the stream before the reply was finished")
        yield ReplyDelta("", finish or "stop", tokens)

    async def _ndjson(self, response: aiohttp.ClientResponse, remaining: Callable[[], float]) -> AsyncGenerator[ReplyDelta, None]:
        buffer = b""
        while True:
            chunk = await self._read(response, remaining)
            buffer += chunk if chunk else b"\n"
            *lines, buffer = buffer.split(b"\n")
            for raw in lines:
                if not raw.strip():
                    continue
                try:
                    payload = json.loads(raw.decode("utf-8", errors="replace"))
                except json.JSONDecodeError as exc:
                    raise Unavailable(f"language model server {self.url} sent an unreadable line: {raw[:200]!r}") from exc
                if payload.get("error"):
                    raise self._stream_error(payload)
                text = (payload.get("message") or {}).get("content") or ""
                if text:
                    yield ReplyDelta(text)
                if payload.get("done"):
                    yield ReplyDelta("", self._finish(payload.get("done_reason") or "stop"), int(payload.get("eval_count") or 0))
                    return
            if not chunk:
                raise Unavailable(f"language model server {self.url} closed the stream before the reply was finished")

    def _finish(self, reason: str) -> str:
        if reason in _FINISH:
            return _FINISH[reason]
        if reason == "abort":
            raise Unavailable(f"language model server {self.url} aborted the reply")
        return reason

    async def _http_error(self, response: aiohttp.ClientResponse) -> KefuError:
        raw = await response.read()
        text = raw.decode("utf-8", errors="replace").strip()
        try:
            message = _server_message(json.loads(text), text[:500])
        except json.JSONDecodeError:
            message = text[:500] or (response.reason or "")
        return _error_for_status(response.status, message, self.url)

    def _stream_error(self, payload: Any) -> KefuError:
        message = _server_message(payload, json.dumps(payload, ensure_ascii=False)[:500])
        code = _error_code(payload)
        if 400 <= code < 500:
            return _error_for_status(code, message, self.url)
        return Unavailable(f"language model server {self.url} failed mid-reply: {message}")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
