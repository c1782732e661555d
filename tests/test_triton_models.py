"""The Triton models, end to end through a real tritonserver (no mocks).

The LLM decodes a few tokens per second on CPU, so every request keeps max_tokens small.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from services.serving.triton_client import EmbedderClient, LlmChunk, LlmClient, ModelError, ModelUnavailable
from tests.conftest import free_ports

TIMEOUT = 120.0


def chat(user: str, system: str = "你是一家网店的客服助手。") -> str:
    return (
        f"<|im_start|>system\n{system}<|im_end|>\n"
        f"<|im_start|>user\n{user}<|im_end|>\n"
        f"<|im_start|>assistant\n"
    )


async def collect(client: LlmClient, prompt: str, **kw) -> list[LlmChunk]:
    kw.setdefault("timeout_s", TIMEOUT)
    return [c async for c in client.stream(prompt, **kw)]


def joined(chunks: list[LlmChunk]) -> str:
    return "".join(c.text for c in chunks)


def check_stream_shape(chunks: list[LlmChunk]) -> None:
    assert chunks, "no responses"
    assert all(c.finish_reason == "" for c in chunks[:-1])
    assert chunks[-1].finish_reason in ("stop", "length")
    assert all("\ufffd" not in c.text for c in chunks), [c.text for c in chunks]
    counts = [c.completion_tokens for c in chunks]
    assert counts == sorted(counts)


def test_embedder_gives_normalised_vectors_that_rank_the_matching_passage_first(triton_server):
    cfg, _ = triton_server

    async def run():
        client = EmbedderClient(cfg.triton_grpc_target)
        try:
            assert await client.ready(cfg.models.embedder_model)
            texts = [
                "query: 我买的衣服不合适，怎么退货？",
                "passage: 退货政策：签收后七天内可申请无理由退货，请在订单页面点击“申请退货”。",
                "passage: 本店营业时间为每天上午九点至晚上六点，节假日照常营业。",
            ]
            v = await client.embed(texts, timeout_s=30)
            # More rows than one Triton batch (64): split and put back in order.
            many = await client.embed([f"passage: 商品编号 {i}" for i in range(70)] + texts, timeout_s=60)
            return v, many
        finally:
            await client.close()

    v, many = asyncio.run(run())
    assert v.shape == (3, 384) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-4)
    match, unrelated = float(v[1] @ v[0]), float(v[2] @ v[0])
    assert match > unrelated + 0.02, (match, unrelated)
    assert many.shape == (73, 384)
    np.testing.assert_allclose(many[70:], v, atol=1e-5)


def test_llm_streams_deltas_and_finishes(triton_server):
    cfg, _ = triton_server

    async def run():
        client = LlmClient(cfg.triton_grpc_target)
        try:
            assert await client.ready(cfg.models.llm_model)
            return await collect(client, chat("请简单介绍一下你们的退货流程。"), max_tokens=16)
        finally:
            await client.close()

    chunks = asyncio.run(run())
    check_stream_shape(chunks)
    assert len(chunks) >= 3
    assert joined(chunks).strip()
    assert 1 <= chunks[-1].completion_tokens <= 16


def test_llm_greedy_is_deterministic(triton_server):
    cfg, _ = triton_server
    prompt = chat("What is the capital of France? Answer in one sentence.", system="You are a helpful assistant.")

    async def run():
        client = LlmClient(cfg.triton_grpc_target)
        try:
            a = await collect(client, prompt, max_tokens=12, temperature=0.0)
            b = await collect(client, prompt, max_tokens=12, temperature=0.0)
            return a, b
        finally:
            await client.close()

    a, b = asyncio.run(run())
    check_stream_shape(a)
    assert joined(a) == joined(b)
    assert joined(a).strip()
    assert a[-1].completion_tokens == b[-1].completion_tokens


def test_llm_concurrent_requests_match_one_at_a_time(triton_server):
    """Continuous batching: eight streams at once give exactly what each gives alone."""
    cfg, _ = triton_server
    prompts = [
        chat("你们的退货政策是什么？"), chat("What is your return policy?", system="You are a helpful assistant."),
        chat("运费怎么算？"), chat("Name three colors.", system="You are a helpful assistant."),
        chat("发票怎么开？"), chat("How do I reset my password?", system="You are a helpful assistant."),
        chat("会员有什么权益？"), chat("Do you ship abroad?", system="You are a helpful assistant."),
    ]
    lengths = [24, 8, 16, 30, 12, 20, 6, 28]  # different lengths: sequences leave at different steps

    async def run():
        client = LlmClient(cfg.triton_grpc_target)
        try:
            alone = [await collect(client, p, max_tokens=n) for p, n in zip(prompts, lengths, strict=True)]
            together = await asyncio.gather(*(collect(client, p, max_tokens=n) for p, n in zip(prompts, lengths, strict=True)))
            return alone, together
        finally:
            await client.close()

    alone, together = asyncio.run(run())
    for a, t in zip(alone, together, strict=True):
        check_stream_shape(t)
        assert joined(t) == joined(a)
        assert t[-1].finish_reason == a[-1].finish_reason
        assert t[-1].completion_tokens == a[-1].completion_tokens


def test_llm_seeded_sampling_is_reproducible(triton_server):
    cfg, _ = triton_server
    prompt = chat("给新客户写一句欢迎语。")

    async def run():
        client = LlmClient(cfg.triton_grpc_target)
        try:
            kw = dict(max_tokens=8, temperature=0.9, top_p=0.9, seed=1234)
            return await collect(client, prompt, **kw), await collect(client, prompt, **kw)
        finally:
            await client.close()

    a, b = asyncio.run(run())
    check_stream_shape(a)
    assert joined(a) == joined(b) and joined(a).strip()


def test_llm_stop_string_cuts_the_output(triton_server):
    cfg, _ = triton_server
    prompt = chat("从1数到20，用逗号分隔。", system="You are a helpful assistant.")

    async def run():
        client = LlmClient(cfg.triton_grpc_target)
        try:
            full = await collect(client, prompt, max_tokens=24)
            text = joined(full)
            # A stop string from the middle of the greedy answer, spanning several tokens.
            mid = len(text) // 2
            stop = text[mid:mid + 3]
            cut = await collect(client, prompt, max_tokens=24, stop=["never-appears", stop])
            return text, stop, cut
        finally:
            await client.close()

    text, stop, cut = asyncio.run(run())
    assert len(stop) == 3, text
    check_stream_shape(cut)
    assert cut[-1].finish_reason == "stop"
    assert joined(cut) == text[: text.index(stop)]
    assert all(stop not in c.text for c in cut)


def test_llm_max_tokens_gives_length(triton_server):
    cfg, _ = triton_server

    async def run():
        client = LlmClient(cfg.triton_grpc_target)
        try:
            return await collect(client, chat("请写一篇五百字的文章，介绍春天的景色。"), max_tokens=5)
        finally:
            await client.close()

    chunks = asyncio.run(run())
    check_stream_shape(chunks)
    assert chunks[-1].finish_reason == "length"
    assert chunks[-1].completion_tokens == 5
    assert joined(chunks).strip()


def test_llm_never_streams_half_a_character(triton_server):
    """Rare CJK characters take several byte-level tokens; no delta may end mid-character."""
    cfg, _ = triton_server

    async def run():
        client = LlmClient(cfg.triton_grpc_target)
        try:
            return await collect(client, chat("请原样重复这句话：龘靐齉爩"), max_tokens=12)
        finally:
            await client.close()

    chunks = asyncio.run(run())
    check_stream_shape(chunks)
    text = joined(chunks)
    assert "龘" in text, text
    # At least one delta waited for a second token to complete its character.
    counts = [0] + [c.completion_tokens for c in chunks if c.text]
    assert any(b - a >= 2 for a, b in zip(counts, counts[1:], strict=False)), [(c.text, c.completion_tokens) for c in chunks]


def _log_has(server, needle: str, count: int, timeout: float = 15.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if server.log_path.read_text(encoding="utf-8", errors="replace").count(needle) >= count:
            return True
        time.sleep(0.2)
    return False


def test_llm_cancelled_stream_stops_generation_and_server_keeps_serving(triton_server):
    cfg, server = triton_server
    prompt = chat("请写一篇很长的文章，介绍春天的景色。")
    before = server.log_path.read_text(encoding="utf-8", errors="replace").count("finish=cancelled")

    async def run():
        client = LlmClient(cfg.triton_grpc_target)
        try:
            # 1. The consumer leaves the loop after two chunks.
            seen = 0
            stream = client.stream(prompt, max_tokens=32, timeout_s=TIMEOUT)
            async for _ in stream:
                seen += 1
                if seen == 2:
                    break
            await stream.aclose()

            # 2. The consuming task is cancelled mid-stream.
            started = asyncio.Event()

            async def consume():
                async for _ in client.stream(prompt, max_tokens=32, timeout_s=TIMEOUT):
                    started.set()

            task = asyncio.create_task(consume())
            await asyncio.wait_for(started.wait(), TIMEOUT)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

            # 3. The next request is served normally.
            return await collect(client, chat("你好"), max_tokens=4)
        finally:
            await client.close()

    after = asyncio.run(run())
    check_stream_shape(after)
    assert after[-1].completion_tokens <= 4
    # The model saw both cancellations and stopped decoding early.
    assert _log_has(server, "finish=cancelled", before + 2), server.log_tail()


def test_unreachable_server_is_model_unavailable():
    (port,) = free_ports(1)

    async def run():
        client = LlmClient(f"127.0.0.1:{port}")
        try:
            assert not await client.ready("llm")
            with pytest.raises(ModelUnavailable):
                await collect(client, chat("你好"), max_tokens=4, timeout_s=10)
            emb = EmbedderClient(f"127.0.0.1:{port}")
            with pytest.raises(ModelUnavailable):
                await emb.embed(["query: 你好"], timeout_s=10)
            await emb.close()
        finally:
            await client.close()

    asyncio.run(run())


def test_llm_bad_request_is_an_error_and_the_model_keeps_serving(triton_server):
    cfg, _ = triton_server

    async def run():
        client = LlmClient(cfg.triton_grpc_target)
        try:
            with pytest.raises(ModelError, match="max_tokens"):
                await collect(client, chat("你好"), max_tokens=0)
            return await collect(client, chat("你好"), max_tokens=3)
        finally:
            await client.close()

    chunks = asyncio.run(run())
    check_stream_shape(chunks)
