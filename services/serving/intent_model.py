"""The intent classifier: its trained artifact and its Triton Python-backend model.

The classifier reads two views of a customer message: its multilingual-e5 "query: "
embedding (meaning) and its words and character n-grams as TF-IDF (the exact terms
that tell close intents apart, e.g. "card arrival" vs "card delivery estimate"). A
linear SVM over both, temperature-scaled into calibrated probabilities, picks the
intent; an out-of-scope detector adds a novelty score (low top probability plus the
Mahalanobis distance of the embedding to the nearest intent) and its decision.

A version of ``model_repository/intent_classifier`` is a folder ``<n>/`` written by
:func:`services.nlu.training.publish_intent_version`. It holds

* ``model.py`` — a three-line shim importing :class:`TritonPythonModel` from here, so
  the code lives once in the kefu package and not in every version;
* ``weights.npz`` — the vocabulary and IDF, the linear weights, the temperature, the
  detector's whitening, class means and threshold, and the training examples'
  embeddings (plain arrays, no pickles);
* ``labels.json`` — the intent name of each probability, in order;
* ``meta.json`` — training-data hash, date, hyper-parameters and held-out metrics.

Inputs per row: ``embedding`` (e5 query embedding) and ``text`` (the message, UTF-8).
Outputs per row: ``probabilities`` (calibrated, one per intent, sums to 1),
``labels`` (the intent names, repeated per row so that a reply carries the names of
the very version that computed it, even while a new version is being swapped in),
``similarity`` (cosine to the closest training example), ``novelty`` (the
out-of-scope score; higher is further from every intent) and ``out_of_scope``
(``novelty`` above the version's threshold, or the top label is ``oos``).
"""

from __future__ import annotations

import json
import math
import re
import traceback
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import scipy.sparse as sp

try:  # only inside Triton's Python backend stub
    import triton_python_backend_utils as pb_utils
except ImportError:  # the artifact code is used by the trainer and the tests too
    pb_utils = None

EMBEDDING_DIM = 384
ARTIFACT_FORMAT = 2
OUT_OF_SCOPE_LABEL = "oos"
WEIGHTS_FILE = "weights.npz"
LABELS_FILE = "labels.json"
META_FILE = "meta.json"
MODEL_SHIM = (
    "# Version shim: the code is services/serving/intent_model.py; this folder holds the trained artifact.\n"
    "from services.serving.intent_model import TritonPythonModel  # noqa: F401\n"
    "__all__ = [\"TritonPythonModel\"]\n"
)

_CJK = "\u3400-\u9fff\uf900-\ufaff"
# A CJK character is a token on its own (bigrams of them act as words); other scripts split on non-word characters.
_TOKEN = re.compile(rf"[{_CJK}]|[^\W{_CJK}_]+")
CHAR_NGRAMS = (2, 4)


@dataclass(frozen=True)
class IntentClassification:
    """What the intent classifier said about ``n`` messages."""

    labels: list[str]  # intent name of each probability column (may include ``oos``)
    probabilities: np.ndarray  # [n, len(labels)], calibrated, rows sum to 1
    similarity: np.ndarray  # [n], cosine to the closest training example
    novelty: np.ndarray  # [n], out-of-scope score (higher: further from every intent)
    out_of_scope: np.ndarray  # [n] bool: novelty above the version's threshold, or the top label is oos
    version: str = ""  # the model version that answered ("" in process)


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def text_terms(text: str) -> list[str]:
    """The lexical features of a message: words (``w:``), word bigrams (``b:``) and
    character 2-4-grams over the space-joined words (``c:``), after NFKC and lowercasing."""
    tokens = _TOKEN.findall(unicodedata.normalize("NFKC", text).lower())
    terms = ["w:" + t for t in tokens]
    terms += ["b:" + a + " " + b for a, b in zip(tokens, tokens[1:], strict=False)]
    joined = " " + " ".join(tokens) + " "
    for n in range(CHAR_NGRAMS[0], CHAR_NGRAMS[1] + 1):
        terms += ["c:" + joined[i:i + n] for i in range(len(joined) - n + 1)]
    return terms


def _concat(parts: list[np.ndarray], dtype) -> np.ndarray:
    return np.concatenate(parts).astype(dtype, copy=False) if parts else np.zeros(0, dtype)


