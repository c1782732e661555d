"""Sentiment benchmark: ChnSentiCorp, TweetEval sentiment and the demo store's own examples.

    OMP_NUM_THREADS=2 .venv/bin/python bench/nlu_sentiment.py [--data ../shared/data] [--out /tmp/kefu-bench-sentiment] [--best]

Converts the public data into ``text,label`` files under ``--out`` (never in the repository),
then runs exactly what ``kefu eval sentiment --train T --test E`` runs
(``services.nlu.sentiment_eval.evaluate``), with and without e5 embeddings, and prints a
Markdown table and the equivalent commands. e5 embeddings are cached in ``--out/embeddings``
(the first run embeds ~13k texts: several minutes on 2 cores; later runs reuse them).

Splits (official test splits are not used; they are not here):

- ChnSentiCorp (zh, 2 labels): train on ``train.tsv`` (9,600), report on ``dev.tsv`` (1,200).
  Hyper-parameters were chosen on a 10% part carved from train, not on dev.
- TweetEval sentiment (en, 3 labels): only its ``val`` split (2,000 tweets) is here, so it is
  cut into 5 stratified folds (numpy ``default_rng(20250101)``, per label shuffled, dealt round
  robin); each fold is tested once by a model trained on the other four (1,600 / 400). The
  table gives the mean over the folds (and the spread).
- Demo store (zh + en, 3 labels): ``services/demo/pack/sentiment.yaml`` (kefu's own data, what
  the product model is trained on), 5-fold cross-validation repeated with 3 seeds; also the
  Spearman correlation between the dissatisfaction score (out-of-fold) and the file's
  hand-written ``anger`` annotations of the negative messages.

- ``--best --pretrain``: each fine-tuned encoder first learns other Chinese reviews for one
  epoch (``online_shopping_10_cats`` train without its 计算机, 书籍 and 酒店 categories, which
  share texts with ChnSentiCorp, plus ``waimai_10k`` train; any text that also occurs in
  ChnSentiCorp's train or dev is dropped), then ChnSentiCorp train; the fast model sees
  ChnSentiCorp train only.

Evaluation data only: read from ../shared, written to /tmp, never shipped.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEFAULT_DATA = ROOT.parent / "shared" / "data"
TWEETEVAL_FOLDS = 5
TWEETEVAL_SEED = 20250101


def _write_csv(path: Path, rows: list[tuple[str, str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    return path


def read_chnsenticorp(data: Path, split: str) -> list[tuple[str, str]]:
    """(text, label) rows of ``chnsenticorp/{split}.tsv`` (``label<TAB>text_a``; 0 = negative, 1 = positive), empty texts left out."""
    lines = (data / "chnsenticorp" / f"{split}.tsv").read_text(encoding="utf-8").splitlines()[1:]
    rows = [(text.strip(), label) for label, text in (line.split("\t", 1) for line in lines if line.strip())]
    return [r for r in rows if r[0]]


def convert_chnsenticorp(data: Path, out: Path) -> tuple[Path, Path]:
    """train.tsv / dev.tsv -> CSV text,label."""
    train, dev = (_write_csv(out / f"chnsenticorp_{split}.csv", read_chnsenticorp(data, split)) for split in ("train", "dev"))
    return train, dev


def convert_tweeteval(data: Path, out: Path) -> list[tuple[Path, Path]]:
    """sentiment/val_* -> 5 stratified (train, test) CSV pairs; labels by mapping.txt (negative/neutral/positive)."""
    import numpy as np

    folder = data / "tweeteval_sentiment" / "sentiment"
    mapping = dict(line.split("\t") for line in (folder / "mapping.txt").read_text().splitlines() if line.strip())
    texts = (folder / "val_text.txt").read_text(encoding="utf-8").splitlines()
    labels = [mapping[x.strip()] for x in (folder / "val_labels.txt").read_text().splitlines() if x.strip()]
    assert len(texts) == len(labels), "val_text.txt and val_labels.txt differ in length"
    rng = np.random.default_rng(TWEETEVAL_SEED)
    fold_of = np.zeros(len(labels), dtype=int)
    for label in sorted(set(labels)):
        members = np.array([i for i, x in enumerate(labels) if x == label])
        rng.shuffle(members)
        fold_of[members] = np.arange(len(members)) % TWEETEVAL_FOLDS
    pairs = []
    for k in range(TWEETEVAL_FOLDS):
        train = [(texts[i].strip(), labels[i]) for i in range(len(texts)) if fold_of[i] != k and texts[i].strip()]
        test = [(texts[i].strip(), labels[i]) for i in range(len(texts)) if fold_of[i] == k and texts[i].strip()]
        pairs.append((_write_csv(out / f"tweeteval_fold{k}_train.csv", train), _write_csv(out / f"tweeteval_fold{k}_test.csv", test)))
    return pairs


# online_shopping_10_cats categories whose reviews also occur in ChnSentiCorp (284–315 shared texts each)
SHARED_WITH_CHNSENTICORP = {"计算机", "书籍", "酒店"}


def convert_other_reviews(data: Path, out: Path, avoid: list[Path]) -> Path:
    """Chinese reviews of other products, labels 0/1 as ChnSentiCorp's, none of them in ``avoid``'s texts."""
    from services.nlu.datasets import read_labelled
    from services.nlu.text import normalize

    seen = {normalize(r.text) for path in avoid for r in read_labelled(path)}
    rows: list[tuple[str, str]] = []
    with (data / "online_shopping_10_cats" / "train.csv").open(encoding="utf-8-sig", newline="") as f:
        rows += [(r["review"].replace("\ufeff", "").strip(), r["label"]) for r in csv.DictReader(f) if r["cat"] not in SHARED_WITH_CHNSENTICORP]
    with (data / "waimai_10k" / "train.csv").open(encoding="utf-8-sig", newline="") as f:
        rows += [(r["review"].replace("\ufeff", "").strip(), r["label"]) for r in csv.DictReader(f)]
    kept = [(text, label) for text, label in rows if text and label in ("0", "1") and normalize(text) not in seen]
    print(f"[bench] other reviews for --pretrain: {len(kept)} of {len(rows)} ({len(rows) - len(kept)} empty or also in ChnSentiCorp)",
          file=sys.stderr, flush=True)
    return _write_csv(out / "other_reviews_pretrain.csv", kept)


def _run(train: Path, test: Path, embeddings: bool, cache: Path, mode: str = "fast", members: int = 1,
         pretrain: Path | None = None) -> dict:
    from services.nlu.datasets import read_labelled
    from services.nlu.sentiment_eval import evaluate

    tr, te = read_labelled(train), read_labelled(test)
    before = None
    if pretrain is not None:
        rows = read_labelled(pretrain)
        before = ([r.text for r in rows], [r.label for r in rows])
    return evaluate([r.text for r in tr], [r.label for r in tr], [r.text for r in te], [r.label for r in te],
                    embeddings=embeddings, cache_dir=cache, mode=mode, members=members, pretrain=before)


def pack_cross_validation(cache: Path, folds: int = 5, seeds: tuple[int, ...] = (0, 1, 2)) -> dict:
    """Out-of-fold accuracy of the product model's recipe on the pack's own examples."""
    import numpy as np
    from scipy.stats import spearmanr

    from services.nlu.dissatisfaction import anger_cues, dissatisfaction_score
    from services.nlu.sentiment import SentimentModel, _stratified_folds, expected_calibration_error
    from services.nlu.sentiment_pack import PACK_FILE, read_sentiment_pack
    from services.nlu.sentiment_eval import embed_texts

    messages = read_sentiment_pack(ROOT / "services" / "demo" / "pack" / PACK_FILE)
    texts, labels = [m.text for m in messages], [m.label for m in messages]
    langs = np.array([m.language for m in messages])
    names = sorted(set(labels))
    y = np.array([names.index(x) for x in labels])
    emb = embed_texts(texts, cache_dir=cache, what="pack")
    out: dict = {"n": len(texts)}
    for use in (True, False):
        accs, by_lang, eces, rhos = [], {"zh": [], "en": []}, [], []
        for seed in seeds:
            fold_of = _stratified_folds(y, folds, 1000 + seed)
            probs = np.zeros((len(y), len(names)))
            for f in range(folds):
                tr, te = np.flatnonzero(fold_of != f), np.flatnonzero(fold_of == f)
                model = SentimentModel.train([texts[i] for i in tr], [labels[i] for i in tr], emb[tr] if use else None, seed=seed)
                probs[te] = model.predict_proba([texts[i] for i in te], emb[te] if use else None)
            hit = probs.argmax(axis=1) == y
            accs.append(hit.mean())
            for lang in by_lang:
                by_lang[lang].append(hit[langs == lang].mean())
            eces.append(expected_calibration_error(probs, y))
            neg = [i for i, m in enumerate(messages) if m.anger is not None]
            scores = [dissatisfaction_score(probs[i, names.index("negative")], anger_cues(texts[i])) for i in neg]
            rhos.append(spearmanr(scores, [messages[i].anger for i in neg]).statistic)
        out["embeddings" if use else "text_only"] = {
            "accuracy": statistics.mean(accs), "accuracy_per_seed": [round(a, 4) for a in accs],
            "zh": statistics.mean(by_lang["zh"]), "en": statistics.mean(by_lang["en"]), "ece": statistics.mean(eces),
            "spearman_dissatisfaction_anger": statistics.mean(rhos),
        }
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the shared evaluation data folder")
    parser.add_argument("--out", type=Path, default=Path("/tmp/kefu-bench-sentiment"), help="converted files and embedding cache")
    parser.add_argument("--skip-pack", action="store_true", help="leave out the demo store's cross-validation")
    parser.add_argument("--best", action="store_true",
                        help="also run ChnSentiCorp in --mode best (fine-tunes e5-small: ~25 min per member on 2 cores)")
    parser.add_argument("--members", type=int, default=1, help="with --best: fine-tuned encoders to average (default 1)")
    parser.add_argument("--pretrain", action="store_true",
                        help="with --best: each encoder first learns ~45k other Chinese reviews for one epoch (~15 min more per member)")
    parser.add_argument("--best-only", action="store_true", help="with --best: only the ChnSentiCorp best-mode row")
    args = parser.parse_args()
    cache = args.out / "embeddings"

    csc_train, csc_dev = convert_chnsenticorp(args.data, args.out)
    tw_pairs = convert_tweeteval(args.data, args.out)
    pretrain = convert_other_reviews(args.data, args.out, [csc_train, csc_dev]) if args.best and args.pretrain else None
    rows = []
    for embeddings in (() if args.best and args.best_only else (True, False)):
        r = _run(csc_train, csc_dev, embeddings, cache)
        rows.append(("ChnSentiCorp (zh, 2 labels): train -> dev", embeddings, str(r["n_train"]), str(r["n"]),
                     f"{r['accuracy']:.4f}", f"{r['macro_f1']:.4f}", f"{r['ece']:.3f}", f"{r['train_s']:.1f}", f"{r['p50_ms']:.2f}"))
        print(f"[bench] chnsenticorp embeddings={embeddings}: {r['accuracy']:.4f}", file=sys.stderr, flush=True)
        folds = [_run(tr, te, embeddings, cache) for tr, te in tw_pairs]

        def spread(key: str, folds: list[dict] = folds) -> str:
            values = [f[key] for f in folds]
            return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"

        rows.append((f"TweetEval sentiment (en, 3 labels): val, {TWEETEVAL_FOLDS}-fold CV", embeddings,
                     str(folds[0]["n_train"]), f"{folds[0]['n']} x {len(folds)}", spread("accuracy"), spread("macro_f1"),
                     f"{statistics.mean(f['ece'] for f in folds):.3f}", f"{statistics.mean(f['train_s'] for f in folds):.1f}",
                     f"{statistics.median(f['p50_ms'] for f in folds):.2f}"))
        print(f"[bench] tweeteval embeddings={embeddings}: {spread('accuracy')}", file=sys.stderr, flush=True)

    if args.best:
        r = _run(csc_train, csc_dev, True, cache, mode="best", members=args.members, pretrain=pretrain)
        rows.append(("ChnSentiCorp (zh, 2 labels): train -> dev", "best", str(r["n_train"]), str(r["n"]), f"{r['accuracy']:.4f}",
                     f"{r['macro_f1']:.4f}", f"{r['ece']:.3f}", f"{r['train_s'] + r['fine_tune_s']:.1f}", f"{r['p50_ms']:.2f}"))
        print(f"[bench] chnsenticorp best: {r['accuracy']:.4f} (fast {r['fast_accuracy']:.4f}, fine-tuned alone "
              f"{r['fine_tuned_accuracy']:.4f})", file=sys.stderr, flush=True)

    print("| dataset | model | train n | test n | accuracy | macro-F1 | ECE | train s | p50 ms |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, embeddings, n_train, n_test, acc, f1, ece, train_s, p50 in rows:
        model = (f"e5 + TF-IDF, stacked, averaged with fine-tuned e5-small (--mode best --members {args.members}"
                 + (f" --pretrain: {r['n_pretrain']} other reviews first)" if pretrain else ")")
                 if embeddings == "best" else
                 "e5 + TF-IDF, stacked" if embeddings else "TF-IDF only (--no-embeddings)")
        print(f"| {name} | {model} | {n_train} | {n_test} | {acc} | {f1} | {ece} | {train_s} | {p50} |")
    print("\np50 ms: one message at a time, its e5 embedding given (the NLU service has it already); train s excludes embedding;"
          " in the best row it includes fine-tuning, and p50 the fine-tuned encoder's forward pass.")

    if not args.skip_pack and not (args.best and args.best_only):
        cv = pack_cross_validation(cache)
        print(f"\nDemo store model (services/demo/pack/sentiment.yaml, {cv['n']} messages), 5-fold CV x 3 seeds:\n")
        print("| model | accuracy | zh | en | ECE | Spearman(dissatisfaction, anger) |")
        print("|---|---|---|---|---|---|")
        for key, label in (("embeddings", "e5 + TF-IDF, stacked"), ("text_only", "TF-IDF only")):
            c = cv[key]
            print(f"| {label} | {c['accuracy']:.4f} ({', '.join(map(str, c['accuracy_per_seed']))}) | {c['zh']:.4f} | {c['en']:.4f} "
                  f"| {c['ece']:.3f} | {c['spearman_dissatisfaction_anger']:.3f} |")

    print("\nCommands (same code path):\n")
    print(f"    .venv/bin/kefu eval sentiment --train {csc_train} --test {csc_dev} --cache {cache} [--json] [--no-embeddings]")
    print(f"    .venv/bin/kefu eval sentiment --train {csc_train} --test {csc_dev} --cache {cache} --mode best [--json]"
          + (f" --members {args.members} --pretrain {pretrain}" if pretrain else ""))
    for k, (tr, te) in enumerate(tw_pairs):
        print(f"    .venv/bin/kefu eval sentiment --train {tr} --test {te} --cache {cache} [--json] [--no-embeddings]  # fold {k}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
