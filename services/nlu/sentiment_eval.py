"""Train the sentiment classifier on TRAIN and report accuracy, macro-F1 and latency on TEST.

Files are CSV (header ``text,label``) or JSONL (``{"text": ..., "label": ...}``); labels are
any strings (``0/1``, ``negative/neutral/positive``, ...). The model is kefu's own
(``services/nlu/sentiment.py``): TF-IDF text model and e5-embedding model, stacked. The e5
query embeddings are computed in this process (multilingual-e5-small, ``LocalEmbedder``),
with a progress bar on stderr; ``--no-embeddings`` leaves them out (text model only, fast);
``--cache DIR`` keeps them between runs.

``--mode best`` also fine-tunes multilingual-e5-small on TRAIN (``services/nlu/finetune.py``;
``--epochs``, default 3: ~9 min an epoch for 10k reviews on 2 cores, progress on stderr;
a review longer than 160 tokens keeps its first quarter and its end; ``--members N`` fine-tunes
N encoders from different seeds and averages them, N times the cost; ``--pretrain FILE``
has each encoder learn FILE's texts, with the same labels, for one epoch first, while the fast
model sees TRAIN only) and reports the average of its probabilities and the fast model's; ``fine_tuned_accuracy`` and
``fast_accuracy`` give each alone, and ``p50_ms`` then includes a forward pass of the
fine-tuned encoder.

Reported: ``accuracy``, ``macro_f1`` (unweighted mean of per-label F1 over the labels in TEST
or predicted), ``n`` (TEST rows), per-label precision/recall/F1, ``ece`` (expected calibration
error of the top probability, 10 bins), ``train_s`` (fitting, embeddings excluded),
``embed_s`` and ``p50_ms`` / ``p95_ms`` (one message at a time, its embedding given, as in
the NLU service). A table by default, one JSON object with ``--json``. Exit status 2 for a
file that cannot be read or labels that cannot be trained on.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Sequence

LATENCY_MESSAGES = 200
BEST_EPOCHS = 3


def add_arguments(parser) -> None:
    parser.add_argument("--train", required=True, help="training file: CSV text,label or JSONL")
    parser.add_argument("--test", required=True, help="file to report on: CSV text,label or JSONL")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--no-embeddings", dest="embeddings", action="store_false",
                        help="text model only: no e5 embeddings (fast, less accurate on short messages)")
    parser.add_argument("--cache", metavar="DIR", help="keep the e5 embeddings in DIR and reuse them on later runs")
    parser.add_argument("--seed", type=int, default=0, help="seed of the out-of-fold split and of fine-tuning (default 0)")
    parser.add_argument("--mode", choices=("fast", "best"), default="fast",
                        help="fast: what the service trains (seconds); best: also fine-tune the encoder and average "
                             "the two (minutes to an hour on a CPU)")
    parser.add_argument("--epochs", type=int, default=BEST_EPOCHS, help=f"fine-tuning epochs in best mode (default {BEST_EPOCHS})")
    parser.add_argument("--members", type=int, default=1,
                        help="best mode: fine-tune this many encoders (seeds seed, seed+1, ...) and average them (default 1)")
    parser.add_argument("--pretrain", metavar="FILE",
                        help="best mode: each encoder first learns FILE (CSV text,label or JSONL, TRAIN's labels; e.g. "
                             "other products' reviews) for one epoch, then TRAIN; the fast model sees TRAIN only")


def run(args) -> int:
    from services.nlu.datasets import DatasetError, read_labelled

    try:
        train = read_labelled(args.train)
        test = read_labelled(args.test)
        pretrain = read_labelled(args.pretrain) if args.pretrain else None
    except DatasetError as exc:
        print(f"kefu eval sentiment: {exc}", file=sys.stderr)
        return 2
    if pretrain is not None and args.mode != "best":
        print("kefu eval sentiment: --pretrain fine-tunes the encoder: it needs --mode best", file=sys.stderr)
        return 2
    try:
        result = evaluate(
            [r.text for r in train], [r.label for r in train], [r.text for r in test], [r.label for r in test],
            embeddings=args.embeddings, cache_dir=args.cache, seed=args.seed, mode=args.mode, epochs=args.epochs,
            members=args.members, pretrain=None if pretrain is None else ([r.text for r in pretrain], [r.label for r in pretrain]),
        )
    except ValueError as exc:  # e.g. a label with a single example
        print(f"kefu eval sentiment: {exc}", file=sys.stderr)
        return 2
    result = {"train": str(args.train), "test": str(args.test), **result}
    if pretrain is not None:
        result["pretrain"] = str(args.pretrain)
    print(json.dumps(result, ensure_ascii=False) if args.json else format_table(result))
    return 0


# ------------------------------------------------------------------ evaluation


def best_settings(epochs: int = BEST_EPOCHS, seed: int = 0, members: int = 1):
    """The e5-small fine-tuning that ``--mode best`` runs for sentiment: a review cut to 160
    tokens keeps its first quarter and its end (where the verdict usually is)."""
    from services.nlu.finetune import FineTuneSettings

    return FineTuneSettings(epochs=epochs, seed=seed, head_share=0.25, members=members)


def evaluate(
    train_texts: Sequence[str], train_labels: Sequence[str], test_texts: Sequence[str], test_labels: Sequence[str], *,
    embeddings: bool = True, cache_dir: str | Path | None = None, seed: int = 0, mode: str = "fast", epochs: int = BEST_EPOCHS,
    members: int = 1, pretrain: tuple[Sequence[str], Sequence[str]] | None = None,
) -> dict:
    """Train on the first pair, report on the second (what ``kefu eval sentiment`` prints)."""
    import numpy as np

    if mode not in ("fast", "best"):
        raise ValueError(f"mode must be fast or best, not {mode!r}")
    if pretrain is not None:  # said before minutes of embedding and training, not after
        unknown = sorted(set(map(str, pretrain[1])) - set(map(str, train_labels)))
        if unknown:
            raise ValueError(f"pretraining labels not among the training labels: {', '.join(unknown[:5])}")

    from services.nlu.sentiment import SentimentModel, expected_calibration_error

    embed_s = 0.0
    train_emb = test_emb = None
    if embeddings:
        t0 = time.perf_counter()
        train_emb = embed_texts(train_texts, cache_dir=cache_dir, what="train")
        test_emb = embed_texts(test_texts, cache_dir=cache_dir, what="test")
        embed_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    model = SentimentModel.train(train_texts, train_labels, train_emb, seed=seed)
    train_s = time.perf_counter() - t0
    probs = model.predict_proba(test_texts, test_emb)
    tuned = None
    extra: dict = {}
    if mode == "best":
        from services.nlu.finetune import blend, fine_tune
        from services.nlu.text import normalize

        tuned = fine_tune([normalize(t) for t in train_texts], train_labels, best_settings(epochs, seed, members),
                          progress=lambda line: print(f"[eval sentiment] {line}", file=sys.stderr, flush=True),
                          pretrain=None if pretrain is None else ([normalize(t) for t in pretrain[0]], pretrain[1]))
        if tuned.labels != model.labels:
            raise ValueError("the fine-tuned and fast models disagree on the labels")  # both sort the same set: never
        tuned_probs = tuned.predict_proba([normalize(t) for t in test_texts])
        extra = {"fast_accuracy": classification_metrics(test_labels, [model.labels[i] for i in probs.argmax(axis=1)])["accuracy"],
                 "fine_tuned_accuracy": classification_metrics(test_labels, [model.labels[i] for i in tuned_probs.argmax(axis=1)])["accuracy"],
                 "fine_tune_s": round(tuned.train_seconds, 1), "epochs": epochs, "members": members,
                 "n_pretrain": 0 if pretrain is None else len(pretrain[0])}
        probs = blend(probs, tuned_probs)
    predicted = [model.labels[i] for i in probs.argmax(axis=1)]
    result = classification_metrics(test_labels, predicted)
    index = {label: i for i, label in enumerate(model.labels)}
    known = [i for i, label in enumerate(test_labels) if label in index]
    if known:
        y = np.array([index[test_labels[i]] for i in known])
        result["ece"] = round(expected_calibration_error(probs[known], y), 4)
    latencies = []
    for i in range(min(LATENCY_MESSAGES, len(test_texts))):
        t1 = time.perf_counter()
        model.predict_proba([test_texts[i]], None if test_emb is None else test_emb[i:i + 1])
        if tuned is not None:
            tuned.predict_proba([normalize(test_texts[i])])
        latencies.append((time.perf_counter() - t1) * 1000.0)
    result.update(
        n_train=len(train_texts), labels=model.labels, embeddings=bool(embeddings),
        train_s=round(train_s, 2), embed_s=round(embed_s, 2),
        p50_ms=round(float(np.percentile(latencies, 50)), 3), p95_ms=round(float(np.percentile(latencies, 95)), 3),
        embedding_c=model.meta["settings"]["embedding_c"] if embeddings else None, mode=mode, **extra,
    )
    return result


def classification_metrics(gold: Sequence[str], predicted: Sequence[str]) -> dict:
    """accuracy, macro_f1 (over the labels in ``gold`` or ``predicted``), n and per-label scores."""
    if len(gold) != len(predicted) or not gold:
        raise ValueError("need as many predictions as gold labels, and at least one")
    per_label, f1s = {}, []
    for label in sorted(set(gold) | set(predicted)):
        tp = sum(g == label and p == label for g, p in zip(gold, predicted, strict=True))
        n_pred = sum(p == label for p in predicted)
        n_gold = sum(g == label for g in gold)
        precision = tp / n_pred if n_pred else 0.0
        recall = tp / n_gold if n_gold else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        f1s.append(f1)
        per_label[label] = {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4), "support": n_gold}
    accuracy = sum(g == p for g, p in zip(gold, predicted, strict=True)) / len(gold)
    macro_f1 = sum(f1s) / len(f1s)
    return {"accuracy": round(accuracy, 4), "macro_f1": round(macro_f1, 4), "n": len(gold), "per_label": per_label}


def format_table(result: dict) -> str:
    """The human-readable report."""
    emb = "e5 embeddings + text" if result.get("embeddings") else "text only (--no-embeddings)"
    if result.get("mode") == "best":
        members = result.get("members", 1)
        emb += (f", averaged with e5-small fine-tuned for {result['epochs']} epochs"
                + (f" ({members} encoders from different seeds)" if members > 1 else "")
                + (f", each first on {result['n_pretrain']} rows of {result.get('pretrain', 'other data')}" if result.get("n_pretrain") else ""))
    lines = [f"sentiment: trained on {result.get('train', 'train')} ({result['n_train']} rows), "
             f"tested on {result.get('test', 'test')} ({result['n']} rows); model: {emb}", ""]
    rows = [("accuracy", f"{result['accuracy']:.4f}"), ("macro_f1", f"{result['macro_f1']:.4f}"), ("n", str(result["n"])),
            ("ece", f"{result['ece']:.4f}" if "ece" in result else "-"), ("train_s", f"{result['train_s']:.2f}"),
            ("embed_s", f"{result['embed_s']:.2f}"), ("p50_ms", f"{result['p50_ms']:.2f}"), ("p95_ms", f"{result['p95_ms']:.2f}")]
    if result.get("mode") == "best":
        rows += [("fast_accuracy", f"{result['fast_accuracy']:.4f}"), ("fine_tuned_accuracy", f"{result['fine_tuned_accuracy']:.4f}"),
                 ("fine_tune_s", f"{result['fine_tune_s']:.1f}")]
    lines += [f"{name:<20}{value:>10}" for name, value in rows]
    lines += ["", f"{'label':<16}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>10}"]
    for label, s in result["per_label"].items():
        lines.append(f"{label[:16]:<16}{s['precision']:>10.4f}{s['recall']:>10.4f}{s['f1']:>10.4f}{s['support']:>10}")
    return "\n".join(lines)


# ------------------------------------------------------------------ embeddings


def _key(text: str) -> str:
    return hashlib.sha1(("e5q\n" + text).encode("utf-8")).hexdigest()


def _load_cache(cache_dir: Path) -> dict:
    import numpy as np

    found: dict = {}
    for shard in sorted(cache_dir.glob("[!.]*.npz")):
        try:
            with np.load(shard, allow_pickle=False) as z:
                found.update(zip(map(str, z["keys"]), z["vectors"], strict=True))
        except (OSError, ValueError, KeyError):
            continue  # a damaged shard: its texts are embedded again
    return found


def embed_texts(texts: Sequence[str], *, cache_dir: str | Path | None = None, what: str = "texts", batch: int = 128):
    """e5 query embeddings [n, 384] of the normalized texts (as NLU embeds a message), computed
    in this process; with ``cache_dir``, looked up there first and added there (one ``.npz``
    shard per call, written atomically). Progress goes to stderr."""
    import asyncio

    import numpy as np

    from services.embedding import LocalEmbedder
    from services.nlu.text import normalize

    normalized = [normalize(t) for t in texts]
    cache = Path(cache_dir) if cache_dir else None
    known = _load_cache(cache) if cache and cache.is_dir() else {}
    todo = sorted({t for t in normalized if _key(t) not in known}, key=len)
    bar = _ProgressBar(f"embedding {what}", len(todo))
    if todo:
        embedder = LocalEmbedder("torch")

        async def embed_all() -> np.ndarray:
            parts = []
            for start in range(0, len(todo), batch):
                parts.append(await embedder.embed_queries(todo[start:start + batch]))
                bar(min(start + batch, len(todo)))
            return np.concatenate(parts)

        vectors = asyncio.run(embed_all())
        fresh = dict(zip(map(_key, todo), vectors, strict=True))
        known.update(fresh)
        if cache:
            cache.mkdir(parents=True, exist_ok=True)
            tmp = cache / f".tmp-{uuid.uuid4().hex}.npz"
            np.savez(tmp, keys=np.array(list(fresh)), vectors=np.stack(list(fresh.values())).astype(np.float32))
            os.replace(tmp, cache / f"{uuid.uuid4().hex}.npz")
    return np.stack([known[_key(t)] for t in normalized]).astype(np.float32) if normalized else np.zeros((0, 384), np.float32)


class _ProgressBar:
    """``label [#####.....] done/total  12 s`` on stderr: redrawn in place on a terminal, a line per quarter otherwise."""

    def __init__(self, label: str, total: int) -> None:
        self.label, self.total, self.t0, self.shown = label, total, time.perf_counter(), -1
        self.tty = sys.stderr.isatty()

    def __call__(self, done: int) -> None:
        if not self.total:
            return
        quarter = 4 * done // self.total
        if not self.tty and quarter == self.shown:
            return
        self.shown = quarter
        filled = 30 * done // self.total
        line = f"{self.label} [{'#' * filled}{'.' * (30 - filled)}] {done}/{self.total} {time.perf_counter() - self.t0:.0f} s"
        end = "\n" if not self.tty or done >= self.total else ""
        print(("\r" if self.tty else "") + line, end=end, file=sys.stderr, flush=True)