class TermVectorizer:
    """Sublinear TF-IDF over :func:`text_terms`, rows L2-normalised (like scikit-learn's
    ``TfidfVectorizer(sublinear_tf=True)``), with a vocabulary that is plain data."""

    def __init__(self, vocabulary: Sequence[str], idf: np.ndarray) -> None:
        self.vocabulary = list(vocabulary)
        self.idf = np.asarray(idf, dtype=np.float32)
        self._index = {term: i for i, term in enumerate(self.vocabulary)}

    @classmethod
    def fit(cls, texts: Sequence[str], *, min_df: int = 1) -> "TermVectorizer":
        df: Counter[str] = Counter()
        for text in texts:
            df.update(set(text_terms(text)))
        vocabulary = sorted(term for term, count in df.items() if count >= min_df)
        n = len(texts)
        idf = np.array([math.log((1 + n) / (1 + df[t])) + 1.0 for t in vocabulary], dtype=np.float32)
        return cls(vocabulary, idf)

    def transform(self, texts: Sequence[str]) -> sp.csr_matrix:
        indptr, indices, values = [0], [], []
        for text in texts:
            counts = Counter(i for i in map(self._index.get, text_terms(text)) if i is not None)
            if counts:
                ids = np.fromiter(counts.keys(), dtype=np.int64, count=len(counts))
                v = (1.0 + np.log(np.fromiter(counts.values(), dtype=np.float32, count=len(counts)))) * self.idf[ids]
                indices.append(ids)
                values.append(v / np.linalg.norm(v))
            indptr.append(indptr[-1] + len(counts))
        return sp.csr_matrix((_concat(values, np.float32), _concat(indices, np.int64), np.array(indptr)),
                             shape=(len(texts), len(self.vocabulary)))


@dataclass
class OutOfScopeDetector:
    """Novelty = z(1 - top in-scope probability) + z(Mahalanobis distance of the embedding
    to the nearest in-scope intent mean, shared shrunk covariance); the z-scores use the
    out-of-fold in-scope training messages, and ``threshold`` is the novelty that a set
    share of them exceed (``reject_rate``)."""

    whiten: np.ndarray  # [384, 384]: x @ whiten has identity covariance within intents
    means: np.ndarray  # [k_in, 384] whitened in-scope intent means
    prob_mu: float
    prob_sd: float
    dist_mu: float
    dist_sd: float
    threshold: float

    def distance(self, embeddings: np.ndarray) -> np.ndarray:
        z = np.asarray(embeddings, dtype=np.float32) @ self.whiten
        d = (z * z).sum(axis=1)[:, None] - 2.0 * z @ self.means.T + (self.means * self.means).sum(axis=1)[None, :]
        return d.min(axis=1)

    def novelty(self, top_in_scope: np.ndarray, distance: np.ndarray) -> np.ndarray:
        return ((1.0 - top_in_scope - self.prob_mu) / self.prob_sd + (distance - self.dist_mu) / self.dist_sd).astype(np.float32)


