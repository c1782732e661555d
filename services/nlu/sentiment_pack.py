"""The demo store's sentiment model: trained from the domain pack's ``sentiment.yaml``
(messages written for the store, labelled negative / neutral / positive, some with an
``anger`` level), once per version of the file, and cached."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from services.nlu.sentiment import MODEL_FORMAT, POLARITIES, EmbedQueries, SentimentModel

log = logging.getLogger(__name__)

PACK_FILE = "sentiment.yaml"


@dataclass(frozen=True)
class LabelledMessage:
    text: str
    label: str  # negative | neutral | positive
    language: str  # zh | en
    anger: float | None = None


def read_sentiment_pack(path: str | Path) -> list[LabelledMessage]:
    """The labelled messages of a pack's ``sentiment.yaml`` (``ValueError`` naming the entry if malformed).

    Format: ``version: 1`` and ``messages:``, a list of ``{text, label, lang}`` with label one of
    negative/neutral/positive, lang zh/en and, optionally, ``anger`` in [0, 1].
    """
    import yaml

    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{path}: file not found") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("version") != 1 or not isinstance(doc.get("messages"), list) or not doc["messages"]:
        raise ValueError(f"{path}: expected 'version: 1' and a non-empty list 'messages'")
    out = []
    for i, raw in enumerate(doc["messages"]):
        where = f"{path}: message #{i}"
        if not isinstance(raw, dict) or not isinstance(raw.get("text"), str) or not raw["text"].strip():
            raise ValueError(f"{where}: expected a mapping with a non-empty 'text'")
        if raw.get("label") not in POLARITIES:
            raise ValueError(f"{where}: label {raw.get('label')!r} is not one of {', '.join(POLARITIES)}")
        if raw.get("lang") not in ("zh", "en"):
            raise ValueError(f"{where}: lang {raw.get('lang')!r} is not zh or en")
        anger = raw.get("anger")
        if anger is not None and (isinstance(anger, bool) or not isinstance(anger, (int, float)) or not 0 <= anger <= 1):
            raise ValueError(f"{where}: anger must be a number in [0, 1]")
        out.append(LabelledMessage(raw["text"].strip(), raw["label"], raw["lang"], None if anger is None else float(anger)))
    return out


async def train_pack_model(messages: Sequence[LabelledMessage], embed: EmbedQueries, **options) -> SentimentModel:
    """Embed the messages (as NLU will: normalized text) and fit a :class:`SentimentModel` on them."""
    from services.nlu.text import normalize

    texts = [m.text for m in messages]
    t0 = time.perf_counter()
    embeddings = np.asarray(await embed([normalize(t) for t in texts]), dtype=np.float32)
    embed_seconds = time.perf_counter() - t0
    model = await asyncio.to_thread(SentimentModel.train, texts, [m.label for m in messages], embeddings, **options)
    model.meta["embed_seconds"] = round(embed_seconds, 3)
    return model


async def load_or_train_pack_model(
    pack_dir: str | Path, cache_dir: str | Path, embed: EmbedQueries, *, embedder_id: str = "multilingual-e5-small",
) -> SentimentModel:
    """The sentiment model of a domain pack: loaded from ``cache_dir`` when one was trained on
    this very ``sentiment.yaml`` (same sha256, model format and ``embedder_id``), else trained
    (``embed`` gives the e5 query embeddings) and written there atomically (a temporary folder,
    then rename). Each version of the file gets its own folder ``sentiment-<sha256[:16]>``."""
    source = Path(pack_dir) / PACK_FILE
    try:
        raw = source.read_bytes()
    except FileNotFoundError:
        raise ValueError(f"{source}: file not found") from None
    digest = hashlib.sha256(f"{MODEL_FORMAT}\n{embedder_id}\n".encode() + raw).hexdigest()
    cache = Path(cache_dir)
    target = cache / f"sentiment-{digest[:16]}"
    if (target / "meta.json").exists():
        try:
            model = SentimentModel.load(target)
            if model.meta.get("data_sha256") == digest:
                return model
        except ValueError as exc:
            log.warning("ignoring the cached sentiment model: %s", exc)
    messages = read_sentiment_pack(source)
    model = await train_pack_model(messages, embed)
    model.meta.update(data_sha256=digest, source=str(source), embedder=embedder_id)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = cache / f".tmp-sentiment-{uuid.uuid4().hex[:8]}"
    try:
        model.save(tmp)
        if target.exists():  # a stale or broken copy
            shutil.rmtree(target, ignore_errors=True)
        try:
            os.rename(tmp, target)
        except OSError:  # another process got there first: theirs is as good
            pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    m = model.meta["metrics"]
    log.info("sentiment model trained on %d messages in %.1f s: out-of-fold accuracy %.3f",
             len(messages), model.meta["fit_seconds"], m.get("oof_accuracy_stacked", m["oof_accuracy_text"]))
    return model

