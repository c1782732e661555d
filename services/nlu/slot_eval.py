"""Train the CRF slot tagger on TRAIN and report slot F1 and exact match on TEST.

Both files are JSONL, one sentence a line: ``{"tokens": [...], "tags": [...]}`` in BIO
(BIOES is read as BIO). Reported:

* ``slot_f1`` (with ``precision`` and ``recall``): conlleval-style span F1, micro-averaged:
  a predicted span counts only when its tokens and its type both match a gold span;
* ``exact_match``: share of TEST sentences whose predicted span set equals the gold one;
* ``n``: TEST sentences; ``n_train``; ``train_s``: training time (features + CRF);
  ``p50_ms`` / ``p95_ms``: time to tag one sentence (features + Viterbi), median and 95th
  percentile over TEST.

A table by default, one JSON object with ``--json``. Progress goes to stderr. A file that
cannot be read ends the command with its message and exit status 2.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

from services.nlu.datasets import DatasetError, TaggedTokens, read_tagged

DEFAULT_C1 = 0.05
DEFAULT_C2 = 0.01
DEFAULT_ITERATIONS = 150


@dataclass
class SlotReport:
    n: int
    n_train: int
    slot_f1: float
    precision: float
    recall: float
    exact_match: float
    train_s: float
    p50_ms: float
    p95_ms: float
    gold_spans: int
    predicted_spans: int


def span_scores(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> dict[str, float]:
    """Micro precision / recall / F1 over typed spans and the exact-match rate of sentences."""
    from services.nlu.slots import spans

    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold sequences but {len(predicted)} predicted")
    correct = n_gold = n_pred = exact = 0
    for g_tags, p_tags in zip(gold, predicted, strict=True):
        g = {(s.type, s.start, s.end) for s in spans(None, g_tags)}
        p = {(s.type, s.start, s.end) for s in spans(None, p_tags)}
        correct += len(g & p)
        n_gold += len(g)
        n_pred += len(p)
        exact += g == p
    precision = correct / n_pred if n_pred else (1.0 if not n_gold else 0.0)
    recall = correct / n_gold if n_gold else (1.0 if not n_pred else 0.0)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "precision": precision,
        "recall": recall,
        "slot_f1": f1,
        "exact_match": exact / len(gold) if gold else 0.0,
        "gold_spans": n_gold,
        "predicted_spans": n_pred,
    }


def evaluate(
    train: Sequence[TaggedTokens],
    test: Sequence[TaggedTokens],
    *,
    c1: float = DEFAULT_C1,
    c2: float = DEFAULT_C2,
    iterations: int = DEFAULT_ITERATIONS,
    options=None,
    progress: Callable[[str], None] | None = None,
) -> SlotReport:
    """Train on ``train``, tag ``test`` one sentence at a time, score. The code path of ``kefu eval slots``."""
    from services.nlu.slots import SlotTagger

    t0 = time.perf_counter()
    tagger = SlotTagger.train(train, c1=c1, c2=c2, max_iterations=iterations, options=options, progress=progress)
    train_s = time.perf_counter() - t0
    if progress:
        progress(f"trained in {train_s:.1f} s; tagging {len(test)} sentences")
    predicted: list[list[str]] = []
    latencies: list[float] = []
    for seq in test:
        t = time.perf_counter()
        predicted.append(tagger.tag(seq.tokens))
        latencies.append(time.perf_counter() - t)
    scores = span_scores([s.tags for s in test], predicted)
    latencies.sort()
    return SlotReport(
        n=len(test),
        n_train=len(train),
        slot_f1=scores["slot_f1"],
        precision=scores["precision"],
        recall=scores["recall"],
        exact_match=scores["exact_match"],
        train_s=train_s,
        p50_ms=latencies[len(latencies) // 2] * 1e3,
        p95_ms=latencies[min(len(latencies) - 1, int(len(latencies) * 0.95))] * 1e3,
        gold_spans=int(scores["gold_spans"]),
        predicted_spans=int(scores["predicted_spans"]),
    )


def add_arguments(parser) -> None:
    parser.add_argument("--train", required=True, help="BIO JSONL to train on")
    parser.add_argument("--test", required=True, help="BIO JSONL to report on")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--c1", type=float, default=DEFAULT_C1, help=f"L1 penalty (default {DEFAULT_C1})")
    parser.add_argument("--c2", type=float, default=DEFAULT_C2, help=f"L2 penalty (default {DEFAULT_C2})")
    parser.add_argument(
        "--iterations", type=int, default=DEFAULT_ITERATIONS, help=f"most L-BFGS iterations (default {DEFAULT_ITERATIONS})"
    )


def _progress(message: str) -> None:
    print(f"kefu eval slots: {message}", file=sys.stderr, flush=True)


def run(args) -> int:
    if args.iterations < 1 or args.c1 < 0 or args.c2 < 0:
        print("kefu eval slots: --iterations must be >= 1 and --c1, --c2 >= 0", file=sys.stderr)
        return 2
    try:
        train = read_tagged(args.train)
        test = read_tagged(args.test)
    except DatasetError as exc:
        print(f"kefu eval slots: {exc}", file=sys.stderr)
        return 2
    _progress(f"training on {len(train)} sentences ({args.train})")
    report = evaluate(train, test, c1=args.c1, c2=args.c2, iterations=args.iterations, progress=_progress)
    if args.json:
        print(json.dumps(asdict(report)))
    else:
        print(format_table(report))
    return 0


def format_table(report: SlotReport) -> str:
    rows = [
        ("n", f"{report.n}"),
        ("n_train", f"{report.n_train}"),
        ("slot_f1", f"{report.slot_f1:.4f}"),
        ("precision", f"{report.precision:.4f}"),
        ("recall", f"{report.recall:.4f}"),
        ("exact_match", f"{report.exact_match:.4f}"),
        ("train_s", f"{report.train_s:.2f}"),
        ("p50_ms", f"{report.p50_ms:.3f}"),
        ("p95_ms", f"{report.p95_ms:.3f}"),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
