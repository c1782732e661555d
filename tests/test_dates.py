"""Date resolution against a reference time (services/nlu/dates.py).

The reference is Saturday 2026-11-21, 10:00 (weeks run Monday to Sunday).
"""

from datetime import date, datetime

import pytest

from services.nlu.dates import chinese_number, english_number, resolve_dates

REF = datetime(2026, 11, 21, 10, 0)  # a Saturday


def one(text: str, language: str = "zh") -> tuple[str, str]:
    found = resolve_dates(text, REF, language)
    assert len(found) == 1, f"{text!r}: {found}"
    return found[0].text, found[0].date.isoformat()


def test_reference_is_a_saturday():
    assert REF.weekday() == 5


@pytest.mark.parametrize(
    "text, value",
    [
        ("今天", "2026-11-21"),
        ("明天", "2026-11-22"),
        ("后天", "2026-11-23"),
        ("大后天", "2026-11-24"),
        ("昨天", "2026-11-20"),
        ("前天", "2026-11-19"),
        ("大前天", "2026-11-18"),
        # 下周X: day X of next week (Mon 11-23 .. Sun 11-29)
        ("下周一", "2026-11-23"),
        ("下星期三", "2026-11-25"),
        ("下个礼拜五", "2026-11-27"),
        ("下下周一", "2026-11-30"),
        # 本周/这周: the reference's own week (Mon 11-16 .. Sun 11-22), possibly past
        ("本周五", "2026-11-20"),
        ("这周日", "2026-11-22"),
        ("这个星期天", "2026-11-22"),
        # 上周X: the previous week (Mon 11-09 .. Sun 11-15)
        ("上周二", "2026-11-10"),
        # bare weekday: the coming one, on or after the reference
        ("周五", "2026-11-27"),
        ("星期六", "2026-11-21"),
        ("礼拜天", "2026-11-22"),
        ("下个月3号", "2026-12-03"),
        ("这个月25号", "2026-11-25"),
        ("上个月1号", "2026-10-01"),
        ("11月25日", "2026-11-25"),
        ("11月25号", "2026-11-25"),
        ("十二月一日", "2026-12-01"),
        ("明年1月5日", "2027-01-05"),
        ("2026年12月1日", "2026-12-01"),
        ("二〇二六年十二月一日", "2026-12-01"),
        ("2026-11-30", "2026-11-30"),
        ("2026/11/30", "2026-11-30"),
        ("2026.11.30", "2026-11-30"),
        ("12/5", "2026-12-05"),
        ("3天后", "2026-11-24"),
        ("三天之后", "2026-11-24"),
        ("两周后", "2026-12-05"),
        ("5天前", "2026-11-16"),
        ("一个月后", "2026-12-21"),
        ("28号", "2026-11-28"),
    ],
)
def test_chinese_forms(text, value):
    assert one(f"{text}", "zh") == (text, value)


@pytest.mark.parametrize(
    "text, value",
    [
        ("today", "2026-11-21"),
        ("tomorrow", "2026-11-22"),
        ("yesterday", "2026-11-20"),
        ("the day after tomorrow", "2026-11-23"),
        # next X = day X of next week (= 下周X); last X = of the previous week (= 上周X)
        ("next Friday", "2026-11-27"),
        ("next Monday", "2026-11-23"),
        ("last Monday", "2026-11-09"),
        # this X / on X / X: the coming one
        ("this Friday", "2026-11-27"),
        ("on Sunday", "2026-11-22"),
        ("Wednesday", "2026-11-25"),
        ("in 3 days", "2026-11-24"),
        ("in three days", "2026-11-24"),
        ("2 weeks from now", "2026-12-05"),
        ("3 days ago", "2026-11-18"),
        ("Dec 5", "2026-12-05"),
        ("December 5th", "2026-12-05"),
        ("5 December 2026", "2026-12-05"),
        ("Dec. 5, 2027", "2027-12-05"),
        ("the 5th of December", "2026-12-05"),
        ("the 25th", "2026-11-25"),
        ("11/30/2026", "2026-11-30"),
        ("2026-11-30", "2026-11-30"),
    ],
)
def test_english_forms(text, value):
    assert one(text, "en") == (text, value)


def test_offsets_point_into_the_text():
    text = "我的包裹说好下周一到，结果到11月30日还没来"
    found = resolve_dates(text, REF, "zh")
    assert [(m.text, m.date) for m in found] == [("下周一", date(2026, 11, 23)), ("11月30日", date(2026, 11, 30))]
    for m in found:
        assert text[m.start : m.end] == m.text


def test_english_sentence():
    text = "I ordered on Dec 1 and it still hasn't arrived, can it come by next Friday?"
    found = resolve_dates(text, REF, "en")
    assert [(m.text, m.date.isoformat()) for m in found] == [("Dec 1", "2026-12-01"), ("next Friday", "2026-11-27")]


def test_longer_form_wins():
    assert one("2026年12月1日发货") == ("2026年12月1日", "2026-12-01")
    assert one("下个月3号") == ("下个月3号", "2026-12-03")


@pytest.mark.parametrize("text", ["2月30日", "2026年2月29日", "13月1日", "2026-02-30", "February 30", "11月31号", "下个月32号"])
def test_invalid_dates_are_not_mentions(text):
    assert resolve_dates(text, REF, "zh") == []


@pytest.mark.parametrize(
    "text",
    ["人民路25号", "3号楼502室", "地铁2号线", "我买了3件", "item 5 may be late", "it's about 1/2 off?", "the sun is out", "我穿42号的鞋", "第3号",
     "尺码小了,想换大一号", "Is support 24/7?", "Can I still return it after 7 days?"],
)
def test_not_dates(text):
    assert resolve_dates(text, REF, "zh") == []


def test_leap_day_exists_in_a_leap_year():
    assert [m.date for m in resolve_dates("2028年2月29日", REF, "zh")] == [date(2028, 2, 29)]


def test_month_end_arithmetic():
    jan31 = datetime(2027, 1, 31)
    assert [m.date for m in resolve_dates("一个月后", jan31, "zh")] == [date(2027, 2, 28)]
    assert resolve_dates("下个月30号", jan31, "zh") == []  # February has no 30th


@pytest.mark.parametrize(
    "text, value",
    [("十五", 15), ("二十一", 21), ("一百一", 110), ("三百零五", 305), ("两千五百", 2500), ("两千五", 2500),
     ("一万二", 12000), ("一万二千三百", 12300), ("二零二六", 2026), ("30万", 300000), ("42", 42), ("十", 10)],
)
def test_chinese_number(text, value):
    assert chinese_number(text) == value


def test_not_numbers():
    assert chinese_number("") is None
    assert chinese_number("三个") is None
    assert chinese_number("abc") is None
    assert english_number("three") == 3
    assert english_number("lots") is None


@pytest.mark.parametrize(
    "text, reference, value",
    [
        # within 92 days across New Year: the coming / the last one
        ("1月5日", REF, "2027-01-05"),
        ("Jan 3", datetime(2026, 12, 20), "2027-01-03"),
        ("1/3", datetime(2026, 12, 20), "2027-01-03"),
        ("12月28日", datetime(2027, 1, 3), "2026-12-28"),
        # further than that: the reference's year, past or not
        ("3月1日", REF, "2026-03-01"),
        ("12月28日", datetime(2027, 6, 1), "2027-12-28"),
        # a year word always wins
        ("今年1月5日", REF, "2026-01-05"),
    ],
)
def test_a_day_without_a_year_takes_the_nearest_year_across_new_year(text, reference, value):
    found = resolve_dates(text, reference, "zh")
    assert [m.date.isoformat() for m in found] == [value]

