"""Rule entities (services/nlu/entities.py): validated, normalized, offsets into the text."""

from datetime import datetime

import pytest

from services.nlu.entities import EntityExtractor, extract_rule_entities
from services.nlu.text import normalize

REF = datetime(2026, 11, 21, 10, 0)  # a Saturday


def found(text: str, language: str = "zh") -> list[tuple[str, str, str]]:
    entities = extract_rule_entities(text, reference_time=REF, language=language)
    for e in entities:
        assert text[e.start : e.end] == e.text
        assert e.source == "rule" and e.confidence == 1.0
    return [(e.type, e.text, e.value) for e in entities]


def test_order_id_upper_cased():
    assert found("我的订单kf2026112100001还没到") == [("order_id", "kf2026112100001", "KF2026112100001")]
    assert found("订单KF20261121000012") == []  # 14 digits: not a demo order id


@pytest.mark.parametrize(
    "text, surface",
    [
        ("手机13812345678", "13812345678"),
        ("call me at +86 138-1234-5678 please", "+86 138-1234-5678"),
        ("电话 138 1234 5678", "138 1234 5678"),
        ("0086 13812345678", "0086 13812345678"),
        ("8613812345678", "8613812345678"),
    ],
)
def test_mobile_numbers(text, surface):
    assert found(text) == [("phone", surface, "13812345678")]


def test_phone_validation():
    assert found("12812345678") == []  # no mobile prefix 12x
    assert found("138123456789") == []  # 12 digits
    assert found("座机 021-12345678") == [("phone", "021-12345678", "02112345678")]
    # the digits inside an order id are not a phone number
    assert [t for t, _, _ in found("KF2026113812345")] == ["order_id"]


def test_email_lower_cased_and_validated():
    assert found("邮箱 Li.Lei@Example.COM 谢谢") == [("email", "Li.Lei@Example.COM", "li.lei@example.com")]
    assert found("bad a..b@example.com") == []
    assert found("no tld foo@bar") == []


@pytest.mark.parametrize(
    "text, kind, surface, cents",
    [
        ("退我¥12.90", "amount", "¥12.90", "1290"),
        ("退款12,900元", "amount", "12,900元", "1290000"),
        ("一共1.5万块", "amount", "1.5万块", "1500000"),
        ("三百块钱", "amount", "三百块钱", "30000"),
        ("两千五百元", "amount", "两千五百元", "250000"),
        ("才3块5", "amount", "3块5", "350"),
        ("差5毛钱", "amount", "5毛钱", "50"),
        ("RMB 20", "amount", "RMB 20", "2000"),
        ("it was 20 yuan", "amount", "20 yuan", "2000"),
        ("it cost $12.99", "amount_usd", "$12.99", "1299"),
        ("12 dollars back", "amount_usd", "12 dollars", "1200"),
        ("30美元", "amount_usd", "30美元", "3000"),
    ],
)
def test_amounts_in_cents(text, kind, surface, cents):
    assert found(normalize(text)) == [(kind, surface, cents)]


def test_full_width_amount_after_normalize():
    assert found(normalize("退我￥１２９元")) == [("amount", "¥129元", "12900")]


def test_a_bare_number_is_not_an_amount():
    assert found("我买了129的那个") == []


@pytest.mark.parametrize(
    "text, surface, value",
    [
        ("明天下午3点送", "下午3点", "15:00"),
        ("3点半可以吗", "3点半", "15:30"),
        ("凌晨3点半", "凌晨3点半", "03:30"),
        ("上午10点", "上午10点", "10:00"),
        ("9点前送到", "9点", "09:00"),
        ("晚上八点", "晚上八点", "20:00"),
        ("at 15:30", "15:30", "15:30"),
        ("around 3pm", "3pm", "15:00"),
        ("3:30 pm works", "3:30 pm", "15:30"),
    ],
)
def test_times(text, surface, value):
    assert ("time", surface, value) in found(text)


def test_a_number_of_points_is_not_a_time():
    assert [t for t, _, _ in found("有一点问题")] == []


@pytest.mark.parametrize(
    "text, address",
    [
        ("我住在上海市浦东新区人民路100号3栋502室", "上海市浦东新区人民路100号3栋502室"),
        ("寄到北京市朝阳区建国路88号", "北京市朝阳区建国路88号"),
        ("地址改成广州市天河区中山路5号，谢谢", "广州市天河区中山路5号"),
        ("收货地址：浙江省杭州市西湖区文三路", "浙江省杭州市西湖区文三路"),
        ("送到成都市武侯区", "成都市武侯区"),
        ("I live at 88 Century Avenue, Pudong, Shanghai 200120", "88 Century Avenue, Pudong, Shanghai 200120"),
        ("send it to Room 5, 12 Garden Road, Tianhe District", "Room 5, 12 Garden Road, Tianhe District"),
    ],
)
def test_addresses(text, address):
    assert [(t, s) for t, s, _ in found(text) if t == "address"] == [("address", address)]


def test_address_value_drops_spaces():
    assert found("寄到上海市 浦东新区 人民路100号") == [("address", "上海市 浦东新区 人民路100号", "上海市浦东新区人民路100号")]


@pytest.mark.parametrize(
    "text", ["我们小区的快递柜", "超市里买的", "这个地区能送吗", "in 3 days", "I left 2 blue shirts on the road", "it takes 3 days by road"]
)
def test_not_addresses(text):
    assert [t for t, _, _ in found(text, "en") if t == "address"] == []


def test_quantities():
    assert found("我买了3件T恤") == [("quantity", "3件", "3")]
    assert found("两双袜子") == [("quantity", "两双", "2")]
    assert found("two pairs of socks", "en") == [("quantity", "two pairs", "2")]
    assert found("一个问题") == []
    assert found("I want to return an item", "en") == []


def test_dates_are_iso():
    assert found("明天能到吗") == [("date", "明天", "2026-11-22")]
    assert found("can it arrive by next Friday?", "en") == [("date", "next Friday", "2026-11-27")]


def test_a_whole_message():
    text = normalize("订单号KF2026112100001，手机138-1234-5678，下周一下午3点前送到上海市浦东新区人民路100号，运费退我12元")
    assert found(text) == [
        ("order_id", "KF2026112100001", "KF2026112100001"),
        ("phone", "138-1234-5678", "13812345678"),
        ("date", "下周一", "2026-11-23"),
        ("time", "下午3点", "15:00"),
        ("address", "上海市浦东新区人民路100号", "上海市浦东新区人民路100号"),
        ("amount", "12元", "1200"),
    ]


def test_no_overlaps_and_text_order():
    text = "13812345678@qq.com 和 2026-11-30 和 ¥2026"
    entities = extract_rule_entities(text, reference_time=REF, language="zh")
    assert [e.type for e in entities] == ["email", "date", "amount"]
    for a, b in zip(entities, entities[1:], strict=False):
        assert a.end <= b.start


def test_extractor_without_a_tagger_returns_the_rules():
    text = "KF2026112100001 明天到"
    assert EntityExtractor().extract(text, reference_time=REF, language="zh") == extract_rule_entities(
        text, reference_time=REF, language="zh"
    )
    assert EntityExtractor().extract("", reference_time=REF, language="zh") == []
