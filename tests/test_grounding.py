"""Dialog's check of a generated reply: declining or too-short replies are caught
before the customer sees them; good replies stream through unchanged."""

from __future__ import annotations

import pytest

from services.dialog.grounding import HOLD_CHARS, ReplyCheck, declines


def _run(language: str, deltas: list[str]) -> tuple[list[str], bool, str]:
    check = ReplyCheck(language)
    streamed = [text for d in deltas if (text := check.feed(d))]
    return streamed, check.finish(), check.reason


@pytest.mark.parametrize(
    "text",
    [
        "Not sure.", "I'm not sure.", "I am not sure which size to buy.", "Sorry, I'm not sure about that.",
        "I don't know.", "Sorry, I can't answer that.", "不确定。建议转人工客服。", "抱歉，我不清楚。", "我们无法确定",
        "  **Not sure**", "不太确定，建议您联系人工客服。", "You are not sure and offer a human agent.",
        "抱歉，我无法协助完成这个请求。", "We're not certain.",
    ],
)
def test_declining_openings_are_recognised(text):
    assert declines(text)


@pytest.mark.parametrize(
    "text",
    [
        "If you're not sure which size to buy, check the size chart on the product page.",
        "You can change the address once before the order ships.",
        "如果不确定尺码，可以查看商品页的尺码表。",
        "可以，签收次日起 7 天内都能申请无理由退货。",
        "Notes: returns are free within 7 days.",
    ],
)
def test_answers_are_not_taken_for_declines(text):
    assert not declines(text)


def test_a_good_reply_streams_unchanged_after_its_opening():
    deltas = ["You ", "can ", "change ", "the ", "address ", "once ", "before ", "it ", "ships."]
    streamed, stands, reason = _run("en", deltas)
    assert "".join(streamed) == "".join(deltas)
    assert len(streamed) >= 2, "after the opening, deltas pass through one by one"
    assert len(streamed[0].strip()) >= HOLD_CHARS["en"]
    assert stands and reason == ""


def test_a_short_chinese_answer_passes_at_its_own_threshold():
    streamed, stands, _ = _run("zh", ["签收后", "7 天内", "可以退货。"])
    assert stands and streamed == ["签收后7 天内可以退货。"]


@pytest.mark.parametrize(
    "language, deltas, reason",
    [
        ("en", ["Not", " sure", "."], "declined"),
        ("en", ["I'm not sure. ", "Please contact ", "a human agent ", "for help with this question."], "declined"),
        ("zh", ["不确定", "。建议转人工", "客服。"], "declined"),
        ("zh", ["能", "。"], "too_short"),
        ("en", ["Yes."], "too_short"),
        ("en", [], "too_short"),
    ],
)
def test_declining_or_too_short_replies_are_held_back_and_refused(language, deltas, reason):
    streamed, stands, why = _run(language, deltas)
    assert streamed == [] and not stands and why == reason


def test_a_decline_later_in_a_long_reply_is_not_second_guessed():
    deltas = ["Returns are free within 7 days of delivery. ", "If you are not sure, ask us."]
    streamed, stands, reason = _run("en", deltas)
    assert stands and "".join(streamed) == "".join(deltas) and reason == ""


def test_unknown_language_uses_the_english_threshold():
    assert not _run("fr", ["Oui, bien sûr."])[1]


def _stream(check: ReplyCheck, deltas: list[str]) -> str:
    return "".join(check.feed(d) for d in deltas)


def test_a_reply_without_the_passages_figures_is_replaced():
    passage = "普通快递运费 8 元，订单实付满 99 元包邮。新疆、西藏、青海运费 15 元，满 199 元包邮。"
    check = ReplyCheck("zh", passage)
    streamed = _stream(check, ["运费是根据订单实付金额", "和包裹费用的加权平均值来计算的。", "运费 = (订单实付金额 + 包裹费用) / 2"])
    assert streamed == ""
    assert not check.finish() and check.reason == "no_facts"


def test_a_reply_with_a_figure_streams_from_there_on():
    passage = "Orders paid before 16:00 ship the same day; delivery takes 1 to 3 days."
    check = ReplyCheck("en", passage)
    first = _stream(check, ["Your order ships ", "the same day if paid before 1"])
    assert first == "", "16 is still arriving: 1 is not yet a figure"
    rest = _stream(check, ["6:00, and arrives", " in 1 to 3 days."])
    assert rest.startswith("Your order ships the same day if paid before 16:00")
    assert check.finish()


def test_a_passage_without_figures_only_needs_an_opening():
    check = ReplyCheck("en", "Contact us through the app.")
    assert _stream(check, ["You can contact us through the app any time."]) and check.finish()


@pytest.mark.parametrize(
    ("reply", "tidy"),
    [
        ("根据资料，会员日是每月 18 日。", "会员日是每月 18 日。"),
        ("客服：根据您提供的信息，退款一般 3-5 个工作日到账。", "退款一般 3-5 个工作日到账。"),
        ("根据参考资料，开公司抬头的普票需要公司全称。", "开公司抬头的普票需要公司全称。"),
        ("The reference states that gift cards are valid for 3 years.", "Gift cards are valid for 3 years."),
        ("Based on the reference, your data is deleted within 30 days.", "Your data is deleted within 30 days."),
        ("The customer is asking about the return window. The reference states that returns are accepted within 7 days.",
         "Returns are accepted within 7 days."),
        ("Gift cards are valid for 3 years.", "Gift cards are valid for 3 years."),
        ("According to our records you can return it within 7 days.", "According to our records you can return it within 7 days."),
    ],
)
def test_a_framing_opening_is_removed(reply, tidy):
    from services.dialog.grounding import tidy_opening

    assert tidy_opening(reply) == tidy


def test_the_opening_is_held_until_it_is_clear_whether_it_frames():
    check = ReplyCheck("en", "Gift cards are valid for 3 years from purchase.")
    pieces = ["The reference ", "states that gift ", "cards are valid ", "for 3 years", " from purchase."]
    streamed = "".join(check.feed(p) for p in pieces)
    assert check.finish() and streamed == "Gift cards are valid for 3 years from purchase."
