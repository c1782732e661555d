"""Checks that depend on what the language model writes, kept apart from the
deterministic tests: they can break when the model or its prompt changes even
though kefu works. Run alone with `pytest -m wording`."""

from __future__ import annotations

import pytest

from tests.conftest import converse

pytestmark = pytest.mark.wording


@pytest.mark.parametrize(
    "question, must_mention",
    [("你们的退货政策是什么？", ["7"]), ("What is your return policy?", ["7"]), ("运费怎么算？", ["99"])],
)
def test_reply_carries_the_faq_facts(dialog, question, must_mention):
    _, result = converse(dialog, question)
    for fact in must_mention:
        assert fact in result.reply_text, result.reply_text


def test_chinese_question_gets_a_chinese_reply(dialog):
    _, result = converse(dialog, "会员积分怎么用？")
    han = sum("\u4e00" <= ch <= "\u9fff" for ch in result.reply_text)
    assert han >= len(result.reply_text) * 0.3, result.reply_text
