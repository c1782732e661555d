"""Intent-classification benchmark: Banking77, CLINC150 (with out-of-scope) and SMP-ECDT 2020 (zh).

Writes each benchmark's train / report split as JSONL under ``--work`` (default
``/tmp/kefu-intents/data``; the public data is evaluation data and never enters the
repository) and runs ``kefu eval intents`` on it, the same code path as the CLI, then
prints a markdown table and the commands that reproduce each row.

Splits (only train / dev data is used; the official test splits are not here):

* ``banking77``: ``banking_data/train.csv`` has no dev split, so a stratified 10% is
  carved out with seed 0 as the report set and the other 90% is trained on;
* ``clinc150``: ``data_full.json`` — train + oos_train (label ``oos``) → val + oos_val;
* ``smp2020``: ``GlobalPointerSMP2020`` train → dev (the ``intent`` field).

Every threshold and hyper-parameter the classifier uses is chosen inside training, by
cross-validation on the train file only.

    .venv/bin/python bench/nlu_intents.py                 # all three, fast mode
    .venv/bin/python bench/nlu_intents.py --only clinc150 --json
    .venv/bin/python bench/nlu_intents.py --grid           # the hyper-parameter choice, on train only
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

DATA = Path(os.environ.get("KEFU_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = ("banking77", "clinc150", "smp2020")


def _write(path: Path, rows: list[tuple[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for text, label in rows:
            f.write(json.dumps({"text": text, "label": label}, ensure_ascii=False) + "\n")


def _stratified_holdout(rows: list[tuple[str, str]], fraction: float, seed: int) -> tuple[list, list]:
    """(train, held out): ``fraction`` of each label, chosen with ``seed`` (sklearn's stratified split)."""
    from sklearn.model_selection import train_test_split

    train, held = train_test_split(rows, test_size=fraction, random_state=seed, stratify=[label for _, label in rows])
    return list(train), list(held)


def prepare(name: str, work: Path) -> tuple[Path, Path]:
    """Write ``<work>/<name>.train.jsonl`` and ``<work>/<name>.test.jsonl``; returns their paths."""
    train_path, test_path = work / f"{name}.train.jsonl", work / f"{name}.test.jsonl"
    if name == "banking77":
        with (DATA / "banking77" / "banking_data" / "train.csv").open(encoding="utf-8", newline="") as f:
            rows = [(r["text"].strip(), r["category"].strip()) for r in csv.DictReader(f)]
        train, test = _stratified_holdout(rows, 0.1, seed=0)
    elif name == "clinc150":
        full = json.loads((DATA / "clinc150" / "data" / "data_full.json").read_text(encoding="utf-8"))
        train = [(t, lab) for t, lab in full["train"]] + [(t, "oos") for t, _ in full["oos_train"]]
        test = [(t, lab) for t, lab in full["val"]] + [(t, "oos") for t, _ in full["oos_val"]]
    elif name == "smp2020":
        folder = DATA / "smp_ecdt_2019_2020" / "GlobalPointer" / "GlobalPointerSMP2020"

        def read(split: str) -> list[tuple[str, str]]:
            return [(r["text"].strip(), r["intent"]) for r in json.loads((folder / f"{split}.json").read_text(encoding="utf-8"))]

        train, test = read("train"), read("dev")
    else:
        raise ValueError(f"unknown benchmark {name!r}")
    _write(train_path, train)
    _write(test_path, test)
    return train_path, test_path


GRID = ((1.5, 1.0), (1.0, 1.0), (2.0, 1.0), (1.5, 0.5), (1.5, 2.0))  # (e5_weight, C)


def cv_grid(name: str, train_path: Path, folds: int = 3) -> None:
    """3-fold cross-validated accuracy of the classifier on the TRAIN file only, for each
    (e5_weight, C) of GRID: how the defaults in services/nlu/training.py were chosen."""
    import asyncio

    import numpy as np
    import scipy.sparse as sp

    from services.embedding import LocalEmbedder
    from services.nlu.datasets import read_labelled
    from services.nlu.training import _fit_svm, _stratified_folds
    from services.serving.intent_model import TermVectorizer

    rows = read_labelled(train_path)
    texts, names = [r.text for r in rows], sorted({r.label for r in rows})
    y = np.array([names.index(r.label) for r in rows])
    x = asyncio.run(LocalEmbedder("torch").embed_queries(texts))
    terms = TermVectorizer.fit(texts, min_df=2 if len(texts) >= 5000 else 1).transform(texts)
    mean = x.mean(axis=0)
    scale = float(np.linalg.norm(x - mean, axis=1).mean())
    fold = _stratified_folds(y, folds, np.random.default_rng(0))
    for e5_weight, c in GRID:
        features = sp.hstack([terms, sp.csr_matrix((x - mean) * (e5_weight / scale))], format="csr")
        right = 0
        for f in range(folds):
            w, b = _fit_svm(features[fold != f], y[fold != f], len(names), c=c, seed=0)
            right += int((np.asarray(features[fold == f] @ w + b).argmax(axis=1) == y[fold == f]).sum())
        print(f"| {name} | {e5_weight} | {c} | {right / len(y):.4f} |", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", choices=BENCHMARKS, action="append", help="run only these (repeatable)")
    ap.add_argument("--mode", default="fast", choices=("fast", "best"),
                    help="the classifier mode passed to kefu eval intents (best fine-tunes e5-small, and all-mpnet-base-v2 "
                         "on English sets: ~45 min for Banking77)")
    ap.add_argument("--members", type=int, default=1, help="best mode: fine-tuned encoders to average (default 1)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/kefu-intents/data"))
    ap.add_argument("--prepare-only", action="store_true", help="write the splits and stop")
    ap.add_argument("--json", action="store_true", help="print the results as one JSON object")
    ap.add_argument("--grid", action="store_true", help="cross-validate the hyper-parameter grid on the TRAIN files only")
    args = ap.parse_args()
    if args.grid:
        print("| benchmark (train, 3-fold CV) | e5_weight | C | accuracy |\n|---|---|---|---|")
        for name in args.only or BENCHMARKS:
            cv_grid(name, prepare(name, args.work)[0])
        return 0
    rows, commands = {}, {}
    for name in args.only or BENCHMARKS:
        train, test = prepare(name, args.work)
        cmd = [sys.executable, "-m", "services.cli", "eval", "intents", "--train", str(train), "--test", str(test),
               "--mode", args.mode, "--json"]
        commands[name] = " ".join(["kefu", "eval", "intents", "--train", str(train), "--test", str(test), "--mode", args.mode])
        if args.mode == "best" and args.members != 1:
            cmd[-1:-1] = ["--members", str(args.members)]
            commands[name] += f" --members {args.members}"
        if args.prepare_only:
            continue
        print(f"[bench] {name}: {commands[name]}", file=sys.stderr)
        t0 = time.perf_counter()
        out = subprocess.run(cmd, cwd=REPO, stdout=subprocess.PIPE, text=True, check=False)
        if out.returncode != 0:
            print(f"[bench] {name} failed with exit code {out.returncode}", file=sys.stderr)
            return out.returncode
        rows[name] = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"[bench] {name}: {rows[name]} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    if args.prepare_only:
        print("\n".join(commands.values()))
        return 0
    if args.json:
        print(json.dumps(rows, ensure_ascii=False))
        return 0
    cols = ("n", "accuracy", "macro_f1", "in_scope_accuracy", "oos_recall", "p50_ms", "train_s")
    if args.mode == "best":
        cols += ("fast_accuracy", "fine_tuned_accuracy", "english_encoder_accuracy", "fine_tune_s")
    print("| benchmark (mode " + args.mode + ") | " + " | ".join(cols) + " |")
    print("|---|" + "---|" * len(cols))
    for name, r in rows.items():
        cells = []
        for c in cols:
            v = r.get(c)
            cells.append("–" if v is None else f"{v:.4f}" if isinstance(v, float) and c not in ("p50_ms", "train_s", "fine_tune_s") else
                         f"{v:.1f}" if isinstance(v, float) else str(v))
        print(f"| {name} | " + " | ".join(cells) + " |")
    print()
    for name, cmd in commands.items():
        print(f"- {name}: `{cmd}`")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
