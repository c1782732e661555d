"""Exploration helpers, not in the product: classify texts with the upper layers of the local Qwen.

Used by ``bench/sentiment_llm_probe.py`` (ChnSentiCorp) and ``bench/intent_llm_probe.py``
(Banking77). The recipe: run the first ``lower`` decoder layers of the local model (``make
models`` converts it; its final norm left out) once over every text (head 160 + tail 96 tokens of
a longer one, batches of similar length, bf16 autocast) and keep those hidden states in memory;
then train the next ``tune`` pretrained layers, the norm, mean pooling and a linear head on them
(AdamW, lr 5e-5 for the layers and 1e-3 for the head, weight decay 0.01, warm-up 6% then linear
decay, batch 16, gradient norm clipped at 1.0) on 90% of the training texts, the other 10% (numpy
``default_rng(20250101)``) reported after each epoch.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

HEAD, TAIL, H = 160, 96, 896


def lower_states(model, tok, texts: Sequence[str], what: str) -> list[np.ndarray]:
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


def add_probe_arguments(ap, *, epochs: int, e5_minutes: int, rows: str) -> None:
    """The options both probes take: the cut, the epochs, ``--with-e5`` and a smoke-run ``--limit``."""
    ap.add_argument("--layers", type=int, default=12, help="frozen lower layers, run once (default 12)")
    ap.add_argument("--tune", type=int, default=4, help="layers above them that are trained (default 4)")
    ap.add_argument("--epochs", type=int, default=epochs, help=f"epochs of training (default {epochs})")
    ap.add_argument("--with-e5", action="store_true",
                    help=f"also fine-tune e5-small as best mode does (~{e5_minutes} min on 2 cores) "
                         "and report the equal-thirds average")
    ap.add_argument("--limit", type=int, default=0, help=f"smoke run: N {rows}")


class UpperLayers:
    """The local model cut in two: ``states`` runs the frozen lower layers, ``train`` tunes the
    upper ones plus a linear head over ``classes``, ``proba`` gives softmax probabilities."""

    def __init__(self, lower: int, tune: int, classes: int) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from services.config import load_config
        from services.serving.model_files import llm_dir

        folder = llm_dir(load_config())
        self.tok = AutoTokenizer.from_pretrained(folder)
        self.body = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).model
        self.top = torch.nn.ModuleList(list(self.body.layers)[lower:lower + tune])
        self.norm, self.tune = self.body.norm, tune
        self.body.layers = torch.nn.ModuleList(list(self.body.layers)[:lower])
        self.body.norm = torch.nn.Identity()
        self.body.eval()
        self.head = torch.nn.Linear(H, classes)
        self.upper = False

    def states(self, texts: Sequence[str], what: str) -> list[np.ndarray]:
        if self.upper:
            raise RuntimeError("the lower layers are gone once training starts")
        return lower_states(self.body, self.tok, texts, what)

    def _to_upper(self) -> None:
        if not self.upper:  # from now on the body is the trained upper part
            self.body.layers, self.body.norm, self.body.embed_tokens = self.top, self.norm, None
            self.body.config.num_hidden_layers = self.tune
            self.upper = True

    def logits(self, x: list[np.ndarray], rows) -> torch.Tensor:
        self._to_upper()
        L = max(len(x[j]) for j in rows)
        e, a = torch.zeros(len(rows), L, H), torch.zeros(len(rows), L, dtype=torch.long)
        for r, j in enumerate(rows):
            e[r, :len(x[j])], a[r, :len(x[j])] = torch.from_numpy(x[j].astype(np.float32)), 1
        with torch.autocast("cpu", dtype=torch.bfloat16):
            h = self.body(inputs_embeds=e, attention_mask=a, use_cache=False).last_hidden_state.float()
        m = a.unsqueeze(-1).float()
        return self.head((h * m).sum(1) / m.sum(1))

    def proba(self, x: list[np.ndarray], rows=None) -> np.ndarray:
        """``[len(x), classes]``; rows outside ``rows`` (default: all) stay zero."""
        self.body.eval()
        rows = range(len(x)) if rows is None else rows
        order, out = sorted(rows, key=lambda j: len(x[j])), np.zeros((len(x), self.head.out_features))
        with torch.no_grad():
            for i in range(0, len(order), 32):
                out[order[i:i + 32]] = torch.softmax(self.logits(x, order[i:i + 32]).float(), -1).numpy()
        self.body.train()
        return out

    def train(self, x: list[np.ndarray], y: np.ndarray, epochs: int) -> None:
        """Tune on 90% of ``x``; print the carved 10%'s accuracy after each epoch."""
        self._to_upper()
        rng = np.random.default_rng(20250101)
        perm = rng.permutation(len(x))
        val, fit = perm[:len(perm) // 10], perm[len(perm) // 10:]
        opt = torch.optim.AdamW([{"params": list(self.body.parameters()), "lr": 5e-5},
                                 {"params": list(self.head.parameters()), "lr": 1e-3}], weight_decay=0.01)
        steps = max(1, epochs * (len(fit) // 16))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, s / (0.06 * steps)) * max(0.0, (steps - s) / steps))
        self.body.train()
        t0 = time.time()
        for epoch in range(1, epochs + 1):
            p, batches = rng.permutation(fit), []
            for i in range(0, len(p), 16 * 50):  # runs of 50 batches sorted by length
                run = sorted(p[i:i + 800], key=lambda j: len(x[j]))
                batches += [run[k:k + 16] for k in range(0, len(run), 16)]
            rng.shuffle(batches)
            for n, rows in enumerate(batches, 1):
                loss = torch.nn.functional.cross_entropy(self.logits(x, rows), torch.from_numpy(y[rows]))
                opt.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.body.parameters(), 1.0)
                opt.step()
                sched.step()
                if n % 50 == 0:
                    print(f"epoch {epoch} step {n}/{len(batches)} loss {loss.item():.3f} {time.time() - t0:.0f} s", flush=True)
            acc = (self.proba(x, val)[val].argmax(1) == y[val]).mean()
            print(f"epoch {epoch}: carved 10% of train accuracy {acc:.4f}, {time.time() - t0:.0f} s", flush=True)
