"""The OpenAI-compatible generation backend (and Ollama's native API).

Against a real server (``openai_server``, skipped when none is available): the
reply streams, ends with its finish reason, honours max_tokens, greedy sampling and
stop strings, and keeps Chinese whole. Always: request bodies, SSE / NDJSON parsing
and error mapping, on a loopback server that replays byte streams in the shapes
llama-server, vLLM and Ollama send (written from their documented and observed
output, not captured from this machine), plus unreachable servers and cancellation.
"""

from __future__ import annotations

import asyncio
import json
import re

import pytest

from services.config import KefuConfig
from services.errors import DeadlineExceeded, InvalidArgument, ResourceExhausted, Unavailable
from services.generation.backends import make_llm_backend
from services.generation.core import ReplyDelta, ReplyWriter, Sampling, TritonLlm
from services.generation.openai_backend import (
    OpenAICompatibleLlm,
    _SseDecoder,
    _StopStrings,
    ollama_request_body,
    openai_request_body,
)
from services.generation.prompt import ChatMessage, PromptPassage, ReplyPrompt
from services.processes import free_port
from tests import openai_server as servers
from tests.openai_server import OpenAIServer, Reply, ReplayServer

# The fixtures, made visible to this module's tests.
openai_server = servers.openai_server
replay_server = servers.replay_server

MESSAGES = [ChatMessage("system", "You are a helpful assistant."), ChatMessage("user", "Say hello.")]


async def collect(llm: OpenAICompatibleLlm, messages: list[ChatMessage], sampling: Sampling) -> list[ReplyDelta]:
    return [delta async for delta in llm.stream(messages, sampling)]


def text_of(deltas: list[ReplyDelta]) -> str:
    return "".join(d.text for d in deltas)


def sse(*payloads: object) -> list[bytes]:
    return [b"data: " + json.dumps(p, ensure_ascii=False).encode() + b"\n\n" for p in payloads] + [b"data: [DONE]\n\n"]


# --- recorded shapes -------------------------------------------------------------------

def llama_server_stream() -> list[bytes]:
    """llama-server: a role chunk with null content, one chunk per token, the finish
    reason in an empty delta carrying usage and timings, then [DONE]."""
    base = {"created": 1754523863, "id": "chatcmpl-X6ur", "model": "qwen", "system_fingerprint": "b6097-9515c613",
            "object": "chat.completion.chunk"}
    chunks = [{"choices": [{"finish_reason": None, "index": 0, "delta": {"role": "assistant", "content": None}}], **base}]
    for piece in ["您好", "！", "退货", "请在", "7天内申请。"]:
        chunks.append({"choices": [{"finish_reason": None, "index": 0, "delta": {"content": piece}}], **base})
    chunks.append({"choices": [{"finish_reason": "stop", "index": 0, "delta": {}}], **base,
                   "usage": {"completion_tokens": 6, "prompt_tokens": 30, "total_tokens": 36},
                   "timings": {"prompt_n": 30, "predicted_n": 6, "predicted_per_second": 48.2}})
    return sse(*chunks)


def vllm_stream() -> list[bytes]:
    """vLLM: role chunk with "", the finish reason on the last text chunk, then a usage
    chunk with no choices (stream_options.include_usage), then [DONE]."""
    base = {"id": "chatcmpl-9f2", "object": "chat.completion.chunk", "created": 1760000000, "model": "Qwen/Qwen3-4B"}
    choice = {"index": 0, "logprobs": None, "finish_reason": None}
    return sse(
        {**base, "choices": [{**choice, "delta": {"role": "assistant", "content": ""}}]},
        {**base, "choices": [{**choice, "delta": {"content": "Hello"}}]},
        {**base, "choices": [{**choice, "delta": {"content": "! How"}}]},
        {**base, "choices": [{**choice, "delta": {"content": " can I"}, "finish_reason": "length", "stop_reason": None}]},
        {**base, "choices": [], "usage": {"prompt_tokens": 12, "total_tokens": 17, "completion_tokens": 5}},
    )


