"""Training, publishing and loading the intent classifier served by Triton.

The classifier is a multinomial logistic regression on multilingual-e5 "query: "
embeddings of the domain pack's example utterances (zh and en), calibrated by
temperature scaling. The temperature is fitted on held-out predictions: the examples
are split into ``folds`` stratified parts, each part is predicted by a model trained
on the others, and the temperature minimises the negative log-likelihood of those
out-of-fold predictions. (A pack has only ~9 examples per intent and language, so a
single held-out split would leave 3-4 per intent; cross-fitting holds every example
out once.) The served weights are then fitted on all examples with the same
regularisation and the fitted temperature applied.

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
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Awaitable, Callable, Sequence

import numpy as np

from services.demo.pack import DomainPack
from services.serving.intent_model import ARTIFACT_FORMAT, EMBEDDING_DIM, META_FILE, IntentArtifact, softmax

if TYPE_CHECKING:
    from services.config import KefuConfig
    from services.embedding import Embedder
    from services.serving.triton_client import IntentClassifierClient

log = logging.getLogger(__name__)

# texts -> L2-normalised e5 query embeddings [n, 384] (e.g. ``Embedder.embed_queries``)
EmbedQueries = Callable[[list[str]], Awaitable[np.ndarray]]

DEFAULT_L2 = 3e-3
DEFAULT_FOLDS = 5
DEFAULT_ITERATIONS = 400
KEEP_VERSIONS = 3


def training_examples(pack: DomainPack) -> tuple[list[str], list[str], list[str]]:
    """(texts, intent names, languages) of every example utterance in the pack, in pack order."""
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


def training_data_hash(pack: DomainPack) -> str:
    """sha256 of what the classifier learns from: the intents and their examples."""
    texts, labels, languages = training_examples(pack)
    doc = json.dumps({"format": ARTIFACT_FORMAT, "examples": list(zip(labels, languages, texts, strict=True))}, ensure_ascii=False)
    return hashlib.sha256(doc.encode("utf-8")).hexdigest()


# ------------------------------------------------------------------ the model

def _fit_logistic(x: np.ndarray, y: np.ndarray, classes: int, *, l2: float, iterations: int):
    """Multinomial logistic regression by accelerated gradient descent (the problem is
    convex, so a fixed number of Nesterov steps from zero gives the same weights every run).
    Features are centred and scaled by one number so that the L2 penalty means the same
    for every pack."""
    mean = x.mean(axis=0)
    scale = float(x.std(axis=0).mean()) or 1.0
    z = ((x - mean) / scale).astype(np.float64)
    n = len(z)
    targets = np.eye(classes)[y]
    # Lipschitz constant of the gradient: softmax curvature <= 1/2.
    step = 1.0 / (0.5 * np.linalg.norm(z, 2) ** 2 / n + l2)
    w = np.zeros((z.shape[1], classes))
    b = np.zeros(classes)
    w_look, b_look, t = w.copy(), b.copy(), 1.0
    for _ in range(iterations):
        grad = (softmax(z @ w_look + b_look) - targets) / n
        w_next = w_look - step * (z.T @ grad + l2 * w_look)
        b_next = b_look - step * grad.sum(axis=0)
        t_next = (1.0 + np.sqrt(1.0 + 4.0 * t * t)) / 2.0
        w_look = w_next + (t - 1.0) / t_next * (w_next - w)
        b_look = b_next + (t - 1.0) / t_next * (b_next - b)
        w, b, t = w_next, b_next, t_next
    return mean.astype(np.float32), scale, w.astype(np.float32), b.astype(np.float32)


def _logits(params, x: np.ndarray) -> np.ndarray:
    mean, scale, w, b = params
    return ((x - mean) / scale) @ w + b


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
    lo, hi = np.log(0.02), np.log(50.0)
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


def fit_intent_classifier(
    embeddings: np.ndarray, labels: Sequence[str], *, languages: Sequence[str] | None = None,
    seed: int = 0, l2: float = DEFAULT_L2, folds: int = DEFAULT_FOLDS, iterations: int = DEFAULT_ITERATIONS,
) -> IntentArtifact:
    """Fit and calibrate on precomputed embeddings (pure numpy, deterministic for a seed)."""
    x = np.asarray(embeddings, dtype=np.float32).reshape(-1, EMBEDDING_DIM)
    names = sorted(set(labels))
    if len(names) < 2:
        raise ValueError("the intent classifier needs at least two intents")
    index = {name: i for i, name in enumerate(names)}
    y = np.array([index[name] for name in labels], dtype=np.int64)
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()

    # Out-of-fold logits: every example predicted by a model that did not see it.
    fold_of = _stratified_folds(y, folds, rng)
    held_out = np.zeros((len(y), len(names)))
    for f in range(folds):
        train, test = fold_of != f, fold_of == f
        params = _fit_logistic(x[train], y[train], len(names), l2=l2, iterations=iterations)
        held_out[test] = _logits(params, x[test])
    temperature = fit_temperature(held_out, y)
    calibrated = softmax(held_out / temperature)

    params = _fit_logistic(x, y, len(names), l2=l2, iterations=iterations)
    seconds = time.perf_counter() - t0
    correct = held_out.argmax(axis=1) == y
    metrics = {
        "heldout_accuracy": float(correct.mean()),
        "heldout_nll_uncalibrated": _nll(held_out, y, 1.0),
        "heldout_nll": _nll(held_out, y, temperature),
        "heldout_ece_uncalibrated": _ece(softmax(held_out), y),
        "heldout_ece": _ece(calibrated, y),
        "train_accuracy": float((_logits(params, x).argmax(axis=1) == y).mean()),
    }
    if languages is not None:
        langs = np.asarray(languages)
        for lang in sorted(set(languages)):
            metrics[f"heldout_accuracy_{lang}"] = float(correct[langs == lang].mean())
    mean, scale, w, b = params
    return IntentArtifact(
        labels=names, mean=mean, scale=scale, weights=w, bias=b, temperature=temperature,
        examples=(x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32),
        meta={
            "format": ARTIFACT_FORMAT,
            "trained_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "model": "multinomial logistic regression on multilingual-e5-small query embeddings, temperature-scaled",
            "seed": seed, "l2": l2, "folds": folds, "iterations": iterations,
            "examples": len(y), "intents": len(names), "temperature": temperature,
            "fit_seconds": round(seconds, 3), "metrics": metrics,
        },
    )


async def train_intent_classifier(pack: DomainPack, embed: EmbedQueries, *, seed: int = 0, **options) -> IntentArtifact:
    """Embed the pack's zh + en examples with ``embed`` (query embeddings) and fit a
    calibrated classifier; ``meta.json`` records the training-data hash."""
    texts, labels, languages = training_examples(pack)
    t0 = time.perf_counter()
    embeddings = np.asarray(await embed(texts), dtype=np.float32)
    embed_seconds = time.perf_counter() - t0
    # The fit is CPU-bound numpy (a second or two): keep the event loop free.
    artifact = await asyncio.to_thread(fit_intent_classifier, embeddings, labels, languages=languages, seed=seed, **options)
    artifact.meta.update(data_hash=training_data_hash(pack), embed_seconds=round(embed_seconds, 3))
    m = artifact.meta["metrics"]
    log.info(
        "intent classifier trained on %d examples / %d intents in %.1f s (+%.1f s embedding): held-out accuracy %.3f, "
        "temperature %.3f, held-out NLL %.3f -> %.3f", len(texts), len(artifact.labels), artifact.meta["fit_seconds"],
        embed_seconds, m["heldout_accuracy"], artifact.temperature, m["heldout_nll_uncalibrated"], m["heldout_nll"],
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
    if retrain or not latest or meta.get("data_hash") != wanted or meta.get("format") != ARTIFACT_FORMAT:
        why = "retrain asked" if retrain else "no version yet" if not latest else "the pack's examples changed"
        log.info("training %s (%s)", cfg.models.intent_model, why)
        artifact = await train_intent_classifier(pack, embedder.embed_queries, seed=seed)
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
