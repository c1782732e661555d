"""The questions inside a customer's message (services/dialog/questions.py)."""

from __future__ import annotations

import pytest

from services.dialog.questions import asks, asks_anything, requests_something, sub_questions, sub_questions_in_context


@pytest.mark.parametrize(
    "text, parts",
    [
        ("签收5天了还能无理由退吗？退了的话钱多久回到微信", ["签收5天了还能无理由退吗？", "退了的话钱多久回到微信"]),
        ("包裹显示签收了但我没拿到，你们补发还是退钱？另外物流信息在哪查", ["包裹显示签收了但我没拿到，你们补发还是退钱？", "另外物流信息在哪查"]),
        ("do you take Mastercard? and can I pay the laptop off monthly", ["do you take Mastercard?", "and can I pay the laptop off monthly"]),
        ("My sister lives in Melbourne. Could I send a present to her? How long would that take?",
         ["Could I send a present to her?", "How long would that take?"]),
    ],
)
def test_two_questions_are_found(text, parts):
    assert sub_questions(text) == parts


def test_each_question_is_looked_up_after_the_story_it_follows():
    """A question that leans on the story before it ("it", 「这个」) is looked up with that story."""
    assert sub_questions_in_context("I'm a Gold member. How many points do I get per order? and do they expire?") == [
        ("How many points do I get per order?", "I'm a Gold member. How many points do I get per order?"),
        ("and do they expire?", "I'm a Gold member. and do they expire?"),
    ]
    assert sub_questions_in_context("我买了台洗衣机，住六楼。这个包安装吗？要额外收费不") == [
        ("这个包安装吗？", "我买了台洗衣机，住六楼。这个包安装吗？"),
        ("要额外收费不", "我买了台洗衣机，住六楼。要额外收费不"),
    ]
    # No story: each question alone; one question: nothing to split.
    assert sub_questions_in_context("运费多少？几天能到") == [("运费多少？", "运费多少？"), ("几天能到", "几天能到")]
    assert sub_questions_in_context("I bought a kettle. Does it have a warranty?") == []


@pytest.mark.parametrize(
    "text",
    ["你们的退货政策是什么？", "买的是蓝色的，寄来一个灰色的！！这也能错？", "I moved last weekend. Can the courier take it to my new place?",
     "我要退货", "cancel my order please"],
)
def test_one_question_or_none_is_looked_up_whole(text):
    assert sub_questions(text) == []


@pytest.mark.parametrize(
    "text, expected",
    [
        ("这种还算无理由退货范围内不", True), ("地址写错了一个门牌号，还能改不", True), ("钱多久能退回来", True),
        ("Tags are still on. Can I swap it for one size up", True), ("what's the warranty on this", True),
        ("你觉得美国大选谁会赢", True), ("运费谁出", True), ("几点到几点有人接", True), ("需要填啥信息", True),
        ("我要退货", False), ("不要了不要了", False), ("cancel pls", False), ("I want to return my shoes.", False),
    ],
)
def test_asks(text, expected):
    assert asks_anything(text) is expected


def test_a_clause_is_judged_in_its_own_language():
    assert asks("怎么退") and asks("how do I return it") and not asks("退货") and not asks("return it")


@pytest.mark.parametrize(
    "text, expected",
    [("help with my maths homework pls", True), ("can you tell me a joke", True), ("给我讲个笑话吧", True), ("帮我把这段话翻译成英文", True),
     ("thanks for your help", False), ("hello", False), ("谢谢", False), ("好的谢谢", False), ("hi, how are you?", False)],
)
def test_a_request_is_never_a_greeting_or_thanks(text, expected):
    assert requests_something(text) is expected
