"""The checks of `kefu eval answers`, on replies kefu has really given (issue 23)."""

from __future__ import annotations

import pytest

from services.dialog.answer_eval import judge

ANSWER = ["ACTION_TYPE_ANSWER"]
SOURCE = "普通快递运费 8 元，订单实付满 99 元包邮。新疆、西藏、青海运费 15 元，满 199 元包邮。"
Q = {"id": "zh-x", "language": "zh", "kind": "faq", "question": "运费咋算的，买多少包邮啊", "key_facts": ["8 元", "99 元"]}


def test_a_good_reply_is_acceptable():
    assert judge(Q, "普通快递运费 8 元，实付满 99 元就包邮；新疆、西藏、青海是 15 元，满 199 元包邮。", ANSWER, [], SOURCE) == []


@pytest.mark.parametrize(
    ("reply", "problem"),
    [
        ("根据资料，普通快递运费 8 元，满 99 元包邮。", "framing"),
        ("The reference states that shipping is 8 元 and free from 99 元.", "framing"),
        ("客服：普通快递运费 8 元，满 99 元包邮。", "role_label"),
        ("运费 8 元，满 99 元包邮。运费 8 元，满 99 元包邮。运费 8 元，满 99 元包邮。", "repetition"),
        ("运费咋算的，买多少包邮啊？运费 8 元，满 99 元包邮。", "restated"),
        ("运费 8 元，满 99 元包邮，100积分=1元+100*0.2=2元。", "number_not_in_sources"),
        ("运费是根据订单实付金额和包裹费用的加权平均值来计算的。", "facts_missing"),
        ("不确定。运费 8 元，满 99 元包邮。", "declined"),
    ],
)
def test_each_check_catches_what_it_names(reply, problem):
    assert problem in judge(Q, reply, ANSWER, [], SOURCE)


def test_an_abstention_on_an_answerable_question_is_a_false_abstain():
    assert judge(Q, "抱歉，这个问题我不太确定……", ["ACTION_TYPE_ABSTAIN"], [], SOURCE) == ["abstained"]


def test_off_topic_questions_must_be_abstained_or_handed_over():
    off = {"id": "zh-o", "language": "zh", "kind": "offtopic", "question": "帮我推荐一只股票"}
    assert judge(off, "抱歉，这个问题我不太确定……", ["ACTION_TYPE_ABSTAIN"], [], "") == []
    assert judge(off, "Based on the reference, you can buy ...", ANSWER, [], "") == ["answered_offtopic"]
    # Handed to a person (a legal threat is, at once): no answer was made up either.
    assert judge(off, "已为您转接人工客服……", ["ACTION_TYPE_CREATE_TICKET", "ACTION_TYPE_HANDOFF"], [], "") == []
    assert judge(off, "您好！有什么可以帮您？", ["ACTION_TYPE_SMALLTALK"], [], "") == ["answered_offtopic"]
    assert judge(off, "您是想咨询「商品推荐」，还是「比价」？", ["ACTION_TYPE_CLARIFY"], [], "") == ["answered_offtopic"]
