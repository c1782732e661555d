"""Sensitive-word lexicon: matching, and hot reload of the lexicon file."""

from __future__ import annotations

import logging
import os
import threading

import pytest

from services.nlu.lexicon import DEFAULT_LEXICON, LexiconError, SensitiveLexicon, parse_lexicon
from services.nlu.text import normalize


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def write(path, content: str) -> None:
    """Write and move mtime on, as a later edit would (the test runs faster than mtime ticks)."""
    path.write_text(content, encoding="utf-8")
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))


def found(lexicon: SensitiveLexicon, text: str) -> list[tuple[str, str]]:
    return [(h.term, h.category) for h in lexicon.scan(normalize(text))]


@pytest.fixture(scope="module")
def default() -> SensitiveLexicon:
    return SensitiveLexicon(reload_s=None)


# ---------------------------------------------------------------- matching


def test_default_lexicon_covers_both_languages(default):
    assert DEFAULT_LEXICON.is_file() and len(default) > 20
    assert found(default, "你们就是一群骗子公司，他妈的") == [("骗子公司", "abuse"), ("他妈的", "abuse")]
    assert found(default, "I will find you and KILL YOU") == [("kill you", "threat")]
    assert found(default, "客服让我把验证码发给他") == [("把验证码发给", "fraud")]
    assert found(default, "I just want to die") == [("want to die", "self_harm")]


def test_hits_carry_offsets_into_the_normalized_text(default):
    text = normalize("what an Idiot. 你们是混蛋")
    hits = default.scan(text)
    assert [(text[h.start : h.end], h.category) for h in hits] == [("Idiot", "abuse"), ("混蛋", "abuse")]


def test_full_width_and_traditional_forms_match(default):
    assert found(default, "ＩＤＩＯＴ") == [("idiot", "abuse")]
    assert found(default, "你這個王八蛋") == [("王八蛋", "abuse")]


def test_latin_terms_match_whole_words_only(default):
    assert found(default, "I passed the class assessment, shitake mushrooms") == []
    assert found(default, "this is bullshit") == [("bullshit", "abuse")]  # longest, not "shit" inside it
    assert found(default, "太shit了") == [("shit", "abuse")]  # Chinese around a Latin word is a word edge


def test_normal_customer_messages_have_no_hits(default):
    for text in [
        "我的订单还没到，能帮我查一下吗？",
        "Where is my order? It was supposed to arrive on Monday.",
        "请问怎么申请退款",
        "The package arrived damaged, I want a refund",
    ]:
        assert found(default, text) == [], text


def test_parse_lexicon_format():
    terms = parse_lexicon("# comment\n\n退款骗局\tfraud\nＢａｄ Ｗｏｒｄ\n  spaced\t\tthreat  \n")
    assert terms == {"退款骗局": "fraud", "bad word": "sensitive", "spaced": "threat"}
    with pytest.raises(LexiconError, match=":2:"):
        parse_lexicon("ok\tabuse\nbad\tNot A Category\n")
    with pytest.raises(LexiconError):
        parse_lexicon("a\tb\tc\n")


# ---------------------------------------------------------------- hot reload


def test_hot_reload_on_lookup(tmp_path):
    path = tmp_path / "words.txt"
    write(path, "苹果\tfruit\n")
    lexicon = SensitiveLexicon(path, reload_s=0)
    assert found(lexicon, "苹果和香蕉") == [("苹果", "fruit")]
    write(path, "苹果\tfruit\n香蕉\tfruit\nbanana split\tdessert\n")
    assert found(lexicon, "苹果和香蕉, banana split") == [("苹果", "fruit"), ("香蕉", "fruit"), ("banana split", "dessert")]
    assert lexicon.version == 2
    write(path, "香蕉\tfruit\n")  # terms can go away too
    assert found(lexicon, "苹果和香蕉") == [("香蕉", "fruit")]
    assert lexicon.version == 3


def test_reload_waits_for_the_interval(tmp_path):
    path = tmp_path / "words.txt"
    write(path, "alpha\n")
    clock = FakeClock()
    lexicon = SensitiveLexicon(path, reload_s=2.0, clock=clock)
    write(path, "alpha\nbeta\n")
    clock.now += 1.0
    assert found(lexicon, "alpha beta") == [("alpha", "sensitive")]  # not checked yet
    clock.now += 1.5
    assert found(lexicon, "alpha beta") == [("alpha", "sensitive"), ("beta", "sensitive")]


def test_same_content_is_not_rebuilt(tmp_path):
    path = tmp_path / "words.txt"
    write(path, "alpha\n")
    lexicon = SensitiveLexicon(path, reload_s=None)
    write(path, "alpha\n")  # touched, same bytes
    assert lexicon.reload() is False
    assert lexicon.version == 1


def test_explicit_reload(tmp_path):
    path = tmp_path / "words.txt"
    write(path, "alpha\n")
    lexicon = SensitiveLexicon(path, reload_s=None)
    write(path, "beta\n")
    assert found(lexicon, "alpha beta") == [("alpha", "sensitive")]  # no automatic checks
    assert lexicon.reload() is True
    assert found(lexicon, "alpha beta") == [("beta", "sensitive")]


@pytest.mark.parametrize(
    "breakage",
    [
        lambda p: p.write_bytes(b"\xff\xfe broken \x80\n"),  # not UTF-8
        lambda p: p.write_text("gamma\tBad Category\n", encoding="utf-8"),
        lambda p: p.write_bytes(b""),  # zero bytes: a write in progress
        lambda p: p.unlink(),
    ],
    ids=["not-utf8", "malformed", "empty", "missing"],
)
def test_broken_file_keeps_the_previous_lexicon(tmp_path, caplog, breakage):
    path = tmp_path / "words.txt"
    write(path, "alpha\tabuse\n")
    lexicon = SensitiveLexicon(path, reload_s=0)
    breakage(path)
    with caplog.at_level(logging.WARNING, logger="services.nlu.lexicon"):
        assert found(lexicon, "alpha") == [("alpha", "abuse")]
        assert found(lexicon, "alpha") == [("alpha", "abuse")]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1  # said once, not on every lookup
    assert "keeping the previous lexicon" in warnings[0].getMessage()
    write(path, "delta\tthreat\n")  # repaired: picked up again
    assert found(lexicon, "alpha delta") == [("delta", "threat")]


def test_unusable_file_at_start_raises(tmp_path):
    with pytest.raises(LexiconError):
        SensitiveLexicon(tmp_path / "nope.txt")
    (tmp_path / "empty.txt").write_bytes(b"")
    with pytest.raises(LexiconError):
        SensitiveLexicon(tmp_path / "empty.txt")


def test_comments_only_file_is_an_empty_lexicon(tmp_path):
    path = tmp_path / "words.txt"
    write(path, "# nothing screened for now\n")
    assert found(SensitiveLexicon(path), "anything at all") == []


def test_lookups_during_reloads_see_a_whole_lexicon(tmp_path):
    path = tmp_path / "words.txt"
    write(path, "alpha\nbeta\n")
    lexicon = SensitiveLexicon(path, reload_s=None)  # only complete files: the writer reloads
    errors: list[object] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            hits = {h.term for h in lexicon.scan("alpha beta gamma delta")}
            if hits not in ({"alpha", "beta"}, {"gamma", "delta"}):
                errors.append(hits)

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    for i in range(20):
        write(path, "gamma\ndelta\n" if i % 2 == 0 else "alpha\nbeta\n")
        lexicon.reload()
    stop.set()
    for t in threads:
        t.join()
    assert errors == []
    assert lexicon.version >= 20
