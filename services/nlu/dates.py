"""Dates in a customer message, resolved against a reference time (the message's arrival).

``resolve_dates(text, reference, language)`` finds relative and absolute dates in Chinese
and English and returns them as :class:`DateMention` ``(start, end, date, text)`` with
character offsets into ``text``. Patterns of both languages are tried whatever
``language`` says (customers mix them); ``language`` is accepted for the interface.
Numeric ``5/12`` is month/day (the Chinese and the US order) unless the first number
cannot be a month (``25/12``).

What the relative forms mean (weeks run Monday to Sunday; with the reference
Saturday 2026-11-21):

=========================================  ==========================================  ===========
form                                       meaning                                     example
=========================================  ==========================================  ===========
今天 明天 后天 大后天 / 昨天 前天 大前天   reference + 0, 1, 2, 3 / - 1, 2, 3 days    明天 = 11-22
本周X 这周X 这个星期X                      day X of the reference's week (may be past) 本周五 = 11-20
下周X 下个星期X 下礼拜X / 下下周X          day X of the next week / the week after    下周一 = 11-23
上周X / 上上周X                            day X of the previous week / the one before 上周二 = 11-10
周X 星期X 礼拜X (bare)                     the next day X on or after the reference    周五 = 11-27
next Friday                                Friday of the next week (= 下周五)          11-27
last Monday                                Monday of the previous week (= 上周一)      11-09
this Friday, on Friday, Friday             the next Friday on or after the reference   11-27
N天后 / N天前, in N days / N days ago       reference ± N days (also weeks, months)     3天后 = 11-24
下个月3号 / 本月15号 / 上个月1号           day of the next / this / previous month     下个月3号 = 12-03
11月25日, Dec 5, 12/5, the 25th, 25号      that day in the reference's year / month    12/5 = 12-05
                                           (a year-less day within 92 days across New
                                           Year is in the next / previous year)        1/3 = 2027-01-03 on 12-20
2026年12月1日, 2026-11-30, 2026/11/30       absolute
=========================================  ==========================================  ===========

Dates that do not exist (2月30日, 下个月31号 in a 30-day month) are not mentions. Chinese
numerals are read by :func:`chinese_number` (also used for amounts and quantities).
"""

from __future__ import annotations

import calendar
import re
from datetime import date, datetime, timedelta
from typing import NamedTuple


class DateMention(NamedTuple):
    start: int
    end: int
    date: date
    text: str


# ------------------------------------------------------------------ Chinese numerals

_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "俩": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
_UNITS = {"十": 10, "拾": 10, "百": 100, "佰": 100, "千": 1000, "仟": 1000}
_BIG = {"万": 10_000, "萬": 10_000, "亿": 100_000_000}
_DIGITS.update({"壹": 1, "贰": 2, "叁": 3, "肆": 4, "伍": 5, "陆": 6, "柒": 7, "捌": 8, "玖": 9})
CHINESE_NUMERAL_CHARS = "".join(_DIGITS) + "".join(_UNITS) + "".join(_BIG)


def chinese_number(text: str) -> int | None:
    """Integer value of a Chinese (or Arabic) numeral; ``None`` when it is not one.

    ``"十五"`` -> 15, ``"两千五百"`` -> 2500, ``"两千五"`` -> 2500 (a trailing digit after a unit
    counts one unit lower, as said colloquially), ``"一万二"`` -> 12000, ``"三百零五"`` -> 305,
    ``"二零二六"`` -> 2026 (digit by digit), ``"42"`` -> 42.
    """
    text = text.strip()
    if not text:
        return None
    if text.isascii():
        return int(text) if text.isdigit() else None
    if all(ch in _DIGITS for ch in text):
        value = 0
        for ch in text:
            value = value * 10 + _DIGITS[ch]
        return value
    total = section = 0
    number: int | None = None
    previous = ""
    for ch in text:
        if ch in _DIGITS:
            number = _DIGITS[ch]
        elif ch.isascii() and ch.isdigit():
            number = number * 10 + int(ch) if number is not None and previous.isascii() and previous.isdigit() else int(ch)
        elif ch in _UNITS:
            section += (1 if number is None else number) * _UNITS[ch]
            number = None
        elif ch in _BIG:
            total += (section + (number or 0) or 1) * _BIG[ch]
            section, number = 0, None
        else:
            return None
        previous = ch
    if number is not None:
        before = text[-2] if len(text) > 1 else ""
        scale = _UNITS.get(before) or _BIG.get(before) or 0
        if scale and text[-1] in _DIGITS:  # "两千五" = 2500, "一万二" = 12000, "十五" = 15
            number *= scale // 10
        section += number
    return total + section


