"""Sentiment and dissatisfaction of a customer message (zh and en).

Polarity: a stack of two linear models, both cheap on a CPU:

* the *text* model: logistic regression on sublinear TF-IDF of character 1-3-grams and word
  1-2-grams (jieba words for text with Chinese characters, regex words otherwise) of the
  normalized, lower-cased message;
* the *embedding* model: logistic regression on the message's multilingual-e5-small query
  embedding (which NLU computes anyway for intent classification, so it costs nothing extra).

Each is trained on ``k`` stratified folds and predicts the fold it did not see; a small
multinomial logistic regression (the *stacker*) learns from those out-of-fold log-probabilities
how much to trust each model, which also calibrates the combined probabilities. The component
models are then refitted on all examples. A second stacker on the text model alone serves
messages that come without an embedding (the embedder is down, or the model was trained with
``embeddings=None``).

Labels are whatever the training data has (``0/1``, ``negative/neutral/positive``, ...). Each
label is mapped to a polarity by name (:data:`POLARITY_NAMES`) or by ``label_polarity``; numeric
labels default to ``0 -> negative, 1 -> positive`` (two labels, as ChnSentiCorp) or ``0 ->
negative, 1 -> neutral, 2 -> positive`` (three, as TweetEval). A label without a polarity is fine
for evaluation; :meth:`SentimentModel.read` then refuses to guess.

Dissatisfaction (0..1: polarity and anger cues such as threats, swearing, "again", ``!!``) is
``services.nlu.dissatisfaction``; the model reports it beside the polarity.

Saved models are a folder of ``meta.json`` (labels, settings, metrics), ``vocabulary.json``
(the n-grams) and ``weights.npz`` (numpy arrays, loaded with ``allow_pickle=False``): no pickle.
The demo store's model is trained from ``services/demo/pack/sentiment.yaml`` by
:func:`services.nlu.sentiment_pack.load_or_train_pack_model` and cached by the file's sha256.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Awaitable, Callable, Sequence

import numpy as np

from services.nlu.dissatisfaction import anger_cues, dissatisfaction_score
from services.nlu.results import SentimentReading
from services.nlu.segmentation import jieba_module

log = logging.getLogger(__name__)

MODEL_FORMAT = "kefu-sentiment-1"
POLARITIES = ("negative", "neutral", "positive")
EMBEDDING_C_GRID = (0.001, 0.003, 0.01, 0.03, 0.1)

# Label names understood without a mapping (lower-cased).
POLARITY_NAMES = {
    "negative": "negative", "neg": "negative", "bad": "negative", "负面": "negative", "消极": "negative", "差评": "negative",
    "neutral": "neutral", "neu": "neutral", "none": "neutral", "中性": "neutral", "中立": "neutral",
    "positive": "positive", "pos": "positive", "good": "positive", "正面": "positive", "积极": "positive", "好评": "positive",
}

# texts -> L2-normalised e5 query embeddings [n, 384] (e.g. ``Embedder.embed_queries``)
EmbedQueries = Callable[[list[str]], Awaitable[np.ndarray]]


def default_label_polarity(labels: Sequence[str]) -> dict[str, str]:
    """Polarity of each label that has one: by name, else the numeric conventions (0/1, 0/1/2)."""
    out = {label: POLARITY_NAMES[label.lower()] for label in labels if label.lower() in POLARITY_NAMES}
    if not out and all(label.lstrip("-").isdigit() for label in labels):
        ordered = sorted(labels, key=int)
        if len(ordered) == 2:
            out = dict(zip(ordered, ("negative", "positive"), strict=True))
        elif len(ordered) == 3:
            out = dict(zip(ordered, POLARITIES, strict=True))
    return out


# ------------------------------------------------------------------ text features

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*|[!?！？]")
_BIGRAM_JOIN = "\x1f"


def _jieba_cut(text: str) -> list[str]:
    return [w for w in jieba_module().lcut(text, HMM=True) if w.strip()]


def words(text: str) -> list[str]:
    """Words of a prepared (normalized, lower-cased) text: jieba for Chinese, else letters/digits runs and ``!?``."""
    return _jieba_cut(text) if _CJK.search(text) else _WORD.findall(text)


def prepare(text: str) -> str:
    """What the text model reads: the message normalized (``services.nlu.text.normalize``) and lower-cased."""
    from services.nlu.text import normalize

    return normalize(text).lower()


class TextFeatures:
    """Sublinear TF-IDF (``1 + log tf`` times smoothed idf, rows L2-normalised per block) of
    character n-grams and word n-grams; the two blocks side by side."""

    def __init__(self, char_ngrams: tuple[int, int] = (1, 3), word_ngrams: tuple[int, int] = (1, 2), min_df: int = 1) -> None:
        self.char_ngrams = tuple(char_ngrams)
        self.word_ngrams = tuple(word_ngrams)
        self.min_df = min_df
        self.vocab: list[dict[str, int]] = [{}, {}]  # chars, words
        self.idf: list[np.ndarray] = [np.zeros(0), np.zeros(0)]

    def _grams(self, text: str) -> tuple[list[str], list[str]]:
        lo, hi = self.char_ngrams
        chars = [text[i:i + n] for n in range(lo, hi + 1) for i in range(len(text) - n + 1)]
        ws = words(text)
        lo, hi = self.word_ngrams
        wgrams = [_BIGRAM_JOIN.join(ws[i:i + n]) for n in range(lo, hi + 1) for i in range(len(ws) - n + 1)]
        return chars, wgrams

    @property
    def size(self) -> int:
        return len(self.vocab[0]) + len(self.vocab[1])

    def fit(self, texts: Sequence[str]) -> "TextFeatures":
        """Learn the vocabulary (n-grams in at least ``min_df`` texts, sorted) and idf from prepared texts."""
        self.fit_transform(texts)
        return self

    def fit_transform(self, texts: Sequence[str]):
        """:meth:`fit`, then :meth:`transform` of the same texts (each text is cut into n-grams once)."""
        grams = [self._grams(text) for text in texts]
        df: list[Counter] = [Counter(), Counter()]
        for pair in grams:
            for block in (0, 1):
                df[block].update(set(pair[block]))
        n = len(texts)
        for block in (0, 1):
            kept = sorted(g for g, c in df[block].items() if c >= self.min_df)
            self.vocab[block] = {g: i for i, g in enumerate(kept)}
            counts = np.array([df[block][g] for g in kept], dtype=np.float64)
            self.idf[block] = np.log((1.0 + n) / (1.0 + counts)) + 1.0
        return self._matrix(grams)

    def transform(self, texts: Sequence[str]):
        """CSR matrix [len(texts), size] of prepared texts."""
        return self._matrix([self._grams(text) for text in texts])

    def _matrix(self, grams: list[tuple[list[str], list[str]]]):
        from scipy.sparse import csr_matrix

        offsets = (0, len(self.vocab[0]))
        indptr, indices, values, total = [0], [], [], 0
        for pair in grams:
            for block in (0, 1):
                vocab, idf = self.vocab[block], self.idf[block]
                counts = Counter(vocab[g] for g in pair[block] if g in vocab)
                if not counts:
                    continue
                cols = np.fromiter(counts.keys(), dtype=np.int64, count=len(counts))
                tf = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
                w = (1.0 + np.log(tf)) * idf[cols]
                w /= np.linalg.norm(w)
                indices.append(cols + offsets[block])
                values.append(w)
                total += len(cols)
            indptr.append(total)
        data = np.concatenate(values) if values else np.zeros(0)
        cols = np.concatenate(indices) if indices else np.zeros(0, dtype=np.int64)
        return csr_matrix((data, cols, np.array(indptr)), shape=(len(grams), self.size))


# ------------------------------------------------------------------ linear models


_ABSENT = -30.0  # bias of a class a model never saw


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


@dataclass
class _Linear:
    """``logits = ((x - mean) / scale) @ weights.T + bias``, one row of weights per class."""

    weights: np.ndarray
    bias: np.ndarray
    mean: np.ndarray | None = None
    scale: float = 1.0

    def __post_init__(self) -> None:
        # [features, classes] in C order: a sparse row times it does not copy the weights each call.
        self._columns = np.ascontiguousarray(self.weights.T)

    def logits(self, x) -> np.ndarray:
        if self.mean is not None:
            x = (np.asarray(x, dtype=np.float64) - self.mean) / self.scale
        return np.asarray(x @ self._columns) + self.bias

    def log_proba(self, x) -> np.ndarray:
        return _log_softmax(self.logits(x))


def _fit_logistic(x, y: np.ndarray, classes: int, c: float, *, standardize: bool = False) -> _Linear:
    """Multinomial logistic regression (sklearn, lbfgs: deterministic), as plain arrays with one
    row per class; a class absent from ``y`` (a small fold) gets a very low bias."""
    from sklearn.linear_model import LogisticRegression

    mean, scale = None, 1.0
    if standardize:
        x = np.asarray(x, dtype=np.float64)
        mean = x.mean(axis=0)
        scale = float(x.std(axis=0).mean()) or 1.0
        x = (x - mean) / scale
    present = np.unique(y)
    weights, bias = np.zeros((classes, x.shape[1])), np.full(classes, _ABSENT)
    if len(present) == 1:
        bias[present] = 0.0
        return _Linear(weights, bias, mean, scale)
    model = LogisticRegression(C=c, max_iter=3000, tol=1e-5)
    model.fit(x, y)
    w, b = np.asarray(model.coef_, dtype=np.float64), np.asarray(model.intercept_, dtype=np.float64)
    if len(present) == 2:  # sklearn keeps one row for two classes: logit z for the second -> (-z/2, z/2)
        w, b = np.vstack([-w / 2, w / 2]), np.array([-b[0] / 2, b[0] / 2])
    weights[present], bias[present] = w, b
    return _Linear(weights, bias, mean, scale)


def _stratified_folds(y: np.ndarray, folds: int, seed: int, groups: Sequence[str] | None = None) -> np.ndarray:
    """Fold number of each example; every class spread evenly over the folds. Examples with the
    same ``groups`` value (the same text) share a fold, so a duplicate never predicts its twin."""
    rng = np.random.default_rng(seed)
    if groups is not None:
        first: dict[str, int] = {}
        rep = np.array([first.setdefault(g, i) for i, g in enumerate(groups)])
        heads = np.flatnonzero(rep == np.arange(len(y)))
        return _stratified_folds(y[heads], folds, seed)[np.searchsorted(heads, rep)]
    fold_of = np.zeros(len(y), dtype=np.int64)
    for label in np.unique(y):
        members = np.flatnonzero(y == label)
        rng.shuffle(members)
        fold_of[members] = (np.arange(len(members)) + int(rng.integers(folds))) % folds
    return fold_of


def expected_calibration_error(probs: np.ndarray, y: np.ndarray, bins: int = 10) -> float:
    """ECE of the top prediction over ``bins`` equal-width confidence bins."""
    confidence, correct = probs.max(axis=1), probs.argmax(axis=1) == y
    total = 0.0
    for lo, hi in zip(np.linspace(0, 1, bins + 1)[:-1], np.linspace(0, 1, bins + 1)[1:], strict=True):
        inside = (confidence > lo) & (confidence <= hi)
        if inside.any():
            total += inside.mean() * abs(correct[inside].mean() - confidence[inside].mean())
    return float(total)


# ------------------------------------------------------------------ the model


@dataclass
class SentimentModel:
    """Polarity classifier (text model + embedding model, stacked) with a dissatisfaction score."""

    labels: list[str]
    label_polarity: dict[str, str]
    features: TextFeatures
    text_model: _Linear
    text_stacker: _Linear
    embedding_model: _Linear | None = None
    stacker: _Linear | None = None
    meta: dict = field(default_factory=dict)

    # ---------------------------------------------------------------- training

    @classmethod
    def train(
        cls, texts: Sequence[str], labels: Sequence[str], embeddings: np.ndarray | None = None, *,
        label_polarity: dict[str, str] | None = None, text_c: float = 10.0, embedding_c: float | str = "auto", stack_c: float = 1.0,
        folds: int = 5, min_df: int | None = None, char_ngrams: tuple[int, int] = (1, 3), word_ngrams: tuple[int, int] = (1, 2),
        seed: int = 0,
    ) -> "SentimentModel":
        """Fit on ``texts`` with string ``labels`` (and their e5 query embeddings, if given).

        ``label_polarity`` maps labels to negative/neutral/positive (default
        :func:`default_label_polarity`). Every label needs at least two examples (the
        stacker learns from out-of-fold predictions over ``min(folds, rarest label count)``
        folds; copies of one text share a fold). ``min_df`` defaults to 2 from 1,000 examples up,
        else 1. ``embedding_c`` (inverse L2 strength on standardized embeddings) "auto" picks from
        :data:`EMBEDDING_C_GRID` the value with the lowest out-of-fold log-loss (cheap: 384 features).
        """
        t0 = time.perf_counter()
        texts = [str(t) for t in texts]
        labels = [str(label) for label in labels]
        if len(texts) != len(labels):
            raise ValueError(f"{len(texts)} texts but {len(labels)} labels")
        names = sorted(set(labels))
        if len(names) < 2:
            raise ValueError("the sentiment classifier needs at least two labels")
        counts = Counter(labels)
        rare = [name for name in names if counts[name] < 2]
        if rare:
            raise ValueError(f"every label needs at least two examples; too few for: {', '.join(rare)}")
        polarity = dict(default_label_polarity(names) if label_polarity is None else label_polarity)
        bad = {k: v for k, v in polarity.items() if v not in POLARITIES}
        if bad:
            raise ValueError(f"label_polarity values must be one of {', '.join(POLARITIES)}: {bad}")
        x_emb = None
        if embeddings is not None:
            x_emb = np.asarray(embeddings, dtype=np.float64)
            if x_emb.ndim != 2 or len(x_emb) != len(texts):
                raise ValueError(f"embeddings must be [{len(texts)}, dim], not {list(x_emb.shape)}")
        index = {name: i for i, name in enumerate(names)}
        y = np.array([index[label] for label in labels], dtype=np.int64)
        k = len(names)
        folds = max(2, min(folds, min(counts.values())))

        prepared = [prepare(t) for t in texts]
        features = TextFeatures(char_ngrams, word_ngrams, min_df if min_df is not None else (2 if len(texts) >= 1000 else 1))
        x_text = features.fit_transform(prepared)  # vocabulary and idf see every text; labels never leak

        fold_of = _stratified_folds(y, folds, seed, groups=prepared)
        oof_text = np.zeros((len(y), k))
        oof_emb: np.ndarray | None = None
        for f in range(folds):
            fit, held = fold_of != f, fold_of == f
            oof_text[held] = _fit_logistic(x_text[fit], y[fit], k, text_c).log_proba(x_text[held])
        if x_emb is not None:
            grid = EMBEDDING_C_GRID if embedding_c == "auto" else (float(embedding_c),)
            best = None
            for c in grid:
                oof = np.zeros((len(y), k))
                for f in range(folds):
                    fit, held = fold_of != f, fold_of == f
                    oof[held] = _fit_logistic(x_emb[fit], y[fit], k, c, standardize=True).log_proba(x_emb[held])
                loss = float(-oof[np.arange(len(y)), y].mean())
                if best is None or loss < best[0] - 1e-9:
                    best = (loss, c, oof)
            _, embedding_c, oof_emb = best
        text_stacker = _fit_logistic(oof_text, y, k, stack_c)
        stacker = _fit_logistic(np.hstack([oof_text, oof_emb]), y, k, stack_c) if oof_emb is not None else None

        model = cls(
            labels=names, label_polarity={name: polarity[name] for name in names if name in polarity}, features=features,
            text_model=_fit_logistic(x_text, y, k, text_c), text_stacker=text_stacker,
            embedding_model=_fit_logistic(x_emb, y, k, embedding_c, standardize=True) if x_emb is not None else None,
            stacker=stacker,
        )
        metrics = {}
        for name, oof, stack in (("text", oof_text, text_stacker), ("embedding", oof_emb, None),
                                 ("stacked", np.hstack([oof_text, oof_emb]) if oof_emb is not None else None, stacker)):
            if oof is None:
                continue
            probs = np.exp(stack.log_proba(oof) if stack is not None else oof)
            metrics[f"oof_accuracy_{name}"] = float((probs.argmax(axis=1) == y).mean())
            metrics[f"oof_ece_{name}"] = expected_calibration_error(probs, y)
        metrics["oof_ece_text_uncalibrated"] = expected_calibration_error(np.exp(oof_text), y)
        model.meta = {
            "format": MODEL_FORMAT, "examples": len(texts), "label_counts": {n: counts[n] for n in names},
            "embeddings": x_emb is not None, "embedding_dim": int(x_emb.shape[1]) if x_emb is not None else None,
            "features": features.size, "folds": folds, "seed": seed,
            "settings": {"text_c": text_c, "embedding_c": embedding_c, "stack_c": stack_c, "min_df": features.min_df,
                         "char_ngrams": list(char_ngrams), "word_ngrams": list(word_ngrams)},
            "metrics": metrics, "fit_seconds": round(time.perf_counter() - t0, 3),
        }
        return model

    # ---------------------------------------------------------------- prediction

    @property
    def uses_embeddings(self) -> bool:
        return self.embedding_model is not None

    def predict_proba(self, texts: Sequence[str], embeddings: np.ndarray | None = None) -> np.ndarray:
        """[n, len(labels)] probabilities (columns in ``labels`` order). Without embeddings (or
        for a model trained without them) only the text model speaks."""
        x_text = self.features.transform([prepare(t) for t in texts])
        text_lp = self.text_model.log_proba(x_text)
        if embeddings is None or self.embedding_model is None or self.stacker is None:
            return np.exp(self.text_stacker.log_proba(text_lp))
        x_emb = np.asarray(embeddings, dtype=np.float64).reshape(len(texts), -1)
        emb_lp = self.embedding_model.log_proba(x_emb)
        return np.exp(self.stacker.log_proba(np.hstack([text_lp, emb_lp])))

    def predict(self, texts: Sequence[str], embeddings: np.ndarray | None = None) -> list[str]:
        """The most probable label of each text."""
        return [self.labels[i] for i in self.predict_proba(texts, embeddings).argmax(axis=1)]

    def polarity_proba(self, probs: np.ndarray) -> dict[str, float]:
        """Label probabilities (one row) summed per polarity."""
        out = dict.fromkeys(POLARITIES, 0.0)
        for label, p in zip(self.labels, probs, strict=True):
            if label not in self.label_polarity:
                raise ValueError(f"label {label!r} has no polarity: train with label_polarity={{...}}")
            out[self.label_polarity[label]] += float(p)
        return out

    def read(self, text: str, embedding: np.ndarray | None = None) -> SentimentReading:
        """Polarity (with its probability as confidence) and dissatisfaction of one message."""
        probs = self.predict_proba([text], None if embedding is None else np.asarray(embedding).reshape(1, -1))[0]
        by_polarity = self.polarity_proba(probs)
        polarity = max(POLARITIES, key=lambda p: (by_polarity[p], p == "neutral"))
        return SentimentReading(polarity, round(by_polarity[polarity], 4),
                                round(dissatisfaction_score(by_polarity["negative"], anger_cues(text)), 4))

    # ---------------------------------------------------------------- files

    def save(self, folder: str | Path) -> None:
        """Write ``meta.json``, ``vocabulary.json`` and ``weights.npz`` into ``folder`` (created)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        arrays = {"char_idf": self.features.idf[0], "word_idf": self.features.idf[1]}
        parts = {"text_model": self.text_model, "text_stacker": self.text_stacker,
                 "embedding_model": self.embedding_model, "stacker": self.stacker}
        for name, part in parts.items():
            if part is None:
                continue
            arrays[f"{name}.weights"], arrays[f"{name}.bias"] = part.weights, part.bias
            if part.mean is not None:
                arrays[f"{name}.mean"], arrays[f"{name}.scale"] = part.mean, np.array([part.scale])
        np.savez_compressed(folder / "weights.npz", **arrays)
        vocabulary = {"chars": sorted(self.features.vocab[0], key=self.features.vocab[0].get),
                      "words": sorted(self.features.vocab[1], key=self.features.vocab[1].get)}
        (folder / "vocabulary.json").write_text(json.dumps(vocabulary, ensure_ascii=False), encoding="utf-8")
        meta = dict(self.meta, format=MODEL_FORMAT, labels=self.labels, label_polarity=self.label_polarity)
        (folder / "meta.json").write_text(json.dumps(meta, ensure_ascii=False, indent=1, sort_keys=True) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, folder: str | Path) -> "SentimentModel":
        """Read a model written by :meth:`save` (``ValueError`` if it is not one)."""
        folder = Path(folder)
        try:
            meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
            vocabulary = json.loads((folder / "vocabulary.json").read_text(encoding="utf-8"))
            with np.load(folder / "weights.npz", allow_pickle=False) as z:
                arrays = {name: z[name] for name in z.files}
        except (OSError, ValueError) as exc:
            raise ValueError(f"{folder}: not a saved sentiment model ({exc})") from exc
        if meta.get("format") != MODEL_FORMAT:
            raise ValueError(f"{folder}: model format {meta.get('format')!r}, expected {MODEL_FORMAT!r}")
        settings = meta["settings"]
        features = TextFeatures(tuple(settings["char_ngrams"]), tuple(settings["word_ngrams"]), settings["min_df"])
        features.vocab = [{g: i for i, g in enumerate(vocabulary["chars"])}, {g: i for i, g in enumerate(vocabulary["words"])}]
        features.idf = [arrays["char_idf"], arrays["word_idf"]]

        def part(name: str) -> _Linear | None:
            if f"{name}.weights" not in arrays:
                return None
            mean = arrays.get(f"{name}.mean")
            scale = float(arrays[f"{name}.scale"][0]) if f"{name}.scale" in arrays else 1.0
            return _Linear(arrays[f"{name}.weights"], arrays[f"{name}.bias"], mean, scale)

        labels = list(meta.pop("labels"))
        polarity = dict(meta.pop("label_polarity"))
        return cls(labels=labels, label_polarity=polarity, features=features, text_model=part("text_model"),
                   text_stacker=part("text_stacker"), embedding_model=part("embedding_model"), stacker=part("stacker"), meta=meta)
