"""The extractive answer style (services/dialog/extractive.py)."""

from __future__ import annotations

import yaml

from services.config import REPO_ROOT
from services.dialog.extractive import extract, sentences

FAQ = {e["id"]: e["answer"] for e in yaml.safe_load((REPO_ROOT / "services/demo/pack/faq.yaml").read_text(encoding="utf-8"))["entries"]}


def test_the_sentences_the_question_points_at_are_kept_in_order():
    passage = FAQ["payment-methods-en"]
    reply = extract("Can I pay cash on delivery for a TV?", passage)
    assert "2,000 yuan" in reply and "PayPal" not in reply
    assert passage.startswith(reply) or all(s in passage for s in sentences(reply))
    zh = extract("用支付宝付的，退款几天到账", FAQ["refunds-timing-zh"])
    assert "支付宝、微信支付 1–3 个工作日" in zh and len(zh) < len(FAQ["refunds-timing-zh"])


def test_the_passage_stands_whole_when_nothing_points_or_it_is_short():
    passage = FAQ["payment-methods-en"]
    assert extract("hmm", passage) == passage
    short = "Orders ship within 48 hours. Pre-sale items ship on the date shown."
    assert extract("when do pre-sale items ship", short) == short


def test_sentences_keep_decimals_and_semicolon_lists_together():
    assert sentences("Fees are 8.5 yuan. Free from 99 yuan.") == ["Fees are 8.5 yuan.", "Free from 99 yuan."]
    assert sentences("到账时间：余额即时到账；支付宝 1–3 天。未发货立即退款。") == ["到账时间：余额即时到账；支付宝 1–3 天。", "未发货立即退款。"]


def test_a_second_passage_drops_what_the_first_already_says():
    """Two entries that both give the hotline's hours: the second keeps only what is new,
    and the reply passes the repetition check that generation's guard makes."""
    from services.generation.repetition import RepetitionGuard

    from services.dialog.extractive import without_repeats

    first, second = FAQ["service-contact-zh"], FAQ["service-hours-zh"]
    rest = without_repeats(first, second)
    assert rest and len(rest) < len(second) and all(s in second for s in sentences(rest))
    guard = RepetitionGuard()
    guard.feed(f"{first}\n\n{rest}")
    guard.finish()
    assert not guard.fired
    assert without_repeats("", second) == second  # nothing before: whole
    assert without_repeats(first, first) == ""  # everything repeats
    assert without_repeats(FAQ["returns-7day-en"], FAQ["payment-methods-en"]) == FAQ["payment-methods-en"]
