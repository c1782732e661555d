"""Exploration, not in the product: does the local Qwen2.5-0.5B help ChnSentiCorp sentiment?

    OMP_NUM_THREADS=2 PYTHONUNBUFFERED=1 .venv/bin/python bench/sentiment_llm_probe.py \
        [--data ../shared/data] [--layers 12] [--tune 4] [--epochs 2] [--with-e5] [--limit N]

Recipe (docs/BENCHMARKS.md has the figures): ``bench/llm_probe.py``'s, with ``--layers`` frozen
layers and ``--tune`` trained ones over ChnSentiCorp train (two classes); finally dev accuracy of the
tuned model alone and averaged 50/50 with the TF-IDF-only sentiment model trained on all of
train. ``--with-e5`` also fine-tunes e5-small on all of train as ``kefu eval sentiment --mode
best`` does (3 epochs, seed 0, head + tail cut) and reports the three-way average in equal
thirds (TF-IDF, fine-tuned e5, tuned Qwen layers; weights fixed before any run). ``--limit N``
keeps N train and N/4 dev reviews (a smoke run). Evaluation data only: read from ../shared,
nothing written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def read_split(data: Path, split: str) -> tuple[list[str], np.ndarray]:
    from bench.nlu_sentiment import read_chnsenticorp

    rows = read_chnsenticorp(data, split)
    return [text for text, _ in rows], np.array([int(label) for _, label in rows])


def main(argv: list[str] | None = None) -> int:
    from bench.llm_probe import add_probe_arguments

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data", help="the shared data folder")
    add_probe_arguments(ap, epochs=2, e5_minutes=40, rows="train and N/4 dev reviews")
    args = ap.parse_args(argv)
    from bench.llm_probe import UpperLayers
    from services.nlu.finetune import blend
    from services.nlu.sentiment import SentimentModel

    torch.set_num_threads(2)
    torch.manual_seed(0)
    train_texts, y_train = read_split(args.data, "train")
    dev_texts, y_dev = read_split(args.data, "dev")
    if args.limit:
        train_texts, y_train = train_texts[:args.limit], y_train[:args.limit]
        dev_texts, y_dev = dev_texts[:args.limit // 4], y_dev[:args.limit // 4]
    qwen = UpperLayers(args.layers, args.tune, 2)
    x_train, x_dev = qwen.states(train_texts, "train"), qwen.states(dev_texts, "dev")
    qwen.train(x_train, y_train, args.epochs)
    tuned = qwen.proba(x_dev)
    fast = SentimentModel.train(train_texts, [str(v) for v in y_train], None, seed=0)
    fast_p = fast.predict_proba(dev_texts, None)[:, [fast.labels.index("0"), fast.labels.index("1")]]
    results = [("tuned Qwen layers alone", tuned), ("TF-IDF model alone", fast_p), ("average of both", blend(fast_p, tuned))]
    if args.with_e5:
        from services.nlu.finetune import fine_tune
        from services.nlu.sentiment_eval import best_settings
        from services.nlu.text import normalize

        e5 = fine_tune([normalize(t) for t in train_texts], [str(v) for v in y_train], best_settings(),
                       progress=lambda line: print(line, flush=True))
        e5_p = e5.predict_proba([normalize(t) for t in dev_texts])[:, [e5.labels.index("0"), e5.labels.index("1")]]
        results += [("fine-tuned e5 alone", e5_p), ("fine-tuned e5 + TF-IDF (best mode's blend)", blend(fast_p, e5_p)),
                    ("equal thirds: TF-IDF + fine-tuned e5 + tuned Qwen layers", (fast_p + e5_p + tuned) / 3)]
    for name, pr in results:
        print(f"dev ({len(y_dev)}) {name}: {(pr.argmax(1) == y_dev).mean():.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
