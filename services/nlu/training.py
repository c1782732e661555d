"""Training, publishing and loading the intent classifier served by Triton.

The classifier (``services/serving/intent_model.py``) is a one-vs-rest linear SVM over
two views of each example utterance: TF-IDF of its words, word bigrams and character
2-4-grams, beside its multilingual-e5 "query: " embedding (centred, scaled to a fixed
norm against the unit-norm TF-IDF block). Its scores become calibrated probabilities by
temperature scaling, and an out-of-scope detector scores how unlike every intent a
message is (low top probability + Mahalanobis distance of the embedding to the nearest
intent mean). Examples labelled ``oos`` (if any) are a class of their own.

Everything that needs held-out data is fitted on out-of-fold predictions: the examples
are split into stratified parts (5, or 3 above 2,000 examples), each part is scored by
a model trained on the others, and the temperature (minimum NLL), the detector's
normalisation and its threshold (the novelty that ``reject_rate`` of the in-scope
examples exceed) come from those scores. (A pack has only ~10 examples per intent and
language, so a single held-out split would be too small; cross-fitting holds every
example out once.) The served model is then fitted on all examples.

Versions go to ``<repository>/<intent_model>/<n>/`` (see
``services/serving/intent_model.py`` for what a version folder holds); writing one is
atomic (a hidden temporary folder, then ``rename``). :func:`ensure_intent_model` trains
and publishes a version when none exists or the pack's examples changed, and asks
Triton to load it; Triton (``version_policy: latest 1``) then serves the newest
version and unloads the one before, without a restart.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import json
import logging
import os
import shutil
import time
import uuid
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Awaitable, Callable, Sequence

import numpy as np
import scipy.sparse as sp

from services.demo.pack import DomainPack
from services.embedding import weights_id
from services.serving.embedder_weights import BASE_MODEL_ID
from services.serving.intent_model import (
    ARTIFACT_FORMAT,
    EMBEDDING_DIM,
    META_FILE,
    OUT_OF_SCOPE_LABEL,
    IntentArtifact,
    OutOfScopeDetector,
    TermVectorizer,
    softmax,
)

if TYPE_CHECKING:
    from services.config import KefuConfig
    from services.embedding import Embedder
    from services.serving.triton_client import IntentClassifierClient

log = logging.getLogger(__name__)

# texts -> L2-normalised e5 query embeddings [n, 384] (e.g. ``Embedder.embed_queries``)
EmbedQueries = Callable[[list[str]], Awaitable[np.ndarray]]

# C: the best mean 3-fold cross-validated accuracy on the Banking77 and SMP-ECDT 2020 training sets over
# e5_weight {1, 1.5, 2} at C = 1 and C {0.5, 2} at e5_weight 1.5 (`bench/nlu_intents.py --grid`; all within 0.4 points).
# The embedding weight is chosen per training set, by the same out-of-fold predictions that calibrate the model:
# on large sets the candidates are within a few tenths of a point, but a small pack (~10 examples per intent and
# language) leans on the embedding (the demo pack: 0.845 out-of-fold at weight 1, 0.864 at 2).
DEFAULT_C = 1.0  # the SVM's C
DEFAULT_E5_WEIGHT = "auto"  # the embedding block's norm beside the unit-norm TF-IDF block, or "auto"
E5_WEIGHT_CANDIDATES = (1.0, 2.0, 3.0)
DEFAULT_REJECT_RATE = 0.02  # share of in-scope messages the out-of-scope detector may turn away
KEEP_VERSIONS = 3
EMBED_CHUNK = 256  # texts per embedding call while training


def intent_examples(pack: DomainPack) -> tuple[list[str], list[str], list[str]]:
    """(texts, intent names, languages) of the intents' own example utterances, in pack order."""
    texts: list[str] = []
    labels: list[str] = []
    languages: list[str] = []
    for intent in pack.intents:
        for language in sorted(intent.examples):
            for text in intent.examples[language]:
                texts.append(text)
                labels.append(intent.name)
                languages.append(language)
    return texts, labels, languages