_EN_NUMBERS = {
    "a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "fifteen": 15, "twenty": 20, "thirty": 30,
}
EN_NUMBER_WORDS = "|".join(sorted(_EN_NUMBERS, key=len, reverse=True))


def english_number(text: str) -> int | None:
    """``"3"`` -> 3, ``"three"`` -> 3, ``"a"`` -> 1; ``None`` otherwise."""
    text = text.strip().lower()
    if text.isdigit():
        return int(text)
    return _EN_NUMBERS.get(text)


def _num(text: str) -> int | None:
    return english_number(text) if text.isascii() else chinese_number(text)


# ------------------------------------------------------------------ date arithmetic

def _safe_date(year: int, month: int, day: int) -> date | None:
    if not (1 <= month <= 12 and 1 <= day <= 31 and 1900 <= year <= 2200):
        return None
    if day > calendar.monthrange(year, month)[1]:
        return None
    return date(year, month, day)


def _add_months(d: date, months: int, day: int | None = None) -> date | None:
    index = d.year * 12 + d.month - 1 + months
    year, month = divmod(index, 12)
    if day is None:  # "N个月后": clamp to the month's last day
        return date(year, month + 1, min(d.day, calendar.monthrange(year, month + 1)[1]))
    return _safe_date(year, month + 1, day)


# A month and day without a year are in the reference's year, unless the same day in the
# year before or after lies within this many days of the reference: 1月3日 said on
# 12月20日 is the coming 3 January, 12月28日 said on 1月3日 the one just past.
YEAR_ROLLOVER_DAYS = 92


def _nearest_year(ref: date, month: int, day: int) -> date | None:
    this_year = _safe_date(ref.year, month, day)
    for year in (ref.year + 1, ref.year - 1):
        other = _safe_date(year, month, day)
        if other is not None and abs((other - ref).days) <= YEAR_ROLLOVER_DAYS and (
                this_year is None or abs((other - ref).days) < abs((this_year - ref).days)):
            return other
    return this_year


def _week_day(ref: date, weeks: int, weekday: int) -> date:
    """Day ``weekday`` (0 = Monday) of the week ``weeks`` after the reference's week."""
    return ref - timedelta(days=ref.weekday()) + timedelta(days=7 * weeks + weekday)


def _coming(ref: date, weekday: int) -> date:
    """The next day ``weekday`` on or after the reference."""
    return ref + timedelta(days=(weekday - ref.weekday()) % 7)


# ------------------------------------------------------------------ patterns

_ZN = r"(?:\d{1,4}|[零〇一二两三四五六七八九十]{1,4})"  # a small number, Arabic or Chinese
_ZH_WEEKDAY = {"一": 0, "二": 1, "三": 2, "四": 3, "五": 4, "六": 5, "日": 6, "天": 6, "七": 6,
               "1": 0, "2": 1, "3": 2, "4": 3, "5": 4, "6": 5, "7": 6}
_ZH_DAY_WORDS = {"大前天": -3, "前天": -2, "昨天": -1, "昨日": -1, "今天": 0, "今日": 0, "明天": 1, "明日": 1, "后天": 2, "大后天": 3}
_ZH_WEEK_SHIFT = {None: None, "这": 0, "本": 0, "这个": 0, "下": 1, "下个": 1, "下下": 2, "下下个": 2, "上": -1, "上个": -1, "上上": -2, "上上个": -2}
_ZH_MONTH_SHIFT = {"这": 0, "本": 0, "这个": 0, "下": 1, "下个": 1, "上": -1, "上个": -1}
_ZH_YEAR_SHIFT = {"今年": 0, "明年": 1, "去年": -1, "后年": 2, "前年": -2}

_MONTHS = {
    "jan": 1, "january": 1, "feb": 2, "february": 2, "mar": 3, "march": 3, "apr": 4, "april": 4, "may": 5,
    "jun": 6, "june": 6, "jul": 7, "july": 7, "aug": 8, "august": 8, "sep": 9, "sept": 9, "september": 9,
    "oct": 10, "october": 10, "nov": 11, "november": 11, "dec": 12, "december": 12,
}
_EN_MONTH = "|".join(sorted(_MONTHS, key=len, reverse=True))
_WEEKDAYS = {
    "monday": 0, "mon": 0, "tuesday": 1, "tue": 1, "tues": 1, "wednesday": 2, "wed": 2, "thursday": 3, "thu": 3,
    "thur": 3, "thurs": 3, "friday": 4, "fri": 4, "saturday": 5, "sat": 5, "sunday": 6, "sun": 6,
}
_EN_WEEKDAY = "|".join(sorted(_WEEKDAYS, key=len, reverse=True))
_EN_FULL_WEEKDAY = "monday|tuesday|wednesday|thursday|friday|saturday|sunday"
_ORD = r"(?:st|nd|rd|th)?"
_UNIT_DAYS = {"天": 1, "日": 1, "周": 7, "星期": 7, "礼拜": 7, "day": 1, "days": 1, "week": 7, "weeks": 7}

