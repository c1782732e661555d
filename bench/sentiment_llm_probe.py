"""Exploration, not in the product: does the local Qwen2.5-0.5B help ChnSentiCorp sentiment?

    OMP_NUM_THREADS=2 PYTHONUNBUFFERED=1 .venv/bin/python bench/sentiment_llm_probe.py \
        [--data ../shared/data] [--layers 12] [--tune 4] [--epochs 2] [--with-e5] [--limit N]

Recipe (docs/BENCHMARKS.md has the figures): run the first ``--layers`` decoder layers of the
local model (``make models`` converts it; its final norm left out) once over every review of
ChnSentiCorp train and dev (head 160 + tail 96 tokens of a longer one, batches of similar
length, bf16 autocast) and keep those hidden states in memory; then train the next ``--tune``
pretrained layers, the norm, mean pooling and a linear head on them (AdamW, lr 5e-5 for the
layers and 1e-3 for the head, warm-up 6% then linear decay, batch 16) on 90% of train, the other
10% (numpy ``default_rng(20250101)``) reported after each epoch; finally dev accuracy of the
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
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

HEAD, TAIL, H = 160, 96, 896


def read_split(data: Path, split: str) -> tuple[list[str], np.ndarray]:
    from bench.nlu_sentiment import read_chnsenticorp

    rows = read_chnsenticorp(data, split)
    return [text for text, _ in rows], np.array([int(label) for _, label in rows])


def lower_states(model, tok, texts: list[str], what: str) -> list[np.ndarray]:
    """Hidden states (fp16, [tokens, H]) after the model's kept layers, one array per text."""
    ids = []
    for text in texts:
        x = tok(text)["input_ids"]
        ids.append(x[:HEAD] + x[-TAIL:] if len(x) > HEAD + TAIL else x)
    order, out, i, t0 = np.argsort([len(x) for x in ids]), [None] * len(ids), 0, time.time()
    while i < len(order):
        rows = order[i:i + max(1, 2048 // max(1, len(ids[order[min(i + 1, len(order) - 1)]])))]
        i += len(rows)
        L = max(len(ids[j]) for j in rows)
        inp, att = torch.zeros((len(rows), L), dtype=torch.long), torch.zeros((len(rows), L), dtype=torch.long)
        for r, j in enumerate(rows):
            inp[r, :len(ids[j])], att[r, :len(ids[j])] = torch.tensor(ids[j]), 1
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            h = model(input_ids=inp, attention_mask=att, use_cache=False).last_hidden_state.float().numpy()
        for r, j in enumerate(rows):
            out[j] = h[r, :len(ids[j])].astype(np.float16)
        print(f"{what}: {i}/{len(ids)} texts, {time.time() - t0:.0f} s", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--layers", type=int, default=12, help="frozen lower layers, run once (default 12)")
    ap.add_argument("--tune", type=int, default=4, help="layers above them that are trained (default 4)")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--with-e5", action="store_true",
                    help="also fine-tune e5-small (~40 min on 2 cores) and report the equal-thirds average")
    ap.add_argument("--limit", type=int, default=0, help="smoke run: N train and N/4 dev reviews")
    args = ap.parse_args(argv)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from services.config import load_config
    from services.nlu.finetune import blend
    from services.nlu.sentiment import SentimentModel
    from services.serving.model_files import llm_dir

    torch.set_num_threads(2)
    torch.manual_seed(0)
    train_texts, y_train = read_split(args.data, "train")
    dev_texts, y_dev = read_split(args.data, "dev")
    if args.limit:
        train_texts, y_train = train_texts[:args.limit], y_train[:args.limit]
        dev_texts, y_dev = dev_texts[:args.limit // 4], y_dev[:args.limit // 4]
    folder = llm_dir(load_config())
    tok = AutoTokenizer.from_pretrained(folder)
    body = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).model
    top = torch.nn.ModuleList(list(body.layers)[args.layers:args.layers + args.tune])
    body.layers, norm = torch.nn.ModuleList(list(body.layers)[:args.layers]), body.norm
    body.norm = torch.nn.Identity()
    body.eval()
    x_train, x_dev = lower_states(body, tok, train_texts, "train"), lower_states(body, tok, dev_texts, "dev")
    body.layers, body.norm, body.embed_tokens = top, norm, None  # now: the trained upper part
    body.config.num_hidden_layers = args.tune
    head = torch.nn.Linear(H, 2)

    def logits(x: list[np.ndarray], rows) -> torch.Tensor:
        L = max(len(x[j]) for j in rows)
        e, a = torch.zeros(len(rows), L, H), torch.zeros(len(rows), L, dtype=torch.long)
        for r, j in enumerate(rows):
            e[r, :len(x[j])], a[r, :len(x[j])] = torch.from_numpy(x[j].astype(np.float32)), 1
        with torch.autocast("cpu", dtype=torch.bfloat16):
            h = body(inputs_embeds=e, attention_mask=a, use_cache=False).last_hidden_state.float()
        m = a.unsqueeze(-1).float()
        return head((h * m).sum(1) / m.sum(1))

    def proba(x: list[np.ndarray], rows) -> np.ndarray:
        body.eval()
        order, out = sorted(rows, key=lambda j: len(x[j])), np.zeros((len(x), 2))
        with torch.no_grad():
            for i in range(0, len(order), 32):
                out[order[i:i + 32]] = torch.softmax(logits(x, order[i:i + 32]), -1).numpy()
        body.train()
        return out

    rng = np.random.default_rng(20250101)
    perm = rng.permutation(len(x_train))
    val, fit = perm[:len(perm) // 10], perm[len(perm) // 10:]
    opt = torch.optim.AdamW([{"params": list(body.parameters()), "lr": 5e-5}, {"params": list(head.parameters()), "lr": 1e-3}],
                            weight_decay=0.01)
    steps = max(1, args.epochs * (len(fit) // 16))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, s / (0.06 * steps)) * max(0.0, (steps - s) / steps))
    body.train()
    t0 = time.time()
    for epoch in range(1, args.epochs + 1):
        p, batches = rng.permutation(fit), []
        for i in range(0, len(p), 16 * 50):  # runs of 50 batches sorted by length
            run = sorted(p[i:i + 800], key=lambda j: len(x_train[j]))
            batches += [run[k:k + 16] for k in range(0, len(run), 16)]
        rng.shuffle(batches)
        for n, rows in enumerate(batches, 1):
            loss = torch.nn.functional.cross_entropy(logits(x_train, rows), torch.from_numpy(y_train[rows]))
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(body.parameters(), 1.0)
            opt.step()
            sched.step()
            if n % 50 == 0:
                print(f"epoch {epoch} step {n}/{len(batches)} loss {loss.item():.3f} {time.time() - t0:.0f} s", flush=True)
        acc = (proba(x_train, val)[val].argmax(1) == y_train[val]).mean()
        print(f"epoch {epoch}: carved 10% of train accuracy {acc:.4f}, {time.time() - t0:.0f} s", flush=True)
    tuned = proba(x_dev, range(len(x_dev)))
    fast = SentimentModel.train(train_texts, [str(v) for v in y_train], None, seed=0)
    fast_p = fast.predict_proba(dev_texts, None)[:, [fast.labels.index("0"), fast.labels.index("1")]]
    results = [("tuned Qwen layers alone", tuned), ("TF-IDF model alone", fast_p), ("average of both", blend(fast_p, tuned))]
    if args.with_e5:
        from services.nlu.finetune import FineTuneSettings, fine_tune
        from services.nlu.text import normalize

        e5 = fine_tune([normalize(t) for t in train_texts], [str(v) for v in y_train],
                       FineTuneSettings(epochs=3, seed=0, head_share=0.25), progress=lambda line: print(line, flush=True))
        e5_p = e5.predict_proba([normalize(t) for t in dev_texts])[:, [e5.labels.index("0"), e5.labels.index("1")]]
        results += [("fine-tuned e5 alone", e5_p), ("fine-tuned e5 + TF-IDF (best mode's blend)", blend(fast_p, e5_p)),
                    ("equal thirds: TF-IDF + fine-tuned e5 + tuned Qwen layers", (fast_p + e5_p + tuned) / 3)]
    for name, pr in results:
        print(f"dev ({len(y_dev)}) {name}: {(pr.argmax(1) == y_dev).mean():.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
