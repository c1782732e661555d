"""The CRF slot tagger, the demo pack's product tagger and ``kefu eval slots``."""

import json
import shutil
from datetime import datetime
from pathlib import Path

import pytest

from services.cli import main as kefu
from services.nlu.datasets import TaggedTokens, read_tagged
from services.nlu.entities import EntityExtractor
from services.nlu.slot_eval import span_scores
from services.nlu.slots import (
    FeatureOptions,
    SlotSpan,
    SlotTagger,
    spans,
    tokenize,
)
from services.nlu.slot_pack import load_or_train_pack_tagger, parse_annotated, read_slot_pack

FIXTURES = Path(__file__).parent / "fixtures" / "nlu"
TRAIN = FIXTURES / "slots_train.jsonl"
TEST = FIXTURES / "slots_test.jsonl"
BAD = FIXTURES / "slots_bad.jsonl"
PACK = Path(__file__).resolve().parent.parent / "services" / "demo" / "pack"
REF = datetime(2026, 11, 21, 10, 0)


# ------------------------------------------------------------------ tokens and spans

def test_tokenize_keeps_offsets():
    text = "我想把红色的T-shirt换成XL码, ok?"
    tokens = tokenize(text, "zh")
    assert [t for t, _, _ in tokens] == ["我", "想", "把", "红", "色", "的", "T-shirt", "换", "成", "XL", "码", ",", "ok", "?"]
    for token, start, end in tokens:
        assert text[start:end] == token


def test_tokenize_english():
    assert [t for t, _, _ in tokenize("I'd like 2 USB-C cables.", "en")] == ["I'd", "like", "2", "USB-C", "cables", "."]


def test_spans_conlleval_style():
    tags = ["B-color", "I-color", "O", "I-product", "I-product", "B-size", "I-color", "B-size", "B-size"]
    assert spans(None, tags) == [
        SlotSpan("color", 0, 2),
        SlotSpan("product", 3, 5),  # I- after O starts a span
        SlotSpan("size", 5, 6),
        SlotSpan("color", 6, 7),  # I- of another type starts a span
        SlotSpan("size", 7, 8),
        SlotSpan("size", 8, 9),
    ]
    assert spans(None, ["O", "O"]) == []
    with pytest.raises(ValueError):
        spans(["a"], ["O", "O"])


def test_span_scores_by_hand():
    gold = [["B-a", "I-a", "O", "B-b"], ["O", "B-a"], ["O", "O"]]
    pred = [["B-a", "I-a", "O", "B-a"], ["O", "B-a"], ["B-b", "O"]]
    s = span_scores(gold, pred)
    # gold spans: a(0,2) b(3,4) a(1,2) = 3; predicted: a(0,2) a(3,4) a(1,2) b(0,1) = 4; correct 2
    assert s["precision"] == pytest.approx(2 / 4)
    assert s["recall"] == pytest.approx(2 / 3)
    assert s["slot_f1"] == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    assert s["exact_match"] == pytest.approx(1 / 3)


def test_parse_annotated():
    seq = parse_annotated("我想把[红色](color)的[连衣裙](product)换成[L码](size)")
    assert seq.tokens == ["我", "想", "把", "红", "色", "的", "连", "衣", "裙", "换", "成", "L", "码"]
    assert seq.tags == ["O", "O", "O", "B-color", "I-color", "O", "B-product", "I-product", "I-product", "O", "O", "B-size", "I-size"]
    en = parse_annotated("Do you have the [down jacket](product) in [black](color)?", "en")
    assert [(s.type, " ".join(en.tokens[s.start : s.end])) for s in spans(None, en.tags)] == [("product", "down jacket"), ("color", "black")]


@pytest.mark.parametrize("line", ["the [red]dish](color)", "[re](color)d shirt", "a [](color) shirt"])
def test_parse_annotated_rejects_bad_lines(line):
    with pytest.raises(ValueError):
        parse_annotated(line, "en")


# ------------------------------------------------------------------ the tagger

@pytest.fixture(scope="module")
def fixture_tagger() -> SlotTagger:
    return SlotTagger.train(read_tagged(TRAIN), c1=0.05, c2=0.01, max_iterations=100)


def test_tagger_learns_the_pattern(fixture_tagger):
    assert fixture_tagger.tag(["i", "want", "a", "green", "coat"]) == ["O", "O", "O", "B-color", "B-product"]
    assert fixture_tagger.tag([]) == []
    assert fixture_tagger.slot_types() == ["color", "product"]