_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("zh_ymd", re.compile(rf"(?P<y>\d{{4}}|[零〇一二三四五六七八九]{{4}})\s*年\s*(?P<m>{_ZN})\s*月\s*(?P<d>{_ZN})\s*(?:[日号]|(?![\d零〇一二两三四五六七八九十]))")),
    ("iso", re.compile(r"(?<![\d/.-])(?P<y>\d{4})(?P<sep>[-/.])(?P<m>\d{1,2})(?P=sep)(?P<d>\d{1,2})(?![\d/.-])")),
    ("mdy", re.compile(r"(?<![\d/])(?P<a>\d{1,2})/(?P<b>\d{1,2})/(?P<y>\d{4})(?![\d/])")),
    ("zh_md", re.compile(rf"(?P<yw>今年|明年|去年|后年|前年)?(?P<m>{_ZN})\s*月(?:份)?\s*(?P<d>{_ZN})\s*[日号]")),
    ("zh_month_day", re.compile(rf"(?P<shift>下个|上个|这个|下|上|这|本)月(?P<d>{_ZN})\s*[日号]")),
    ("zh_after", re.compile(rf"(?P<n>{_ZN}|半)\s*(?P<unit>个月|个星期|个礼拜|天|日|周|星期|礼拜)(?:以后|之后|后|过后)")),
    ("zh_before", re.compile(rf"(?P<n>{_ZN}|半)\s*(?P<unit>个月|个星期|个礼拜|天|日|周|星期|礼拜)(?:以前|之前|前)")),
    ("zh_week", re.compile(r"(?P<shift>下下个|上上个|下下|上上|下个|上个|这个|下|上|这|本)?(?:周|星期|礼拜)(?P<wd>[一二三四五六日天1-7])")),
    ("zh_word", re.compile("|".join(sorted(_ZH_DAY_WORDS, key=len, reverse=True)))),
    ("md", re.compile(r"(?<![\d/.:])(?P<a>\d{1,2})/(?P<b>\d{1,2})(?![\d/]|\.\d|\s*(?:off|price|of|the|折|价)\b)", re.I)),
    ("zh_day", re.compile(r"(?<![\d月路街道弄巷村区号栋楼第大小])(?P<d>\d{1,2}|[一二三四五六七八九十]{1,3})\s*[号日](?![楼院门线房室店仓库柜口子单码])")),
    ("en_word", re.compile(r"\b(?:the\s+day\s+after\s+tomorrow|the\s+day\s+before\s+yesterday|today|tonight|tomorrow|tmrw|tmr|yesterday)\b", re.I)),
    ("en_week", re.compile(rf"\b(?:(?P<shift>next|this|last|coming|on)\s+)(?P<wd>{_EN_WEEKDAY})\b\.?|\b(?P<bare>{_EN_FULL_WEEKDAY})\b", re.I)),
    ("en_in", re.compile(rf"\b(?:in|within)\s+(?P<n>\d{{1,3}}|{EN_NUMBER_WORDS})\s+(?P<unit>days?|weeks?|months?)\b|\b(?P<n2>\d{{1,3}}|{EN_NUMBER_WORDS})\s+(?P<unit2>days?|weeks?|months?)\s+(?:later|from\s+now)\b", re.I)),
    ("en_ago", re.compile(rf"\b(?P<n>\d{{1,3}}|{EN_NUMBER_WORDS})\s+(?P<unit>days?|weeks?|months?)\s+ago\b", re.I)),
    ("en_md", re.compile(rf"\b(?P<mon>{_EN_MONTH})\.?\s+(?P<d>\d{{1,2}}){_ORD}\b(?:,?\s+(?P<y>\d{{4}})\b)?", re.I)),
    ("en_dm", re.compile(rf"\b(?:the\s+)?(?P<d>\d{{1,2}}){_ORD}\s+(?:of\s+)?(?P<mon>{_EN_MONTH})\b\.?(?:,?\s+(?P<y>\d{{4}})\b)?", re.I)),
    ("en_the", re.compile(r"\bthe\s+(?P<d>\d{1,2})(?:st|nd|rd|th)\b", re.I)),
]