def training_examples(pack: DomainPack) -> tuple[list[str], list[str], list[str]]:
    """(texts, intent names, languages) of every example utterance in the pack, in pack
    order, the pack's out-of-scope examples (labelled ``oos``), then the questions of each
    FAQ entry that one intent alone links to (its `faq:`), as that intent's: the ways
    customers ask (similar questions, faq.yaml) teach the intent too — on the tune half of
    bench/answers the top intent is one linked to the right entry for 112 of 122 questions
    with them, 91 without (bench/intent_links.py)."""
    texts, labels, languages = intent_examples(pack)
    for language in sorted(pack.out_of_scope):
        for text in pack.out_of_scope[language]:
            texts.append(text)
            labels.append(OUT_OF_SCOPE_LABEL)
            languages.append(language)
    linking = pack.linking_intents()
    seen = set(texts)
    for entry in pack.faq:
        owners = linking.get(entry.id, set())
        if len(owners) != 1:
            continue
        (owner,) = owners
        for question in entry.questions:
            if question.strip() and question not in seen:
                seen.add(question)
                texts.append(question)
                labels.append(owner)
                languages.append(entry.locale)
    return texts, labels, languages


def training_data_hash(pack: DomainPack) -> str:
    """sha256 of what the classifier learns from (the intents and their examples) and of the
    training recipe (artifact format and default hyper-parameters): a change to either retrains."""
    texts, labels, languages = training_examples(pack)
    recipe = {"format": ARTIFACT_FORMAT, "c": DEFAULT_C, "e5_weight": DEFAULT_E5_WEIGHT, "e5_weight_candidates": E5_WEIGHT_CANDIDATES,
              "reject_rate": DEFAULT_REJECT_RATE}
    doc = json.dumps({**recipe, "examples": list(zip(labels, languages, texts, strict=True))}, ensure_ascii=False)
    return hashlib.sha256(doc.encode("utf-8")).hexdigest()


# ------------------------------------------------------------------ the model


def _nll(logits: np.ndarray, y: np.ndarray, temperature: float) -> float:
    p = softmax(logits / temperature)
    return float(-np.mean(np.log(p[np.arange(len(y)), y] + 1e-12)))


