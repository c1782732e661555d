"""``kefu eval intents`` on tiny hand-written fixtures (tests/fixtures/nlu/intents_*).

The real e5 engine is swapped for a deterministic hashed character-trigram embedder,
so these tests run in seconds and need no model files; the classifier, its
calibration, the out-of-scope detector and the scoring are the real ones.
"""

from __future__ import annotations

import argparse
import json
import zlib
from pathlib import Path

import numpy as np
import pytest

from services.nlu import intent_eval
from services.nlu.datasets import read_labelled
from services.nlu.intent_eval import score

FIXTURES = Path(__file__).parent / "fixtures" / "nlu"
TRAIN, TEST, BAD = FIXTURES / "intents_train.csv", FIXTURES / "intents_test.jsonl", FIXTURES / "intents_bad.jsonl"


class TrigramEmbedder:
    """Hashed character trigrams -> 384 dims, L2-normalised (deterministic across runs)."""

    async def embed_queries(self, texts):
        out = np.zeros((len(texts), 384), dtype=np.float32)
        for i, text in enumerate(texts):
            padded = f"  {text.lower()} "
            for j in range(len(padded) - 2):
                out[i, zlib.crc32(padded[j:j + 3].encode("utf-8")) % 384] += 1.0
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)

    async def close(self):
        pass


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    intent_eval.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_score_counts_by_hand():
    gold = ["a", "a", "b", "oos", "oos", "b"]
    pred = ["a", "b", "b", "oos", "a", "oos"]
    r = score(gold, pred)
    assert r["accuracy"] == pytest.approx(3 / 6)
    assert r["in_scope_accuracy"] == pytest.approx(2 / 4)
    assert r["oos_recall"] == pytest.approx(1 / 2)
    assert r["oos_flagged"] == pytest.approx(1 / 4)
    # F1 per gold label: a: P 1/2 R 1/2 -> 1/2; b: P 1/2 R 1/2 -> 1/2; oos: P 1/2 R 1/2 -> 1/2.
    assert r["macro_f1"] == pytest.approx(0.5)
    closed = score(["x", "y"], ["x", "x"])
    assert closed["oos_recall"] is None and closed["accuracy"] == 0.5


def test_eval_cli_on_fixtures_gives_known_numbers(monkeypatch, capsys):
    import services.embedding

    monkeypatch.setattr(services.embedding, "LocalEmbedder", lambda *a, **k: TrigramEmbedder())
    assert intent_eval.run(_args("--train", str(TRAIN), "--test", str(TEST), "--json", "--reject-rate", "0.2")) == 0
    out, err = capsys.readouterr()
    report = json.loads(out)
    assert "[eval intents] training on 27 examples, 4 labels (oos included)" in err
    assert report["mode"] == "fast" and report["n"] == 8 and report["train_n"] == 27 and report["intents"] == 3
    assert report["oos_verdict"] is True
    # The six plain paraphrases are right and the football question is out of scope; the
    # seventh row's gold label (refund) is deliberately wrong for "hi, where is my order".
    assert report["accuracy"] == pytest.approx(7 / 8)
    assert report["in_scope_accuracy"] == pytest.approx(6 / 7)
    assert report["oos_recall"] == 1.0 and report["oos_flagged"] == 0.0
    # F1 over the gold labels: order_status P 2/3 R 1 -> 0.8 (row 7 lands there or on greeting:
    # then greeting P 2/3 and order_status 1); refund P 1 R 2/3 -> 0.8; the other two 1.
    assert report["macro_f1"] == pytest.approx((0.8 + 0.8 + 1.0 + 1.0) / 4)
    assert report["p50_ms"] > 0 and report["p95_ms"] >= report["p50_ms"] and report["train_s"] > 0

    # At the default operating point (2% of in-scope training messages may be flagged) 24
    # in-scope examples leave the threshold above the football question: not flagged.
    assert intent_eval.run(_args("--train", str(TRAIN), "--test", str(TEST), "--json")) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["accuracy"] == pytest.approx(6 / 8) and report["oos_recall"] == 0.0

    # Table output names every metric.
    assert intent_eval.run(_args("--train", str(TRAIN), "--test", str(TEST))) == 0
    table = capsys.readouterr().out
    for key in ("accuracy", "macro_f1", "oos_recall", "in_scope_accuracy", "p50_ms", "train_s", "| n |"):
        assert key in table


def test_eval_is_deterministic_and_closed_set_without_oos(tmp_path: Path):
    import asyncio

    train = [r for r in read_labelled(TRAIN) if r.label != "oos"]
    test = [r for r in read_labelled(TEST) if r.label != "oos"]
    runs = [asyncio.run(intent_eval.evaluate(train, test, embedder=TrigramEmbedder(), progress=lambda _: None)) for _ in range(2)]
    for key in ("accuracy", "macro_f1", "in_scope_accuracy", "oos_flagged"):
        assert runs[0][key] == runs[1][key]
    assert runs[0]["oos_verdict"] is False and runs[0]["oos_recall"] is None and runs[0]["oos_flagged"] == 0.0
    assert runs[0]["accuracy"] == pytest.approx(6 / 7)  # all but the mislabelled row


def test_bad_files_exit_2_with_the_dataset_message(capsys, tmp_path: Path):
    assert intent_eval.run(_args("--train", str(BAD), "--test", str(TEST))) == 2
    err = capsys.readouterr().err
    assert "intents_bad.jsonl:2: text is missing or empty" in err and "Traceback" not in err
    assert intent_eval.run(_args("--train", str(tmp_path / "missing.csv"), "--test", str(TEST))) == 2
    assert "no such file" in capsys.readouterr().err
    one = tmp_path / "one.csv"
    one.write_text("text,label\nhello,greeting\nhi,greeting\n", encoding="utf-8")
    assert intent_eval.run(_args("--train", str(one), "--test", str(TEST))) == 2
    assert "at least two intents" in capsys.readouterr().err