def _resolve(kind: str, m: re.Match[str], ref: date, language: str) -> date | None:  # noqa: C901 - one branch per form
    g = m.groupdict()
    if kind in ("zh_ymd", "iso"):
        year, month, day = _num(g["y"]), _num(g["m"]), _num(g["d"])
        return _safe_date(year, month, day) if None not in (year, month, day) else None
    if kind == "mdy":
        a, b, year = int(g["a"]), int(g["b"]), int(g["y"])
        month, day = (b, a) if a > 12 else (a, b)
        return _safe_date(year, month, day)
    if kind == "md":
        a, b = int(g["a"]), int(g["b"])
        if (a, b) == (24, 7):
            return None  # "24/7" is round the clock, not 24 July
        month, day = (b, a) if a > 12 else (a, b)
        return _nearest_year(ref, month, day)
    if kind == "zh_md":
        month, day = _num(g["m"]), _num(g["d"])
        if not (month and day):
            return None
        if not g["yw"]:
            return _nearest_year(ref, month, day)
        return _safe_date(ref.year + _ZH_YEAR_SHIFT[g["yw"]], month, day)
    if kind == "zh_month_day":
        day = _num(g["d"])
        return _add_months(ref, _ZH_MONTH_SHIFT[g["shift"]], day) if day else None
    if kind in ("zh_after", "zh_before"):
        n = 0.5 if g["n"] == "半" else _num(g["n"])
        if not n or n > 3660:
            return None
        sign = 1 if kind == "zh_after" else -1
        unit = g["unit"]
        if unit == "个月":
            return _add_months(ref, sign * int(n)) if n == int(n) else ref + timedelta(days=sign * 15)
        days = _UNIT_DAYS[unit.removeprefix("个")] * n
        return ref + timedelta(days=sign * int(days))
    if kind == "zh_week":
        weekday = _ZH_WEEKDAY[g["wd"]]
        shift = _ZH_WEEK_SHIFT[g["shift"]]
        return _coming(ref, weekday) if shift is None else _week_day(ref, shift, weekday)
    if kind == "zh_word":
        return ref + timedelta(days=_ZH_DAY_WORDS[m.group(0)])
    if kind == "zh_day":
        day = _num(g["d"])
        return _safe_date(ref.year, ref.month, day) if day else None
    if kind == "en_word":
        word = re.sub(r"\s+", " ", m.group(0).lower())
        offsets = {"today": 0, "tonight": 0, "tomorrow": 1, "tmr": 1, "tmrw": 1, "yesterday": -1,
                   "the day after tomorrow": 2, "the day before yesterday": -2}
        return ref + timedelta(days=offsets[word])
    if kind == "en_week":
        if g["bare"]:
            return _coming(ref, _WEEKDAYS[g["bare"].lower()])
        weekday, shift = _WEEKDAYS[g["wd"].lower()], g["shift"].lower()
        if shift == "next":
            return _week_day(ref, 1, weekday)
        if shift == "last":
            return _week_day(ref, -1, weekday)
        return _coming(ref, weekday)  # this / coming / on
    if kind in ("en_in", "en_ago"):
        n = english_number(g.get("n") or g.get("n2") or "")
        unit = (g.get("unit") or g.get("unit2") or "").lower()
        if not n or n > 3660:
            return None
        sign = -1 if kind == "en_ago" else 1
        if unit.startswith("month"):
            return _add_months(ref, sign * n)
        return ref + timedelta(days=sign * n * _UNIT_DAYS[unit])
    if kind in ("en_md", "en_dm"):
        if kind == "en_dm" and g["mon"].lower() == "may" and not g.get("y") and not re.search(r"the|of", m.group(0), re.I):
            return None  # "item 5 may be late"
        month = _MONTHS[g["mon"].lower().rstrip(".")]
        return _safe_date(int(g["y"]), month, int(g["d"])) if g.get("y") else _nearest_year(ref, month, int(g["d"]))
    if kind == "en_the":
        return _safe_date(ref.year, ref.month, int(g["d"]))
    return None


def resolve_dates(text: str, reference: datetime | date, language: str = "zh") -> list[DateMention]:
    """Every date mentioned in ``text``, resolved against ``reference``, in text order.

    Where two forms overlap the longer one wins (``2026年12月1日`` rather than ``12月1日``).
    """
    ref = reference.date() if isinstance(reference, datetime) else reference
    candidates: list[tuple[int, int, date]] = []
    for kind, pattern in _PATTERNS:
        for m in pattern.finditer(text):
            resolved = _resolve(kind, m, ref, language)
            if resolved is None:
                continue
            start, end = m.start(), m.end()
            # trailing spaces of optional groups are not part of the mention
            while end > start and text[end - 1].isspace():
                end -= 1
            candidates.append((start, end, resolved))
    candidates.sort(key=lambda c: (-(c[1] - c[0]), c[0]))
    chosen: list[tuple[int, int, date]] = []
    for start, end, resolved in candidates:
        if all(end <= s or e <= start for s, e, _ in chosen):
            chosen.append((start, end, resolved))
    chosen.sort()
    return [DateMention(s, e, d, text[s:e]) for s, e, d in chosen]