def ollama_stream() -> list[bytes]:
    def line(obj: object) -> bytes:
        return json.dumps(obj, ensure_ascii=False).encode() + b"\n"

    base = {"model": "qwen3:0.6b", "created_at": "2025-10-01T08:00:00.000000Z"}
    return [
        line({**base, "message": {"role": "assistant", "content": "您"}, "done": False}),
        line({**base, "message": {"role": "assistant", "content": "好，"}, "done": False}),
        line({**base, "message": {"role": "assistant", "content": "请问"}, "done": False}),
        line({**base, "message": {"role": "assistant", "content": ""}, "done_reason": "length", "done": True,
              "total_duration": 312000000, "prompt_eval_count": 20, "eval_count": 3, "eval_duration": 90000000}),
    ]


# --- request bodies --------------------------------------------------------------------

def test_openai_body_carries_messages_sampling_and_thinking_off():
    body = openai_request_body(MESSAGES, Sampling(max_tokens=7, temperature=0.3, top_p=0.9, seed=11, stop=["\n\n"]), model="m")
    assert body == {
        "model": "m",
        "messages": [{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": "Say hello."}],
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": 7, "temperature": 0.3, "top_p": 0.9, "seed": 11, "stop": ["\n\n"],
        "chat_template_kwargs": {"enable_thinking": False},
    }
    json.dumps(body)  # serialisable as it is


def test_openai_body_leaves_out_what_is_unset():
    body = openai_request_body(MESSAGES, Sampling(max_tokens=5), model="m", thinking=True)
    assert "seed" not in body and "stop" not in body and "chat_template_kwargs" not in body
    assert body["temperature"] == 0.0 and body["top_p"] == 1.0


def test_ollama_body_uses_options_and_think_false():
    body = ollama_request_body(MESSAGES, Sampling(max_tokens=9, temperature=0.0, top_p=1.0, seed=3, stop=["。"]), model="qwen3:0.6b")
    assert body == {
        "model": "qwen3:0.6b",
        "messages": [{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": "Say hello."}],
        "stream": True,
        "options": {"num_predict": 9, "temperature": 0.0, "top_p": 1.0, "seed": 3, "stop": ["。"]},
        "think": False,
    }
    assert "think" not in ollama_request_body(MESSAGES, Sampling(max_tokens=1), model="x", thinking=True)


def test_urls():
    assert OpenAICompatibleLlm("http://h:8000", model="m", timeout_s=1).url == "http://h:8000/v1/chat/completions"
    assert OpenAICompatibleLlm("http://h:8000/v1/", model="m", timeout_s=1).url == "http://h:8000/v1/chat/completions"
    assert OpenAICompatibleLlm("http://h:11434/", model="m", timeout_s=1, protocol="ollama").url == "http://h:11434/api/chat"
    with pytest.raises(ValueError, match="protocol"):
        OpenAICompatibleLlm("http://h", model="m", timeout_s=1, protocol="grpc")
    with pytest.raises(ValueError, match="http"):
        OpenAICompatibleLlm("h:8000", model="m", timeout_s=1)


# --- SSE decoding ----------------------------------------------------------------------

def test_sse_decoder_byte_by_byte_keeps_chinese_whole():
    stream = "data: {\"t\": \"退货政策\"}\r\n\r\n: ping\n\nevent: error\ndata: {\"x\":\ndata: 1}\n\nerror: {\"m\": 1}\n\ndata: [DONE]".encode()
    decoder = _SseDecoder()
    events = []
    for i in range(len(stream)):
        events += decoder.feed(stream[i:i + 1])
    events += decoder.close()
    assert events == [("data", '{"t": "退货政策"}'), ("error", '{"x":\n1}'), ("error", '{"m": 1}'), ("data", "[DONE]")]
    assert "\ufffd" not in "".join(data for _, data in events)


def test_stop_strings_cut_the_text_even_across_deltas():
    stops = _StopStrings(["<END>", "。"])
    assert stops.push("您好<") == ("您好", False)
    assert stops.push("EN") == ("", False)
    assert stops.push("D>后面") == ("", True)
    stops = _StopStrings(["<END>"])
    assert stops.push("a<E") == ("a", False)
    assert stops.push("x") == ("<Ex", False)
    assert stops.push("<EN") == ("", False) and stops.flush() == "<EN"
    assert _StopStrings([]).push("<END>") == ("<END>", False)


async def test_a_stop_string_the_server_sends_is_cut(replay_server: ReplayServer):
    def piece(text: str) -> dict:
        return {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}

    replay_server.reply = Reply(sse(piece("1,2,"), piece("3,"), piece("4,5"), {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}))
    llm = OpenAICompatibleLlm(replay_server.base_url, model="m", timeout_s=10)
    try:
        deltas = await collect(llm, MESSAGES, Sampling(max_tokens=9, stop=["3,4"]))
        assert text_of(deltas) == "1,2," and deltas[-1].finish_reason == "stop"
        deltas = await collect(llm, MESSAGES, Sampling(max_tokens=9, stop=["4,5,6"]))  # held back, then released at the end
        assert text_of(deltas) == "1,2,3,4,5" and deltas[-1].finish_reason == "stop"
    finally:
        await llm.close()


# --- streams from the replay server ----------------------------------------------------

async def test_llama_server_stream(replay_server: ReplayServer):
    replay_server.reply = Reply(llama_server_stream())
    llm = OpenAICompatibleLlm(replay_server.base_url, model="qwen", api_key="sk-test", timeout_s=10)
    try:
        deltas = await collect(llm, MESSAGES, Sampling(max_tokens=16, seed=1, stop=["\n"]))
    finally:
        await llm.close()
    assert [d.text for d in deltas[:-1]] == ["您好", "！", "退货", "请在", "7天内申请。"]
    assert deltas[-1] == ReplyDelta("", "stop", 6)
    sent = replay_server.requests[0]
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["Authorization"] == "Bearer sk-test"
    assert sent.body["messages"][1] == {"role": "user", "content": "Say hello."}
    assert sent.body["stream"] is True and sent.body["max_tokens"] == 16 and sent.body["stop"] == ["\n"]


async def test_vllm_stream_takes_tokens_from_the_usage_chunk(replay_server: ReplayServer):
    replay_server.reply = Reply(vllm_stream(), delay=0.01)
    llm = OpenAICompatibleLlm(replay_server.base_url + "/v1", model="Qwen/Qwen3-4B", timeout_s=10)
    try:
        deltas = await collect(llm, MESSAGES, Sampling(max_tokens=5))
    finally:
        await llm.close()
    assert text_of(deltas) == "Hello! How can I"
    assert deltas[-1] == ReplyDelta("", "length", 5)
    assert "Authorization" not in replay_server.requests[0].headers
    assert replay_server.requests[0].path == "/v1/chat/completions"


async def test_ollama_native_stream(replay_server: ReplayServer):
    replay_server.reply = Reply(ollama_stream(), content_type="application/x-ndjson", delay=0.01)
    llm = OpenAICompatibleLlm(replay_server.base_url, model="qwen3:0.6b", timeout_s=10, protocol="ollama")
    try:
        deltas = await collect(llm, MESSAGES, Sampling(max_tokens=3))
    finally:
        await llm.close()
    assert text_of(deltas) == "您好，请问"
    assert deltas[-1] == ReplyDelta("", "length", 3)
    assert replay_server.requests[0].path == "/api/chat"
    assert replay_server.requests[0].body["options"]["num_predict"] == 3 and replay_server.requests[0].body["think"] is False


async def test_reply_writer_over_the_backend(replay_server: ReplayServer):
    replay_server.reply = Reply(llama_server_stream())
    llm = OpenAICompatibleLlm(replay_server.base_url, model="qwen", timeout_s=10)
    try:
        writer = ReplyWriter(llm, default_max_tokens=32)
        prompt = ReplyPrompt("怎么退货？", language="zh", passages=[PromptPassage("faq-1", "退货", "7天内可申请退货。")])
        result = await writer.write(prompt, Sampling(max_tokens=0))
    finally:
        await llm.close()
    assert result.text == "您好！退货请在7天内申请。" and result.finish_reason == "stop" and result.completion_tokens == 6
    sent = replay_server.requests[0].body
    assert sent["max_tokens"] == 32 and "7天内可申请退货" in sent["messages"][-1]["content"]


# --- errors ----------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("status", "body", "error", "message"),
    [
        (404, {"object": "error", "message": "The model `nope` does not exist.", "type": "NotFoundError", "param": None, "code": 404},
         InvalidArgument, "The model `nope` does not exist."),
        (400, {"error": {"code": 400, "message": "the request exceeds the available context size", "type": "exceed_context_size_error"}},
         InvalidArgument, "exceeds the available context size"),
        (404, {"error": "model \"nope\" not found, try pulling it first"}, InvalidArgument, "not found, try pulling it first"),
        (429, {"error": {"message": "too many requests"}}, ResourceExhausted, "too many requests"),
        (500, "Internal Server Error", Unavailable, "HTTP 500"),
        (503, {"error": {"code": 503, "message": "Loading model", "type": "unavailable_error"}}, Unavailable, "Loading model"),
    ],
)
async def test_http_errors_become_domain_errors(replay_server: ReplayServer, status, body, error, message):
    raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    replay_server.reply = Reply([raw], status=status, content_type="application/json")
    llm = OpenAICompatibleLlm(replay_server.base_url, model="nope", timeout_s=10)
    try:
        with pytest.raises(error) as caught:
            await collect(llm, MESSAGES, Sampling(max_tokens=5))
    finally:
        await llm.close()
    assert message in str(caught.value) and llm.url in str(caught.value)
    assert type(caught.value) is error


@pytest.mark.parametrize(
    ("chunks", "error", "message"),
    [
        ([b'error: {"code": 500, "message": "llama_decode failed", "type": "server_error"}\n\n'], Unavailable, "llama_decode failed"),
        ([b'data: {"error": {"object": "error", "message": "prompt too long", "code": 400}}\n\n'], InvalidArgument, "prompt too long"),
        ([b'data: {"choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": null}]}\n\n'], Unavailable, "closed the stream"),
        ([b'data: {"choices": [{"index": 0, "delta": {}, "finish_reason": "abort"}]}\n\n'], Unavailable, "aborted"),
        ([b"data: <html>\n\n"], Unavailable, "unreadable"),
    ],
)
async def test_errors_inside_the_stream(replay_server: ReplayServer, chunks, error, message):
    replay_server.reply = Reply(chunks)
    llm = OpenAICompatibleLlm(replay_server.base_url, model="m", timeout_s=10)
    try:
        with pytest.raises(error, match=message):
            await collect(llm, MESSAGES, Sampling(max_tokens=5))
    finally:
        await llm.close()


async def test_ollama_error_and_cut_stream(replay_server: ReplayServer):
    llm = OpenAICompatibleLlm(replay_server.base_url, model="m", timeout_s=10, protocol="ollama")
    try:
        replay_server.reply = Reply([b'{"error": "an error was encountered while running the model"}\n'], content_type="application/x-ndjson")
        with pytest.raises(Unavailable, match="while running the model"):
            await collect(llm, MESSAGES, Sampling(max_tokens=5))
        replay_server.reply = Reply(ollama_stream()[:2], content_type="application/x-ndjson")
        with pytest.raises(Unavailable, match="closed the stream"):
            await collect(llm, MESSAGES, Sampling(max_tokens=5))
    finally:
        await llm.close()


async def test_connection_refused_is_unavailable_with_the_url():
    port = free_port()  # nothing listens there
    llm = OpenAICompatibleLlm(f"http://127.0.0.1:{port}", model="m", timeout_s=5)
    try:
        with pytest.raises(Unavailable, match=f"http://127.0.0.1:{port}/v1/chat/completions is unreachable"):
            await collect(llm, MESSAGES, Sampling(max_tokens=5))
    finally:
        await llm.close()


async def test_unknown_host_is_unavailable():
    llm = OpenAICompatibleLlm("http://kefu-no-such-host.invalid:8000", model="m", timeout_s=10, protocol="ollama")
    try:
        with pytest.raises((Unavailable, DeadlineExceeded), match="kefu-no-such-host.invalid"):
            await collect(llm, MESSAGES, Sampling(max_tokens=5))
    finally:
        await llm.close()


async def test_no_first_token_in_time(replay_server: ReplayServer):
    replay_server.reply = Reply([], hang=True)  # headers, then only keep-alives
    llm = OpenAICompatibleLlm(replay_server.base_url, model="m", timeout_s=30, first_token_timeout_s=0.5)
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        with pytest.raises(DeadlineExceeded):
            await collect(llm, MESSAGES, Sampling(max_tokens=5))
    finally:
        await llm.close()
    assert loop.time() - started < 5
    await asyncio.wait_for(replay_server.disconnected.wait(), 5)


async def test_whole_reply_deadline(replay_server: ReplayServer):
    piece = b'data: {"choices": [{"index": 0, "delta": {"content": "x"}, "finish_reason": null}]}\n\n'
    replay_server.reply = Reply([piece] * 100, delay=0.05)  # 5 s of text
    llm = OpenAICompatibleLlm(replay_server.base_url, model="m", timeout_s=0.6, first_token_timeout_s=0.5)
    got: list[str] = []
    try:
        with pytest.raises(DeadlineExceeded):
            async for delta in llm.stream(MESSAGES, Sampling(max_tokens=100)):
                got.append(delta.text)
    finally:
        await llm.close()
    assert 1 <= len(got) < 100


async def test_closing_the_stream_closes_the_connection(replay_server: ReplayServer):
    piece = b'data: {"choices": [{"index": 0, "delta": {"content": "x"}, "finish_reason": null}]}\n\n'
    replay_server.reply = Reply([piece], hang=True)
    llm = OpenAICompatibleLlm(replay_server.base_url, model="m", timeout_s=30)
    try:
        stream = llm.stream(MESSAGES, Sampling(max_tokens=100))
        assert (await anext(stream)).text == "x"
        await stream.aclose()  # the consumer stops reading (a cancelled RPC)
        await asyncio.wait_for(replay_server.disconnected.wait(), 5)
    finally:
        await llm.close()


async def test_cancelling_the_consumer_task_closes_the_connection(replay_server: ReplayServer):
    piece = b'data: {"choices": [{"index": 0, "delta": {"content": "x"}, "finish_reason": null}]}\n\n'
    replay_server.reply = Reply([piece], hang=True)
    llm = OpenAICompatibleLlm(replay_server.base_url, model="m", timeout_s=30)
    first = asyncio.Event()

    async def consume() -> None:
        async for _ in llm.stream(MESSAGES, Sampling(max_tokens=100)):
            first.set()

    task = asyncio.create_task(consume())
    try:
        await asyncio.wait_for(first.wait(), 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.wait_for(replay_server.disconnected.wait(), 5)
    finally:
        await llm.close()


# --- choosing the backend --------------------------------------------------------------

async def test_make_llm_backend():
    cfg = KefuConfig()
    triton = make_llm_backend(cfg)
    assert isinstance(triton, TritonLlm)
    await triton.close()

    cfg.models.backend = "openai"
    with pytest.raises(ValueError, match="openai_base_url.*openai_model"):
        make_llm_backend(cfg)
    cfg.models.openai_base_url, cfg.models.openai_model, cfg.models.openai_api_key = "http://10.0.0.5:8000/v1", "Qwen/Qwen3-8B", "k"
    llm = make_llm_backend(cfg)
    assert isinstance(llm, OpenAICompatibleLlm)
    assert llm.url == "http://10.0.0.5:8000/v1/chat/completions" and llm.model == "Qwen/Qwen3-8B" and llm.protocol == "openai"
    assert llm.request_body(MESSAGES, Sampling(max_tokens=1))["chat_template_kwargs"] == {"enable_thinking": False}

    cfg.models.backend = "ollama"
    assert make_llm_backend(cfg).url == "http://10.0.0.5:8000/v1/api/chat"  # type: ignore[attr-defined]

    cfg.models.backend = "vllm-grpc"
    with pytest.raises(ValueError, match="unknown models.backend 'vllm-grpc'"):
        make_llm_backend(cfg)


# --- against a real server -------------------------------------------------------------

@pytest.fixture()
async def live_llm(openai_server: OpenAIServer):
    llm = OpenAICompatibleLlm(openai_server.base_url, model=openai_server.model, timeout_s=120, first_token_timeout_s=60)
    yield llm
    await llm.close()


COUNT = [ChatMessage("user", "Count from 1 to 20, separated by commas. Output only the numbers.")]


@pytest.mark.timeout(180)
async def test_live_stream_concatenates_and_finishes(live_llm: OpenAICompatibleLlm):
    deltas = await collect(live_llm, COUNT, Sampling(max_tokens=24, temperature=0.0, seed=1))
    texts = [d.text for d in deltas if d.text]
    assert len(texts) > 1, "the reply should arrive in several deltas"
    assert all(not d.finish_reason for d in deltas[:-1])
    assert deltas[-1].text == "" and deltas[-1].finish_reason in ("stop", "length")
    assert re.sub(r"\D+", ",", "".join(texts)).strip(",").startswith("1,2,3"), texts


@pytest.mark.timeout(180)
async def test_live_max_tokens_gives_length(live_llm: OpenAICompatibleLlm):
    deltas = await collect(live_llm, COUNT, Sampling(max_tokens=5, temperature=0.0, seed=1))
    assert deltas[-1].finish_reason == "length"
    assert deltas[-1].completion_tokens in (0, 5)  # 0 only where the server reports no usage
    assert text_of(deltas)


@pytest.mark.timeout(180)
async def test_live_greedy_is_deterministic(live_llm: OpenAICompatibleLlm):
    question = [ChatMessage("user", "What is a return policy? Answer in one sentence.")]
    first = text_of(await collect(live_llm, question, Sampling(max_tokens=24, temperature=0.0, seed=7)))
    second = text_of(await collect(live_llm, question, Sampling(max_tokens=24, temperature=0.0, seed=7)))
    assert first and first == second


@pytest.mark.timeout(180)
async def test_live_stop_string(live_llm: OpenAICompatibleLlm):
    full = text_of(await collect(live_llm, COUNT, Sampling(max_tokens=24, temperature=0.0, seed=1)))
    assert len(full) >= 8, full
    # A stop string taken from the middle of the greedy reply: the same greedy reply
    # must end right before its first occurrence.
    stop = full[len(full) // 2: len(full) // 2 + 2]
    deltas = await collect(live_llm, COUNT, Sampling(max_tokens=24, temperature=0.0, seed=1, stop=[stop]))
    assert text_of(deltas) == full[: full.index(stop)], (full, stop)
    assert deltas[-1].finish_reason == "stop"


@pytest.mark.timeout(180)
async def test_live_chinese_reply_is_whole(live_llm: OpenAICompatibleLlm):
    question = [ChatMessage("system", "你是客服助手，请用简体中文简短回答。"), ChatMessage("user", "你们的退货政策是什么？")]
    text = text_of(await collect(live_llm, question, Sampling(max_tokens=32, temperature=0.0, seed=1)))
    assert "\ufffd" not in text
    assert sum("\u4e00" <= ch <= "\u9fff" for ch in text) >= 4, text


@pytest.mark.timeout(60)
async def test_live_wrong_endpoint_is_a_clear_error(openai_server: OpenAIServer):
    llm = OpenAICompatibleLlm(openai_server.base_url + "/no-such-prefix", model=openai_server.model, timeout_s=30)
    try:
        with pytest.raises(InvalidArgument, match=r"/no-such-prefix/v1/chat/completions rejected the request \(HTTP 404\)"):
            await collect(llm, COUNT, Sampling(max_tokens=5))
    finally:
        await llm.close()
