"""The repetition guard: a reply that starts repeating itself is stopped there.

The detector on its own (loops in Chinese and English, with and without
punctuation; lists, repeated words and every demo FAQ answer pass unchanged), and
ReplyWriter with a backend that loops the way Qwen2.5-0.5B did in a multi-turn
session: the sentence goes out once, the model is stopped, the cache keeps the
trimmed reply. The backend is scripted here because it stands for a model that
loops, which the real small model does not do on demand.
"""

from __future__ import annotations

from pathlib import Path
from typing import AsyncIterator

import pytest
import yaml

from kefu.v1 import generation_pb2
from services.generation.cache import ResponseCache
from services.generation.core import ReplyContext, ReplyDelta, ReplyWriter, Sampling
from services.generation.prompt import ChatMessage, PromptPassage, ReplyPrompt
from services.generation.repetition import RepetitionGuard
from services.generation.servicer import GenerationServicer

LOOP_ZH = "您的订单 KF2026090300101 到了待发货状态。"
LOOP_EN = "Your order has shipped. "
FAQ = Path(__file__).resolve().parent.parent / "services" / "demo" / "pack" / "faq.yaml"

# Delta sizes: single characters, odd splits (a "." at the end of a delta, a word cut
# in two, a number in pieces), and the whole text at once.
CHUNKINGS = [[1], [2], [3], [1, 4, 2], [5, 1, 7], [100_000]]


def deltas(text: str, sizes: list[int]) -> list[str]:
    out, i, k = [], 0, 0
    while i < len(text):
        n = sizes[k % len(sizes)]
        out.append(text[i: i + n])
        i, k = i + n, k + 1
    return out


def guard_run(text: str, sizes: list[int]) -> tuple[list[str], RepetitionGuard]:
    """What the guard lets out for each delta (then at the end), and the guard."""
    guard = RepetitionGuard()
    out = []
    for d in deltas(text, sizes):
        out.append(guard.feed(d))
        if guard.fired:
            break
    out.append(guard.finish())
    return out, guard


# --- the detector ------------------------------------------------------------------

@pytest.mark.parametrize("sizes", CHUNKINGS)
def test_the_observed_six_times_loop_keeps_the_sentence_once(sizes):
    out, guard = guard_run(LOOP_ZH * 6, sizes)
    assert guard.fired
    assert "".join(out) == guard.text == LOOP_ZH
    assert guard.dropped.startswith("您的订单")


@pytest.mark.parametrize("sizes", CHUNKINGS)
def test_loop_after_an_opening_keeps_the_opening_and_one_copy(sizes):
    out, guard = guard_run("好的，我帮您查一下。" + LOOP_ZH * 6, sizes)
    assert guard.fired and "".join(out) == "好的，我帮您查一下。" + LOOP_ZH


@pytest.mark.parametrize("sizes", CHUNKINGS)
def test_english_sentence_loop(sizes):
    out, guard = guard_run("Sure. " + LOOP_EN * 6, sizes)
    assert guard.fired and guard.reason == "sentence"
    assert "".join(out) == "Sure. Your order has shipped."


@pytest.mark.parametrize("sizes", CHUNKINGS)
@pytest.mark.parametrize(
    ("unit", "kept"),
    [
        ("please wait while I check your order ", "please wait while I check your order"),
        ("您的订单正在处理中请耐心等待", "您的订单正在处理中请耐心等待"),
        ("请稍等，", "请稍等，"),  # a short phrase: fires once it has repeated 12 characters' worth
    ],
)
def test_loops_without_sentence_ends(sizes, unit, kept):
    out, guard = guard_run(unit * 8, sizes)
    assert guard.fired and guard.reason == "loop"
    assert "".join(out) == kept


@pytest.mark.parametrize("sizes", CHUNKINGS)
def test_a_loop_whose_repeat_seems_to_begin_mid_sentence_still_ends_at_the_sentence_end(sizes):
    # The text before the loop ends like the looping sentence does, so the repeated
    # span begins inside the first copy; the reply still ends after whole sentences.
    opening = "包裹已经顺利发货了。"
    unit = "您的订单 KF2026090300101 已经顺利发货了。"
    out, guard = guard_run(opening + unit * 5, sizes)
    assert guard.fired and "".join(out) == opening + unit


