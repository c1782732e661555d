"""The LLM engine in-process: detokenization, stop strings, and continuous batching
that changes no output (a small randomly initialised Qwen-shaped model)."""

from __future__ import annotations

import threading

import pytest
import torch

from services.serving.llm.batcher import ContinuousBatcher, GenerationRequest
from services.serving.llm.model import QwenModel
from services.serving.llm.text import IncrementalDetokenizer, StopMatcher

TINY = {
    "model_type": "qwen2", "vocab_size": 512, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
    "num_attention_heads": 4, "num_key_value_heads": 2, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
}


class ByteTokenizer:
    """Token i is byte i (256..511 decode to nothing): multi-byte UTF-8 characters
    span several tokens, as Chinese does with byte-level BPE."""

    def decode(self, ids, skip_special_tokens=True, clean_up_tokenization_spaces=False):
        return bytes(i for i in ids if i < 256).decode("utf-8", errors="replace")


class CollectingSink:
    def __init__(self, cancel_after: int | None = None) -> None:
        self.deltas: list[str] = []
        self.reason = ""
        self.tokens = 0
        self.done = threading.Event()
        self._cancel_after = cancel_after

    def is_cancelled(self) -> bool:
        return self._cancel_after is not None and len(self.deltas) >= self._cancel_after

    def emit(self, text, completion_tokens):
        self.deltas.append(text)

    def finish(self, text, reason, completion_tokens):
        self.deltas.append(text)
        self.reason, self.tokens = reason, completion_tokens
        self.done.set()

    def fail(self, message):
        self.reason = "error: " + message
        self.done.set()

    @property
    def text(self) -> str:
        return "".join(self.deltas)


def test_incremental_detokenizer_never_emits_half_a_character():
    text = "退货政策：7 天无理由退货。OK"
    ids = list(text.encode("utf-8"))
    detok = IncrementalDetokenizer(ByteTokenizer())
    pieces = [detok.push(i) for i in ids]
    assert all("\ufffd" not in p for p in pieces)
    assert "".join(pieces) == text
    assert sum(1 for p in pieces if p) < len(ids)  # some tokens completed nothing


def test_stop_matcher_holds_back_a_possible_stop_prefix():
    m = StopMatcher(["<END>", "\n\n"])
    assert m.safe_end("hello <EN") == len("hello ")
    assert m.safe_end("hello\n") == len("hello")
    assert m.find("abc<END>def") == 3
    assert m.find("no stop here") == -1


@pytest.fixture(scope="module")
def tiny_model() -> QwenModel:
    torch.manual_seed(0)
    return QwenModel.random(TINY, seed=1, precision="int8", slots=4, max_len=256)


def test_decode_of_a_row_does_not_depend_on_its_batch(tiny_model):
    m = tiny_model
    m.prefill(0, [1, 2, 3, 4, 5])
    alone = m.decode([0], [7], [5])[0].clone()
    m.prefill(0, [1, 2, 3, 4, 5])
    m.prefill(1, list(range(40, 90)))
    m.prefill(2, [9])
    together = m.decode([0, 1, 2], [7, 8, 9], [5, 50, 1])
    assert torch.equal(alone, together[0])


def test_fp32_prefill_and_decode_agree():
    """Prefill of n tokens and n-1 prefill + 1 decode give the same last logits."""
    m = QwenModel.random(TINY, seed=1, precision="fp32", slots=2, max_len=64)
    ids = [3, 1, 4, 1, 5, 9, 2, 6]
    whole = m.prefill(0, ids)
    m.prefill(0, ids[:-1])
    stepped = m.decode([0], [ids[-1]], [len(ids) - 1])[0]
    assert torch.allclose(whole, stepped, atol=1e-4)


def _run(batcher: ContinuousBatcher, requests: list[GenerationRequest]) -> list[CollectingSink]:
    sinks = [CollectingSink() for _ in requests]
    for r, s in zip(requests, sinks, strict=True):
        batcher.submit(r, s)
    for s in sinks:
        assert s.done.wait(60)
    return sinks


def test_continuous_batching_gives_the_same_outputs_as_one_at_a_time(tiny_model):
    batcher = ContinuousBatcher(tiny_model, ByteTokenizer(), eos_ids=[0], prefill_chunk=16).start()
    try:
        requests = [
            GenerationRequest(prompt_ids=[65 + i] * (3 + 7 * i), max_tokens=6 + 5 * i) for i in range(6)
        ]
        one_by_one = [_run(batcher, [r])[0] for r in requests]
        together = _run(batcher, requests)  # 6 requests, 4 slots: some wait, slots get reused
    finally:
        batcher.stop()
    for solo, batched in zip(one_by_one, together, strict=True):
        assert batched.reason == solo.reason
        assert batched.tokens == solo.tokens
        assert batched.text == solo.text


def test_cancelled_sequence_leaves_and_others_finish(tiny_model):
    batcher = ContinuousBatcher(tiny_model, ByteTokenizer(), eos_ids=[]).start()
    try:
        cancelled = CollectingSink(cancel_after=0)
        batcher.submit(GenerationRequest([70] * 5, max_tokens=200), cancelled)
        others = _run(batcher, [GenerationRequest([71] * 5, max_tokens=20)])
        assert cancelled.done.wait(30)
    finally:
        batcher.stop()
    assert cancelled.reason == "cancelled"
    assert others[0].reason == "length" and others[0].tokens == 20


def test_bad_requests_fail_clearly(tiny_model):
    batcher = ContinuousBatcher(tiny_model, ByteTokenizer(), eos_ids=[0])
    sink = CollectingSink()
    batcher.submit(GenerationRequest([1] * 250, max_tokens=50), sink)
    assert sink.reason.startswith("error:") and "exceeds the context" in sink.reason
    sink = CollectingSink()
    batcher.submit(GenerationRequest([], max_tokens=5), sink)
    assert "empty" in sink.reason


def test_min_tokens_holds_back_the_end_of_sequence(tiny_model):
    eos = int(tiny_model.prefill(0, [66] * 4).argmax())  # the token greedy decoding picks first
    batcher = ContinuousBatcher(tiny_model, ByteTokenizer(), eos_ids=[eos]).start()
    try:
        free, held = _run(batcher, [GenerationRequest([66] * 4, max_tokens=12), GenerationRequest([66] * 4, max_tokens=12, min_tokens=7)])
    finally:
        batcher.stop()
    assert free.reason == "stop" and free.tokens == 1  # the first token is the end of sequence
    assert held.tokens >= 7