def test_tag_spans_have_marginal_confidence(fixture_tagger):
    found = fixture_tagger.tag_spans(["show", "me", "the", "white", "dress", "please"])
    assert [(s.type, s.start, s.end) for s in found] == [("color", 3, 4), ("product", 4, 5)]
    assert all(0.5 < s.confidence <= 1.0 for s in found)


def test_save_and_load_round_trip(fixture_tagger, tmp_path):
    path = tmp_path / "model.crf"
    fixture_tagger.save(path)
    loaded = SlotTagger.load(path)
    for seq in read_tagged(TEST):
        assert loaded.tag(seq.tokens) == fixture_tagger.tag(seq.tokens)
    assert loaded.gazetteer.entries == fixture_tagger.gazetteer.entries
    assert [p.name for p in tmp_path.iterdir()] == ["model.crf"]  # no temporary file left behind
    (tmp_path / "junk.crf").write_bytes(b"not a model")
    with pytest.raises(ValueError):
        SlotTagger.load(tmp_path / "junk.crf")


def test_training_is_deterministic(fixture_tagger):
    again = SlotTagger.train(read_tagged(TRAIN), c1=0.05, c2=0.01, max_iterations=100)
    for seq in read_tagged(TEST):
        assert again.tag(seq.tokens) == fixture_tagger.tag(seq.tokens)


@pytest.mark.parametrize("options", [FeatureOptions(), FeatureOptions(jieba=True, sentence_cues=True)])
def test_chinese_characters(options, tmp_path):
    rows = [
        parse_annotated(line)
        for line in [
            "我要买[红色](color)的[裙子](product)", "我要买[蓝色](color)的[帽子](product)", "有没有[白色](color)的[外套](product)",
            "有没有[黑色](color)的[裙子](product)", "我要买[黑色](color)的[外套](product)", "有没有[红色](color)的[帽子](product)",
            "谢谢你", "好的", "我要退货",
        ]
    ]
    tagger = SlotTagger.train(rows, c1=0.01, c2=0.01, max_iterations=100, options=options)
    tokens = [t for t, _, _ in tokenize("有没有蓝色的外套", "zh")]
    assert [(s.type, "".join(tokens[s.start : s.end])) for s in tagger.tag_spans(tokens)] == [("color", "蓝色"), ("product", "外套")]
    tagger.save(tmp_path / "zh.crf")
    loaded = SlotTagger.load(tmp_path / "zh.crf")
    assert loaded.options == options
    assert loaded.tag(tokens) == tagger.tag(tokens)


def test_training_needs_data():
    with pytest.raises(ValueError):
        SlotTagger.train([])
    with pytest.raises(ValueError):
        SlotTagger.train([TaggedTokens(["a", "b"], ["O"])])


# ------------------------------------------------------------------ kefu eval slots

