"""Exploration, not in the product: does the local Qwen2.5-0.5B help Banking77 intents?

    OMP_NUM_THREADS=2 PYTHONUNBUFFERED=1 .venv/bin/python bench/intent_llm_probe.py \
        [--layers 12] [--tune 4] [--epochs 4] [--with-e5] [--limit N] [--work /tmp/kefu-intents/data]

Banking77 split as ``bench/nlu_intents.py`` writes it (stratified 10% of train, seed 0, is the
report set; the other 9,002 are trained on). Recipe: ``bench/llm_probe.py``'s, with ``--layers``
frozen layers and ``--tune`` trained ones (77 classes); then report-set accuracy of the tuned
model alone and averaged 50/50 with kefu's fast intent model trained on all 9,002.
``--with-e5`` also fine-tunes e5-small as ``kefu eval intents --mode best`` does (5 epochs, ~20
min on 2 cores) and reports the equal-thirds average (fast model, fine-tuned e5, tuned Qwen
layers; weights fixed before any run). ``--limit N`` keeps N training and N/4 report messages
(a smoke run). Evaluation data only: the split goes to ``--work``, nothing else is written.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def read_split(path: Path) -> tuple[list[str], list[str]]:
    from services.nlu.datasets import read_labelled

    rows = read_labelled(path)
    return [r.text for r in rows], [r.label for r in rows]


async def fast_proba(train_texts: list[str], train_labels: list[str], texts: list[str], labels: list[str]) -> np.ndarray:
    """kefu's fast intent model (what the service trains) on the training texts; columns in ``labels`` order."""
    from services.embedding import LocalEmbedder
    from services.nlu.intents import LocalIntentModel
    from services.nlu.training import train_on_texts

    embedder = LocalEmbedder("torch")
    artifact = await train_on_texts(train_texts, train_labels, embedder.embed_queries, seed=0)
    x = np.asarray(await embedder.embed_queries(texts))
    p = LocalIntentModel(artifact).classify_now(x, texts).probabilities
    return np.asarray(p)[:, [list(artifact.labels).index(label) for label in labels]]


def main(argv: list[str] | None = None) -> int:
    from bench.llm_probe import add_probe_arguments

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/kefu-intents/data"), help="where the split is written")
    add_probe_arguments(ap, epochs=4, e5_minutes=20, rows="training and N/4 report messages")
    args = ap.parse_args(argv)
    from bench.llm_probe import UpperLayers
    from bench.nlu_intents import prepare
    from services.nlu.finetune import blend

    torch.set_num_threads(2)
    torch.manual_seed(0)
    train_path, test_path = prepare("banking77", args.work)
    train_texts, train_labels = read_split(train_path)
    test_texts, test_labels = read_split(test_path)
    if args.limit:
        train_texts, train_labels = train_texts[:args.limit], train_labels[:args.limit]
        test_texts, test_labels = test_texts[:args.limit // 4], test_labels[:args.limit // 4]
    labels = sorted(set(train_labels))
    index = {label: i for i, label in enumerate(labels)}
    y_train, y_test = np.array([index[v] for v in train_labels]), np.array([index.get(v, -1) for v in test_labels])
    qwen = UpperLayers(args.layers, args.tune, len(labels))
    x_train, x_test = qwen.states(train_texts, "train"), qwen.states(test_texts, "report set")
    qwen.train(x_train, y_train, args.epochs)
    tuned = qwen.proba(x_test)
    fast = asyncio.run(fast_proba(train_texts, train_labels, test_texts, labels))
    results = [("tuned Qwen layers alone", tuned), ("fast model alone", fast), ("average of both", blend(fast, tuned))]
    if args.with_e5:
        from services.nlu.finetune import fine_tune
        from services.nlu.intent_eval import best_settings

        e5 = fine_tune(train_texts, train_labels, best_settings(), progress=lambda line: print(line, flush=True))
        e5_p = e5.predict_proba(test_texts)[:, [e5.labels.index(label) for label in labels]]
        results += [("fine-tuned e5 alone", e5_p), ("fine-tuned e5 + fast (best mode's blend)", blend(fast, e5_p)),
                    ("equal thirds: fast + fine-tuned e5 + tuned Qwen layers", (fast + e5_p + tuned) / 3)]
    for name, p in results:
        print(f"report set ({len(y_test)}) {name}: {(p.argmax(1) == y_test).mean():.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