def test_a_long_run_on_clause_said_again_is_an_echo():
    clause = "we will check the warehouse records and call the courier company to confirm where your parcel is now"
    out, guard = guard_run(f"Thanks for waiting, {clause}, and then {clause}, and then {clause}", [3])
    assert guard.fired and guard.reason == "echo"
    assert "".join(out) == f"Thanks for waiting, {clause}, and then"


def test_a_repeat_cut_off_by_the_token_limit_is_dropped():
    out, guard = guard_run(LOOP_ZH + LOOP_ZH[:12], [2])
    assert guard.fired and "".join(out) == LOOP_ZH


@pytest.mark.parametrize("sizes", CHUNKINGS)
@pytest.mark.parametrize(
    ("text", "kept"),
    [
        ("1.联系客服处理退款。2.联系客服处理退款。3.联系客服处理退款。", "1.联系客服处理退款。"),
        ("1. 联系客服处理退款。\n2. 联系客服处理退款。\n3. 联系客服处理退款。", "1. 联系客服处理退款。"),
        ("Steps:\n1) Contact support for a refund.\n2) Contact support for a refund.\n", "Steps:\n1) Contact support for a refund."),
    ],
)
def test_numbered_items_that_repeat_are_dropped_with_their_number(sizes, text, kept):
    out, guard = guard_run(text, sizes)
    assert guard.fired and "".join(out) == kept


LEGIT = [
    # numbered lists whose items share a prefix
    "1. 在「我的订单」进入订单详情。2. 在「我的订单」点击「申请售后」。3. 在「我的订单」填写退货原因。",
    "1、请在订单详情点「申请售后」选择退货。\n2、请在订单详情点「申请售后」选择换货。\n3、请在订单详情点「申请售后」选择维修。",
    "To return an item:\n1. Open My Orders and select the order.\n2. Open My Orders and tap After-sales.\n3. Open My Orders and choose Return.",
    # short repeated words and phrases
    "好的好的，我马上帮您查一下。",
    "嗯嗯，明白了，谢谢谢谢！",
    "Your order has shipped. The order will arrive in 3 days. If the order is late, contact us about the order.",
    "OK, ok, I see. Yes yes, that works.",
    # an answer that says a short sentence twice, apart
    "好的。您的退款已经发起。好的，还有别的问题吗？",
    # sentences that differ only in a number are different sentences
    "2.5 公斤以内运费 8 元。3.5 公斤以内运费 8 元。",
    "16:00 前付款的订单当天发货。17:00 前付款的订单当天发货。",
]


@pytest.mark.parametrize("text", LEGIT)
@pytest.mark.parametrize("sizes", CHUNKINGS)
def test_legitimate_replies_pass_unchanged(text, sizes):
    out, guard = guard_run(text, sizes)
    assert not guard.fired and "".join(out) == text


def _faq_answers() -> list[tuple[str, str]]:
    return [(e["id"], e["answer"]) for e in yaml.safe_load(FAQ.read_text(encoding="utf-8"))["entries"]]


def test_every_demo_faq_answer_passes_unchanged_and_is_held_back_only_briefly():
    answers = _faq_answers()
    assert len(answers) > 50
    for doc_id, answer in answers:
        # Held back at any time: only a short tail that also occurs earlier in the
        # answer (and a word still being written), never whole sentences.
        most = 24 if doc_id.endswith("-zh") else 64
        for sizes in CHUNKINGS:
            guard = RepetitionGuard()
            out, fed = [], 0
            for d in deltas(answer, sizes):
                out.append(guard.feed(d))
                fed += len(d)
                assert fed - len("".join(out)) <= most, (doc_id, answer[len("".join(out)): fed])
            out.append(guard.finish())
            assert not guard.fired, (doc_id, guard.reason, guard.dropped)
            assert "".join(out) == answer, doc_id


# --- ReplyWriter -------------------------------------------------------------------