def test_eval_cli_known_numbers(capsys):
    # The test file has 5 gold spans: 4 of a pattern the training file teaches, and one
    # of a type ("misc") that never occurs in training, on a sentence that training has
    # all-O. So: precision 4/4, recall 4/5, F1 8/9, exact match 3/4 (the last sentence
    # has no spans and none are predicted).
    assert kefu(["eval", "slots", "--train", str(TRAIN), "--test", str(TEST), "--json", "--iterations", "100"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n"] == 4 and report["n_train"] == 18
    assert report["precision"] == pytest.approx(1.0)
    assert report["recall"] == pytest.approx(0.8)
    assert report["slot_f1"] == pytest.approx(8 / 9)
    assert report["exact_match"] == pytest.approx(0.75)
    assert report["train_s"] > 0 and report["p50_ms"] > 0


def test_eval_cli_table(capsys):
    assert kefu(["eval", "slots", "--train", str(TRAIN), "--test", str(TRAIN), "--iterations", "100"]) == 0
    captured = capsys.readouterr()
    table = dict(line.split() for line in captured.out.strip().splitlines())
    assert table["n"] == "18"
    assert float(table["slot_f1"]) == pytest.approx(1.0)  # its own training data, all learnable
    assert "training on 18 sentences" in captured.err


def test_eval_cli_bad_files(capsys, tmp_path):
    assert kefu(["eval", "slots", "--train", str(BAD), "--test", str(TEST)]) == 2
    err = capsys.readouterr().err
    assert "slots_bad.jsonl:2" in err and "3 tokens but 1 tags" in err and "Traceback" not in err
    assert kefu(["eval", "slots", "--train", str(TRAIN), "--test", str(tmp_path / "missing.jsonl")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert kefu(["eval", "slots", "--train", str(TRAIN), "--test", str(TEST), "--iterations", "0"]) == 2


# ------------------------------------------------------------------ the demo pack's product tagger

def test_pack_slots_file():
    rows = read_slot_pack(PACK / "slots.yaml")
    assert 60 <= len(rows) <= 120
    used = {s.type for r in rows for s in spans(None, r.tags)}
    assert used == {"product", "color", "size", "reason", "carrier", "payment"}
    assert any(any("\u4e00" <= t <= "\u9fff" for t in r.tokens) for r in rows)
    assert any(all(t.isascii() for t in r.tokens) for r in rows)


def test_pack_slots_errors_name_the_example(tmp_path):
    (tmp_path / "slots.yaml").write_text("slots: {color: c}\nexamples:\n  en:\n    - a [red](colour) hat\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"examples\.en\[0\].*colour"):
        read_slot_pack(tmp_path / "slots.yaml")
    (tmp_path / "slots.yaml").write_text("slots: [\n", encoding="utf-8")
    with pytest.raises(ValueError, match="YAML"):
        read_slot_pack(tmp_path / "slots.yaml")


@pytest.fixture(scope="module")
def pack_tagger(tmp_path_factory) -> SlotTagger:
    return load_or_train_pack_tagger(PACK, tmp_path_factory.mktemp("slot-cache"))


# Utterances written for this test, not in slots.yaml.
HELD_OUT = [
    ("zh", "我想退掉[灰色](color)的[羽绒服](product)"),
    ("zh", "[白色](color)的[跑步鞋](product)有[40码](size)吗"),
    ("zh", "[充电宝](product)[充不进电](reason)了"),
    ("zh", "[智能手表](product)[屏幕碎了](reason)"),
    ("zh", "[T恤](product)有[XL](size)吗"),
    ("zh", "为什么[中通](carrier)还没送到"),
    ("en", "Do you have the [running shoes](product) in [white](color)?"),
    ("en", "I need a [black](color) [down jacket](product)"),
    ("en", "The [kettle](product) is [leaking](reason)"),
    ("en", "Can I get the [T-shirt](product) in [XL](size)?"),
]


def test_pack_tagger_on_new_utterances(pack_tagger):
    rows = [parse_annotated(line, lang) for lang, line in HELD_OUT]
    scores = span_scores([r.tags for r in rows], [pack_tagger.tag(r.tokens) for r in rows])
    assert scores["slot_f1"] >= 0.75, scores


def test_pack_tagger_is_cached(tmp_path, monkeypatch):
    pack = tmp_path / "pack"
    pack.mkdir()
    shutil.copy(PACK / "slots.yaml", pack / "slots.yaml")
    cache = tmp_path / "cache"
    first = load_or_train_pack_tagger(pack, cache)
    models = list(cache.glob("pack-slots-*.crf"))
    assert len(models) == 1

    def no_training(*args, **kwargs):
        raise AssertionError("retrained although slots.yaml did not change")

    with monkeypatch.context() as m:
        m.setattr(SlotTagger, "train", no_training)
        again = load_or_train_pack_tagger(pack, cache)
    assert again.tag(["红", "色", "的", "裙", "子"]) == first.tag(["红", "色", "的", "裙", "子"])

    with open(pack / "slots.yaml", "a", encoding="utf-8") as fh:
        fh.write("    - 我要一个[紫色](color)的[杯子](product)\n")
    load_or_train_pack_tagger(pack, cache)
    newer = list(cache.glob("pack-slots-*.crf"))
    assert len(newer) == 1 and newer != models  # retrained, old model removed


def test_extractor_combines_rules_and_tagger(pack_tagger):
    extractor = EntityExtractor(pack_tagger)
    text = "订单KF2026112100001的黑色羽绒服明天能换成XL码吗"
    entities = extractor.extract(text, reference_time=REF, language="zh")
    by_type = {e.type: e for e in entities}
    assert by_type["order_id"].source == "rule" and by_type["date"].value == "2026-11-22"
    assert by_type["color"].text == "黑色" and by_type["color"].source == "tagger"
    assert by_type["product"].text == "羽绒服"
    assert 0.5 <= by_type["product"].confidence <= 1.0
    for e in entities:
        assert text[e.start : e.end] == e.text
    for a, b in zip(entities, entities[1:], strict=False):
        assert a.end <= b.start  # tagger spans never overlap rule entities