@dataclass
class IntentArtifact:
    """A trained intent classifier: ``softmax(([tfidf(text), e5_weight * (x - mean) / scale] @ W + b) / temperature)``
    plus its out-of-scope detector."""

    labels: list[str]
    vectorizer: TermVectorizer
    mean: np.ndarray  # [384] centre of the training embeddings
    scale: float  # their mean distance to it
    e5_weight: float  # the embedding block's weight against the TF-IDF block (both unit norm)
    weights: np.ndarray  # [len(vocabulary) + 384, K]
    bias: np.ndarray  # [K]
    temperature: float
    detector: OutOfScopeDetector
    examples: np.ndarray  # [n, 384] L2-normalised training embeddings
    meta: dict = field(default_factory=dict)

    def features(self, embeddings: np.ndarray, texts: Sequence[str]) -> sp.csr_matrix:
        x = np.asarray(embeddings, dtype=np.float32).reshape(-1, EMBEDDING_DIM)
        if len(texts) != len(x):
            raise ValueError(f"{len(texts)} texts for {len(x)} embeddings")
        dense = (x - self.mean) * (self.e5_weight / self.scale)
        return sp.hstack([self.vectorizer.transform(texts), sp.csr_matrix(dense)], format="csr")

    def logits(self, embeddings: np.ndarray, texts: Sequence[str]) -> np.ndarray:
        return np.asarray(self.features(embeddings, texts) @ self.weights) + self.bias

    @property
    def oos_index(self) -> int:
        return self.labels.index(OUT_OF_SCOPE_LABEL) if OUT_OF_SCOPE_LABEL in self.labels else -1

    def predict(self, embeddings: np.ndarray, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(probabilities ``[n, K]``, nearest-example cosine ``[n]``, novelty ``[n]``, out of scope ``[n]`` bool)."""
        x = np.asarray(embeddings, dtype=np.float32).reshape(-1, EMBEDDING_DIM)
        probs = softmax(self.logits(x, texts) / self.temperature).astype(np.float32)
        similarity = (x @ self.examples.T).max(axis=1).astype(np.float32) if len(self.examples) else np.zeros(len(x), np.float32)
        in_scope = probs.copy()
        if self.oos_index >= 0:
            in_scope[:, self.oos_index] = 0.0
        novelty = self.detector.novelty(in_scope.max(axis=1), self.detector.distance(x))
        out = novelty > self.detector.threshold
        if self.oos_index >= 0:
            out |= probs.argmax(axis=1) == self.oos_index
        return probs, similarity, novelty, out

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        d = self.detector
        np.savez(
            folder / WEIGHTS_FILE,
            vocabulary=np.array(self.vectorizer.vocabulary, dtype=np.str_), idf=self.vectorizer.idf,
            mean=self.mean.astype(np.float32), scale=np.float32(self.scale), e5_weight=np.float32(self.e5_weight),
            weights=self.weights.astype(np.float32), bias=self.bias.astype(np.float32), temperature=np.float32(self.temperature),
            examples=self.examples.astype(np.float32), oos_whiten=d.whiten.astype(np.float32), oos_means=d.means.astype(np.float32),
            oos_stats=np.array([d.prob_mu, d.prob_sd, d.dist_mu, d.dist_sd, d.threshold], dtype=np.float64),
        )
        (folder / LABELS_FILE).write_text(json.dumps(self.labels, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        (folder / META_FILE).write_text(json.dumps(self.meta, ensure_ascii=False, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        (folder / "model.py").write_text(MODEL_SHIM, encoding="utf-8")

    @classmethod
    def load(cls, folder: Path) -> "IntentArtifact":
        folder = Path(folder)
        labels = json.loads((folder / LABELS_FILE).read_text(encoding="utf-8"))
        meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
        if meta.get("format") != ARTIFACT_FORMAT:
            raise ValueError(f"{folder}: artifact format {meta.get('format')!r}, expected {ARTIFACT_FORMAT}")
        with np.load(folder / WEIGHTS_FILE, allow_pickle=False) as w:
            stats = [float(v) for v in w["oos_stats"]]
            artifact = cls(
                labels=list(labels), vectorizer=TermVectorizer(w["vocabulary"].tolist(), w["idf"]), mean=w["mean"],
                scale=float(w["scale"]), e5_weight=float(w["e5_weight"]), weights=w["weights"], bias=w["bias"],
                temperature=float(w["temperature"]), examples=w["examples"],
                detector=OutOfScopeDetector(w["oos_whiten"], w["oos_means"], *stats), meta=meta,
            )
        rows = len(artifact.vectorizer.vocabulary) + EMBEDDING_DIM
        if artifact.weights.shape != (rows, len(labels)) or artifact.bias.shape != (len(labels),):
            raise ValueError(f"{folder}: weights {artifact.weights.shape} do not match {rows} features x {len(labels)} labels")
        if not artifact.temperature > 0:
            raise ValueError(f"{folder}: temperature must be > 0, got {artifact.temperature}")
        return artifact


class TritonPythonModel:
    """``intent_classifier`` on Triton's Python backend; requests batched by Triton are
    classified in one matrix product."""

    def initialize(self, args):
        folder = Path(args["model_repository"]) / args["model_version"]
        self.artifact = IntentArtifact.load(folder)
        self.labels = np.array([name.encode("utf-8") for name in self.artifact.labels], dtype=np.object_)
        pb_utils.Logger.log_info(
            f"intent_classifier: version {args['model_version']} with {len(self.artifact.labels)} intents, "
            f"{len(self.artifact.vectorizer.vocabulary)} terms, temperature {self.artifact.temperature:.3f}, "
            f"trained {self.artifact.meta.get('trained_at', '?')}"
        )

    def execute(self, requests):
        rows: list[tuple[np.ndarray, list[str]] | None] = []
        responses: list = [None] * len(requests)
        for i, request in enumerate(requests):
            try:
                x = np.asarray(pb_utils.get_input_tensor_by_name(request, "embedding").as_numpy(), dtype=np.float32)
                x = x.reshape(-1, EMBEDDING_DIM)
                raw = pb_utils.get_input_tensor_by_name(request, "text").as_numpy().reshape(-1)
                texts = [t.decode("utf-8") if isinstance(t, bytes) else str(t) for t in raw]
                if len(texts) != len(x):
                    raise ValueError(f"{len(texts)} texts for {len(x)} embeddings")
                rows.append((x, texts))
            except Exception as exc:
                rows.append(None)
                responses[i] = pb_utils.InferenceResponse(error=pb_utils.TritonError(f"bad input: {exc}"))
        try:
            good = [r for r in rows if r is not None]
            if good:
                probs, sims, novelty, out = self.artifact.predict(
                    np.concatenate([x for x, _ in good], axis=0), [t for _, texts in good for t in texts])
            start = 0
            for i, row in enumerate(rows):
                if row is None:
                    continue
                n, end = len(row[0]), start + len(row[0])
                responses[i] = pb_utils.InferenceResponse(output_tensors=[
                    pb_utils.Tensor("probabilities", probs[start:end]),
                    pb_utils.Tensor("labels", np.tile(self.labels, (n, 1))),
                    pb_utils.Tensor("similarity", sims[start:end].reshape(n, 1)),
                    pb_utils.Tensor("novelty", novelty[start:end].reshape(n, 1)),
                    pb_utils.Tensor("out_of_scope", out[start:end].reshape(n, 1)),
                ])
                start = end
        except Exception as exc:
            pb_utils.Logger.log_error(f"intent_classifier: {exc}\n{traceback.format_exc()}")
            for i in range(len(requests)):
                if responses[i] is None:
                    responses[i] = pb_utils.InferenceResponse(error=pb_utils.TritonError(f"classification failed: {exc}"))
        return responses

    def finalize(self):
        self.artifact = None
