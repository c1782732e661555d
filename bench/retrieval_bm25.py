"""Plain BM25 (kefu's analyzer) on InsuranceQA-zh: the baseline hybrid retrieval must beat.

    .venv/bin/python bench/retrieval_bm25.py [--data ../shared/data/insuranceqa_zh] [--split valid]

The answer pool (~27k) is the corpus; each question (zh against zh answers, en
against en answers) should find one of its listed answers. Evaluation data only:
read from ../shared, never shipped.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from services.knowledge.bm25 import BM25Index  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "insuranceqa_zh"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--split", default="valid", choices=("train", "valid"))
    args = parser.parse_args()
    answers = json.load(gzip.open(args.data / "answers.json.gz"))
    questions = list(json.load(gzip.open(args.data / f"{args.split}.json.gz")).values())
    print("| questions | recall@1 | recall@3 | recall@5 | search p50 | search p99 | index build |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for lang in ("zh", "en"):
        t0 = time.perf_counter()
        index = BM25Index().build([(k, v[lang]) for k, v in answers.items()])
        build_s = time.perf_counter() - t0
        recall = {1: 0, 3: 0, 5: 0}
        latencies = []
        for q in questions:
            t0 = time.perf_counter()
            hits = [doc_id for doc_id, _ in index.search(q[lang], 5)]
            latencies.append(time.perf_counter() - t0)
            for k in recall:
                recall[k] += any(h in q["answers"] for h in hits[:k])
        latencies.sort()
        n = len(questions)
        p50, p99 = latencies[n // 2] * 1e3, latencies[int(n * 0.99)] * 1e3
        print(f"| {lang} | {recall[1] / n:.3f} | {recall[3] / n:.3f} | {recall[5] / n:.3f} | {p50:.2f} ms | {p99:.2f} ms | {build_s:.1f} s |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
