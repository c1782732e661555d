"""Checks that depend on what the language model writes, kept apart from the
deterministic tests: they can break when the model, its precision or the prompt
changes even though kefu works. Run alone with `pytest -m wording`."""

from __future__ import annotations

import re

import pytest

from services.demo.pack import load_domain_pack
from tests.conftest import converse

pytestmark = pytest.mark.wording


def _numbers(text: str) -> set[str]:
    return set(re.findall(r"\d+", text))


@pytest.mark.parametrize("question", ["你们的退货政策是什么？", "What is your return policy?", "运费怎么算？", "How long does shipping take?"])
def test_reply_uses_facts_of_the_cited_faq(dialog, cfg, question):
    """A grounded reply repeats at least one figure of the FAQ entry it cites."""
    _, result = converse(dialog, question)
    assert result.citations, "expected an answer from the knowledge base"
    answer = {f.id: f.answer for f in load_domain_pack(cfg.domain_pack).faq}[result.citations[0].doc_id]
    assert _numbers(result.reply_text) & _numbers(answer), (result.reply_text, answer)


def test_chinese_question_gets_a_chinese_reply(dialog):
    _, result = converse(dialog, "会员积分怎么用？")
    han = sum("\u4e00" <= ch <= "\u9fff" for ch in result.reply_text)
    assert han >= len(result.reply_text) * 0.3, result.reply_text