class LoopingLlm:
    """A model that writes one sentence over and over until the token limit, in small
    deltas, and notes how far it got and whether its stream was closed."""

    def __init__(self, text: str, delta_chars: int = 3) -> None:
        self.deltas = deltas(text, [delta_chars])
        self.calls = 0
        self.sent = 0
        self.closed = False
        self.finished = False

    async def stream(self, messages: list[ChatMessage], sampling: Sampling) -> AsyncIterator[ReplyDelta]:
        self.calls += 1
        try:
            for i, d in enumerate(self.deltas):
                self.sent += 1
                yield ReplyDelta(d, completion_tokens=i + 1)
            self.finished = True
            yield ReplyDelta("", "length", len(self.deltas))
        finally:
            self.closed = True

    async def close(self) -> None:
        pass


PROMPT = ReplyPrompt(
    "我的订单到哪了？", language="zh",
    passages=[PromptPassage("order-status-zh", "查询订单状态", "在「我的订单」可以看到每个订单的状态。")],
)
CTX = ReplyContext(intent="order_status", kb_version=3)


async def test_reply_writer_stops_a_looping_model_and_caches_the_trimmed_reply():
    llm = LoopingLlm(LOOP_ZH * 6)
    cache = ResponseCache(8, 60)
    writer = ReplyWriter(llm, default_max_tokens=256, cache=cache)

    chunks = [d async for d in writer.stream(PROMPT, Sampling(max_tokens=0), CTX)]
    streamed = "".join(d.text for d in chunks)
    assert streamed.count("KF2026090300101") == 1 and streamed == LOOP_ZH
    assert [d.finish_reason for d in chunks[:-1]] == [""] * (len(chunks) - 1)
    assert chunks[-1] == ReplyDelta("", "repetition", chunks[-1].completion_tokens)
    # The model was stopped as soon as the repeat was certain, early in the second copy
    # of six: its stream was closed, not run to the token limit.
    assert llm.closed and not llm.finished
    assert llm.sent * 3 <= len(LOOP_ZH) * 2 + 3

    key = ResponseCache.key(PROMPT.user_message, intent=CTX.intent, language="zh", kb_version=3, passages=("order-status-zh",))
    cached = cache.get(key, 3)
    assert cached is not None and cached.text == LOOP_ZH and cached.finish_reason == "repetition"

    # The next ask is served the trimmed reply from the cache.
    again = await writer.write(PROMPT, Sampling(max_tokens=0), CTX)
    assert again.cached and again.text == LOOP_ZH and llm.calls == 1


async def test_reply_writer_write_returns_the_trimmed_text():
    llm = LoopingLlm("Sure. " + LOOP_EN * 6, delta_chars=4)
    result = await ReplyWriter(llm, default_max_tokens=256).write(PROMPT, Sampling(max_tokens=0))
    assert result.text == "Sure. Your order has shipped." and result.finish_reason == "repetition"
    assert llm.closed and not llm.finished


async def test_the_final_chunk_of_the_stream_rpc_says_why_the_reply_ended():
    servicer = GenerationServicer(ReplyWriter(LoopingLlm(LOOP_ZH * 6), default_max_tokens=256))
    request = generation_pb2.GenerateRequest(user_message="我的订单到哪了？", language="zh")
    chunks = [c async for c in servicer.GenerateStream(request, None)]
    assert "".join(c.delta for c in chunks[:-1]) == LOOP_ZH
    assert chunks[-1].final.text == LOOP_ZH and chunks[-1].final.finish_reason == "repetition"


async def test_reply_writer_passes_an_ordinary_reply_through_unchanged():
    answer = dict(_faq_answers())["returns-7day-zh"]
    llm = LoopingLlm(answer, delta_chars=2)
    result = await ReplyWriter(llm, default_max_tokens=256).write(PROMPT, Sampling(max_tokens=0))
    assert result.text == answer and result.finish_reason == "length"
    assert llm.finished


async def test_fixed_length_requests_are_not_cut():
    # min_tokens (benchmarks fixing the reply length) asks for every token.
    llm = LoopingLlm(LOOP_ZH * 6)
    result = await ReplyWriter(llm, default_max_tokens=256).write(PROMPT, Sampling(max_tokens=64, min_tokens=64))
    assert result.text == LOOP_ZH * 6 and llm.finished