def _ece(probs: np.ndarray, y: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error of the top prediction."""
    confidence, predicted = probs.max(axis=1), probs.argmax(axis=1)
    correct = predicted == y
    edges = np.linspace(0.0, 1.0, bins + 1)
    total = 0.0
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        inside = (confidence > lo) & (confidence <= hi)
        if inside.any():
            total += inside.mean() * abs(correct[inside].mean() - confidence[inside].mean())
    return float(total)


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The temperature T > 0 minimising the NLL of ``softmax(logits / T)`` (golden-section on log T)."""
    lo, hi = np.log(0.01), np.log(50.0)
    ratio = (np.sqrt(5.0) - 1.0) / 2.0
    for _ in range(100):
        a, c = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
        if _nll(logits, y, float(np.exp(a))) < _nll(logits, y, float(np.exp(c))):
            hi = c
        else:
            lo = a
    return float(np.exp((lo + hi) / 2.0))


def _stratified_folds(y: np.ndarray, folds: int, rng: np.random.Generator) -> np.ndarray:
    fold_of = np.zeros(len(y), dtype=np.int64)
    for label in np.unique(y):
        members = np.flatnonzero(y == label)
        rng.shuffle(members)
        fold_of[members] = (np.arange(len(members)) + rng.integers(folds)) % folds
    return fold_of


def _fit_svm(x: sp.csr_matrix, y: np.ndarray, classes: int, *, c: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """One-vs-rest linear SVM (liblinear); returns ``(W [features, classes], b [classes])`` in the
    full label space: an intent absent from ``y`` (a fold without it) gets a very low score."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.svm import LinearSVC

    present = np.unique(y)
    w = np.zeros((x.shape[1], classes), dtype=np.float32)
    b = np.full(classes, -10.0, dtype=np.float32)
    if len(present) == 1:
        b[present[0]] = 0.0
        return w, b
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        svm = LinearSVC(C=c, random_state=seed, max_iter=2000).fit(x, y)
    coef, intercept = svm.coef_.astype(np.float32), svm.intercept_.astype(np.float32)
    if len(present) == 2:  # binary: one decision function, positive = present[1]
        coef, intercept = np.vstack([-coef / 2, coef / 2]), np.concatenate([-intercept / 2, intercept / 2])
    w[:, present] = coef.T
    b[present] = intercept
    return w, b


def _fit_detector_parts(x: np.ndarray, y: np.ndarray, shrinkage: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """(whitening [384, 384], whitened intent means) from in-scope embeddings: shared
    within-intent covariance, shrunk towards a multiple of the identity."""
    classes = np.unique(y)
    means = np.stack([x[y == k].mean(axis=0) for k in classes])
    resid = x - means[np.searchsorted(classes, y)]
    cov = resid.T @ resid / max(len(x), 1)
    cov = (1.0 - shrinkage) * cov + shrinkage * (np.trace(cov) / cov.shape[0] or 1.0) * np.eye(cov.shape[0])
    eigval, eigvec = np.linalg.eigh(cov)
    whiten = (eigvec / np.sqrt(np.maximum(eigval, 1e-12))).astype(np.float32)
    return whiten, (means @ whiten).astype(np.float32)


def _mahalanobis(whiten: np.ndarray, means: np.ndarray, x: np.ndarray) -> np.ndarray:
    return OutOfScopeDetector(whiten, means, 0.0, 1.0, 0.0, 1.0, 0.0).distance(x)


def _top_in_scope(probs: np.ndarray, oos: int) -> np.ndarray:
    if oos >= 0:
        probs = probs.copy()
        probs[:, oos] = 0.0
    return probs.max(axis=1)


def fit_intent_classifier(
    embeddings: np.ndarray, labels: Sequence[str], texts: Sequence[str], *, languages: Sequence[str] | None = None,
    seed: int = 0, c: float = DEFAULT_C, e5_weight: float | str = DEFAULT_E5_WEIGHT, folds: int | None = None,
    reject_rate: float = DEFAULT_REJECT_RATE,
) -> IntentArtifact:
    """Fit, calibrate and set the out-of-scope threshold on precomputed embeddings and
    their texts (deterministic for a seed). Examples labelled ``oos`` are a class of their own.

    Everything that needs held-out data comes from out-of-fold predictions on these
    examples (``folds`` stratified parts; 5 below 2,000 examples, else 3): the
    temperature, the z-scores of the novelty and its threshold, which lets
    ``reject_rate`` of the in-scope examples through as out of scope, and (``e5_weight="auto"``)
    the embedding weight among ``E5_WEIGHT_CANDIDATES`` with the best out-of-fold accuracy.
    """
    x = np.asarray(embeddings, dtype=np.float32).reshape(-1, EMBEDDING_DIM)
    if not len(x) == len(labels) == len(texts):
        raise ValueError(f"{len(x)} embeddings, {len(labels)} labels and {len(texts)} texts")
    names = sorted(set(labels))
    if len([n for n in names if n != OUT_OF_SCOPE_LABEL]) < 2:
        raise ValueError("the intent classifier needs at least two intents")
    index = {name: i for i, name in enumerate(names)}
    oos = index.get(OUT_OF_SCOPE_LABEL, -1)
    y = np.array([index[name] for name in labels], dtype=np.int64)
    inside = y != oos
    folds = folds or (5 if len(y) < 2000 else 3)
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()

    # Features: TF-IDF (vocabulary from all texts: unsupervised) beside the centred embedding.
    vectorizer = TermVectorizer.fit(texts, min_df=2 if len(texts) >= 5000 else 1)
    terms = vectorizer.transform(texts)
    mean = x.mean(axis=0)
    scale = float(np.linalg.norm(x - mean, axis=1).mean()) or 1.0

    def features_at(weight: float) -> sp.csr_matrix:
        return sp.hstack([terms, sp.csr_matrix((x - mean) * (weight / scale))], format="csr")

    # Out-of-fold logits and Mahalanobis distances: every example scored by models that did not see it.
    fold_of = _stratified_folds(y, folds, rng)
    distance = np.zeros(len(y))
    for f in range(folds):
        train, test = fold_of != f, fold_of == f
        whiten, means = _fit_detector_parts(x[train & inside], y[train & inside])
        distance[test] = _mahalanobis(whiten, means, x[test])
    candidates = E5_WEIGHT_CANDIDATES if e5_weight == "auto" else (float(e5_weight),)
    tried: dict[float, float] = {}
    best = None
    for weight in candidates:
        features = features_at(weight)
        logits = np.zeros((len(y), len(names)))
        for f in range(folds):
            train, test = fold_of != f, fold_of == f
            w, b = _fit_svm(features[train], y[train], len(names), c=c, seed=seed)
            logits[test] = np.asarray(features[test] @ w) + b
        tried[weight] = float((logits.argmax(axis=1) == y).mean())
        if best is None or tried[weight] > tried[best[0]]:
            best = (weight, features, logits)
    e5_weight, features, held_out = best
    temperature = fit_temperature(held_out, y)
    calibrated = softmax(held_out / temperature)

    # Novelty = z(1 - top in-scope probability) + z(distance), z over the in-scope examples.
    top = 1.0 - _top_in_scope(calibrated, oos)
    prob_mu, prob_sd = float(top[inside].mean()), float(top[inside].std()) or 1.0
    dist_mu, dist_sd = float(distance[inside].mean()), float(distance[inside].std()) or 1.0
    novelty = (top - prob_mu) / prob_sd + (distance - dist_mu) / dist_sd
    threshold = float(np.quantile(novelty[inside], 1.0 - reject_rate)) if reject_rate > 0 else float("inf")

    w, b = _fit_svm(features, y, len(names), c=c, seed=seed)
    whiten, means = _fit_detector_parts(x[inside], y[inside])
    detector = OutOfScopeDetector(whiten, means, prob_mu, prob_sd, dist_mu, dist_sd, threshold)
    seconds = time.perf_counter() - t0

    predicted = held_out.argmax(axis=1)
    rejected = (novelty > threshold) | (predicted == oos)
    correct = predicted == y
    metrics = {
        "heldout_accuracy": float(correct.mean()),
        "heldout_in_scope_accuracy": float((correct & ~rejected)[inside].mean()),
        "heldout_in_scope_rejected": float(rejected[inside].mean()),
        "heldout_nll_uncalibrated": _nll(held_out, y, 1.0),
        "heldout_nll": _nll(held_out, y, temperature),
        "heldout_ece_uncalibrated": _ece(softmax(held_out), y),
        "heldout_ece": _ece(calibrated, y),
        "train_accuracy": float((np.asarray(features @ w + b).argmax(axis=1) == y).mean()),
    }
    if oos >= 0:
        metrics["heldout_oos_recall"] = float(rejected[~inside].mean())
    if languages is not None:
        langs = np.asarray(languages)
        for lang in sorted(set(languages)):
            metrics[f"heldout_accuracy_{lang}"] = float(correct[langs == lang].mean())
    return IntentArtifact(
        labels=names, vectorizer=vectorizer, mean=mean.astype(np.float32), scale=scale, e5_weight=e5_weight,
        weights=w, bias=b, temperature=temperature, detector=detector,
        examples=(x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32),
        meta={
            "format": ARTIFACT_FORMAT,
            "trained_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "model": "linear SVM on TF-IDF words + char n-grams and multilingual-e5-small query embeddings, temperature-scaled; "
                     "out of scope by top probability + Mahalanobis distance",
            "seed": seed, "c": c, "e5_weight": e5_weight, "folds": folds, "reject_rate": reject_rate,
            "examples": len(y), "intents": len(names), "terms": len(vectorizer.vocabulary), "temperature": temperature,
            "oos_threshold": threshold, "fit_seconds": round(seconds, 3), "metrics": metrics,
            "e5_weight_heldout_accuracy": {str(k): round(v, 4) for k, v in tried.items()},
        },
    )


async def train_on_texts(
    texts: Sequence[str], labels: Sequence[str], embed: EmbedQueries, *, languages: Sequence[str] | None = None,
    seed: int = 0, **options,
) -> IntentArtifact:
    """Embed ``texts`` with ``embed`` (query embeddings) and fit :func:`fit_intent_classifier`
    in a worker thread (CPU-bound; the event loop stays free)."""
    t0 = time.perf_counter()
    texts = list(texts)
    # In chunks: each call is one request with its own deadline, however large the set.
    chunks = [np.asarray(await embed(texts[i:i + EMBED_CHUNK]), dtype=np.float32).reshape(-1, EMBEDDING_DIM)
              for i in range(0, len(texts), EMBED_CHUNK)]
    embeddings = np.concatenate(chunks) if chunks else np.zeros((0, EMBEDDING_DIM), np.float32)
    embed_seconds = time.perf_counter() - t0
    artifact = await asyncio.to_thread(fit_intent_classifier, embeddings, list(labels), list(texts), languages=languages,
                                       seed=seed, **options)
    artifact.meta["embed_seconds"] = round(embed_seconds, 3)
    return artifact


async def train_intent_classifier(pack: DomainPack, embed: EmbedQueries, *, seed: int = 0, **options) -> IntentArtifact:
    """Embed the pack's zh + en examples with ``embed`` (query embeddings) and fit a
    calibrated classifier; ``meta.json`` records the training-data hash."""
    texts, labels, languages = training_examples(pack)
    artifact = await train_on_texts(texts, labels, embed, languages=languages, seed=seed, **options)
    artifact.meta["data_hash"] = training_data_hash(pack)
    m = artifact.meta["metrics"]
    log.info(
        "intent classifier trained on %d examples / %d intents in %.1f s (+%.1f s embedding): held-out accuracy %.3f, "
        "temperature %.3f, held-out NLL %.3f -> %.3f", len(texts), len(artifact.labels), artifact.meta["fit_seconds"],
        artifact.meta["embed_seconds"], m["heldout_accuracy"], artifact.temperature, m["heldout_nll_uncalibrated"], m["heldout_nll"],
    )
    return artifact


# ------------------------------------------------------------------ versions

def intent_versions(model_dir: Path) -> list[int]:
    """Version numbers published in ``model_dir``, ascending."""
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit() and (p / META_FILE).exists())


def _lock(model_dir: Path) -> int:
    """Exclusive lock on the model folder itself (no extra file to keep out of git)."""
    fd = os.open(model_dir, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def publish_intent_version(repository: Path, artifact: IntentArtifact, *, model: str = "intent_classifier", keep: int = KEEP_VERSIONS) -> int:
    """Write ``artifact`` as the next version of ``<repository>/<model>/`` and return its number.

    The version is written into a hidden temporary folder and renamed into place, so
    Triton never sees a half-written version; a lock serialises concurrent publishers.
    Versions older than the newest ``keep`` are removed (Triton serves only the newest).
    """
    model_dir = Path(repository) / model
    if not (model_dir / "config.pbtxt").exists():
        raise FileNotFoundError(f"{model_dir / 'config.pbtxt'} is missing: not a Triton model folder")
    fd = _lock(model_dir)
    try:
        existing = intent_versions(model_dir)
        version = (existing[-1] if existing else 0) + 1
        while (model_dir / str(version)).exists():  # e.g. a folder without meta.json
            version += 1
        tmp = model_dir / f".tmp-{version}-{uuid.uuid4().hex[:8]}"
        try:
            artifact.save(tmp)
            meta = dict(artifact.meta, version=version)
            (tmp / META_FILE).write_text(json.dumps(meta, ensure_ascii=False, indent=1, sort_keys=True) + "\n", encoding="utf-8")
            os.rename(tmp, model_dir / str(version))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        for old in intent_versions(model_dir)[:-keep] if keep > 0 else []:
            shutil.rmtree(model_dir / str(old), ignore_errors=True)
        for stale in model_dir.glob(".tmp-*"):  # left by a publisher that was killed
            if time.time() - stale.stat().st_mtime > 3600:
                shutil.rmtree(stale, ignore_errors=True)
    finally:
        os.close(fd)
    log.info("published %s version %d", model, version)
    return version


def read_intent_meta(model_dir: Path, version: int) -> dict:
    try:
        return json.loads((model_dir / str(version) / META_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


async def ensure_intent_model(
    cfg: "KefuConfig", embedder: "Embedder", triton: "IntentClassifierClient", *, retrain: bool = False, seed: int = 0,
    pack: DomainPack | None = None,
) -> int:
    """Make Triton serve an intent classifier for the configured pack; returns the serving version.

    Trains and publishes a version when none exists, when the newest was trained on
    other examples (the pack changed) or when ``retrain`` is set; then ``load_model``
    (only if that version is not serving already). Triton must read the same
    ``cfg.models.repository`` as this process (true for kefu's own TritonServer).
    """
    from services.demo.pack import load_domain_pack
    from services.serving.triton_client import ModelUnavailable

    pack = pack or load_domain_pack(cfg.domain_pack)
    model_dir = Path(cfg.models.repository) / cfg.models.intent_model
    versions = intent_versions(model_dir)
    latest = versions[-1] if versions else 0
    meta = read_intent_meta(model_dir, latest) if latest else {}
    wanted = training_data_hash(pack)
    # Vectors of other embedder weights are not comparable: a new embedder retrains too.
    embedder_id = weights_id(embedder)
    if (retrain or not latest or meta.get("data_hash") != wanted or meta.get("format") != ARTIFACT_FORMAT
            or meta.get("embedder", BASE_MODEL_ID) != embedder_id):
        why = ("retrain asked" if retrain else "no version yet" if not latest else
               "the pack's examples changed" if meta.get("data_hash") != wanted else "new embedder or model format")
        log.info("training %s (%s)", cfg.models.intent_model, why)
        artifact = await train_intent_classifier(pack, embedder.embed_queries, seed=seed)
        artifact.meta["embedder"] = embedder_id
        latest = await asyncio.to_thread(publish_intent_version, Path(cfg.models.repository), artifact, model=cfg.models.intent_model)
    try:
        serving = await triton.serving_version()
    except ModelUnavailable:
        serving = 0
    if serving != latest:
        t0 = time.perf_counter()
        await triton.load()
        serving = await triton.serving_version()
        log.info("%s: Triton serves version %d (load_model took %.1f s)", cfg.models.intent_model, serving, time.perf_counter() - t0)
    if serving != latest:
        log.warning("%s: published version %d but Triton serves %d (does it read %s?)", cfg.models.intent_model, latest, serving,
                    cfg.models.repository)
    return serving
