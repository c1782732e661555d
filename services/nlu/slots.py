"""The learned slot tagger: a linear-chain CRF (python-crfsuite) over tokens, BIO tags.

Open slots (a product name, a colour, a size, a return reason...) have no pattern a rule
could check, so they are learned from annotated utterances. The tagger sees tokens:

* English: words (letters/digits, with inner ``'``, ``.`` or ``-``); every other
  non-space character is a token of its own;
* Chinese: one token per Chinese character (as in the CAIS and SMP data sets), latin
  words and numbers inside Chinese text stay whole.

``tokenize`` keeps the character offsets, so predicted tags map back onto the message.

Features of token *i* (strings, value 1): the token lower-cased, its shape (``Xxxx``,
``dd``, ``C`` for a Chinese character), prefixes and suffixes, the tokens at -2..+2 with
the bigrams and the trigram around *i* (for Chinese: the character window), BOS/EOS, and
a gazetteer learned from the training spans (phrase -> slot types; phrases mostly seen
outside any slot are dropped). The gazetteer features of a training sentence come from
the spans of the *other* folds (cross-fitting), so the model does not learn to trust the
gazetteer more than it deserves on new text. Optional, off by default because they did
not pay: ``jieba`` (the jieba word a character belongs to, its position B/M/E/S in it,
its length, the words before and after) and ``sentence_cues`` (the first two words on
every token, an intent proxy).

What each gave, span F1 on a 10% dev part carved from each TRAIN split (fixed seed; see
``bench/nlu_slots.py --split tune``), c1 0.05, c2 0.01, 150 iterations:

=======================  =======  =======  =======  =======
features                 SNIPS    ATIS     CAIS     SMP2020
=======================  =======  =======  =======  =======
without gazetteer        93.60    95.31    84.55
default + jieba          94.13    95.90    85.42    82.15
default                  94.13    95.90    85.80    82.03
default + jieba + cues   94.40    95.90    85.36    81.43
=======================  =======  =======  =======  =======

(jieba does not touch English text, so its SNIPS/ATIS rows are the default's.) c1 in
{0.02, 0.05, 0.1}, c2 in {0.001, 0.01} and 300 iterations moved SNIPS by at most 0.17,
noise at this size. On the product pack (22 held-out utterances written for the
purpose) jieba gave 0.895 span F1 against 0.907 without.

A saved model is one file: a magic line, a JSON header (feature options, gazetteer) and
the crfsuite model bytes; :meth:`SlotTagger.load` reads it back without temporary files.

The demo store's product tagger is trained from ``slots.yaml`` of the domain pack (inline
annotations ``我想把[红色](color)的[连衣裙](product)换成[L码](size)``): see
:func:`services.nlu.slot_pack.read_slot_pack` and :func:`~services.nlu.slot_pack.load_or_train_pack_tagger`.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import struct
import tempfile
import threading
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

from services.nlu.datasets import TaggedTokens
from services.nlu.segmentation import jieba_module

log = logging.getLogger(__name__)

Token = tuple[str, int, int]  # (text, start, end) with character offsets [start, end)

FORMAT = "kefu-slots-1"
_MAGIC = b"KEFUSLOT1\n"

_CJK_CHAR = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_CJK = re.compile(f"[{_CJK_CHAR}]")
# A "word" of the regex above must not swallow Chinese characters (\w matches them).
_WORD_SPLIT = re.compile(rf"[{_CJK_CHAR}]|[^\W_{_CJK_CHAR}]+(?:['’.\-][^\W_{_CJK_CHAR}]+)*|\S", re.UNICODE)


def tokenize(text: str, language: str = "zh") -> list[Token]:
    """Tokens of ``text`` with their character offsets.

    Both languages use one rule (messages mix them): a Chinese character is a token, a run
    of letters/digits (with inner ``'``, ``.``, ``-``) is a token, any other non-space
    character is a token. ``language`` is accepted for symmetry with the rest of NLU.
    """
    del language
    return [(m.group(0), m.start(), m.end()) for m in _WORD_SPLIT.finditer(text)]


@dataclass(frozen=True)
class SlotSpan:
    """A tagged span: slot ``type`` over tokens ``[start, end)``."""

    type: str
    start: int
    end: int
    confidence: float = 1.0


def spans(tokens: Sequence[str] | None, tags: Sequence[str]) -> list[SlotSpan]:
    """Spans of a BIO tag sequence, conlleval-style.

    A span starts at ``B-x``, or at ``I-x`` after ``O`` or after a tag of another type;
    it runs over the following ``I-x``. ``tokens`` is only checked for length.
    """
    if tokens is not None and len(tokens) != len(tags):
        raise ValueError(f"{len(tokens)} tokens but {len(tags)} tags")
    out: list[SlotSpan] = []
    kind: str | None = None
    start = 0
    for i, tag in enumerate(tags):
        head, _, name = tag.partition("-")
        if head == "I" and kind == name:
            continue
        if kind is not None:
            out.append(SlotSpan(kind, start, i))
            kind = None
        if head in ("B", "I") and name:
            kind, start = name, i
    if kind is not None:
        out.append(SlotSpan(kind, start, len(tags)))
    return out


# ------------------------------------------------------------------ features


@dataclass
class FeatureOptions:
    """What the feature function looks at (stored with the model)."""

    window: int = 2
    affixes: int = 3
    jieba: bool = False
    gazetteer: bool = True
    gazetteer_folds: int = 5
    gazetteer_max_len: int = 8
    # A phrase enters the gazetteer for a type when at least this share of its
    # occurrences in the training text are spans of that type.
    gazetteer_min_share: float = 0.2
    # The sentence's first word and first two words on every token: a cheap cue of
    # what the customer asks for (an intent proxy) that decides between similar slots.
    sentence_cues: bool = False


class Gazetteer:
    """Phrases (lower-cased token tuples) seen as slot values in training, with their types."""

    def __init__(self, entries: dict[tuple[str, ...], list[str]] | None = None, max_len: int = 8) -> None:
        self.entries: dict[tuple[str, ...], list[str]] = entries or {}
        self.max_len = max(1, min(max_len, max((len(k) for k in self.entries), default=1)))

    @classmethod
    def learn(cls, sequences: Iterable[TaggedTokens], *, max_len: int, min_share: float) -> Gazetteer:
        sequences = list(sequences)
        as_type: Counter = Counter()
        for seq in sequences:
            low = [t.lower() for t in seq.tokens]
            for s in spans(None, seq.tags):
                if s.end - s.start <= max_len:
                    as_type[(tuple(low[s.start : s.end]), s.type)] += 1
        phrases = {p for p, _ in as_type}
        seen: Counter = Counter()
        for seq in sequences:
            low = [t.lower() for t in seq.tokens]
            for i in range(len(low)):
                for j in range(i + 1, min(len(low), i + max_len) + 1):
                    gram = tuple(low[i:j])
                    if gram in phrases:
                        seen[gram] += 1
        entries: dict[tuple[str, ...], list[str]] = defaultdict(list)
        for (phrase, kind), n in sorted(as_type.items()):
            if n >= min_share * max(seen[phrase], 1):
                entries[phrase].append(kind)
        return cls(dict(entries), max_len)

    def marks(self, low: Sequence[str]) -> list[list[str]]:
        """Per token: ``gB=type`` / ``gI=type`` for every gazetteer phrase covering it."""
        out: list[list[str]] = [[] for _ in low]
        if not self.entries:
            return out
        n = len(low)
        for i in range(n):
            for j in range(i + 1, min(n, i + self.max_len) + 1):
                kinds = self.entries.get(tuple(low[i:j]))
                if not kinds:
                    continue
                size = "1" if j - i == 1 else ("2" if j - i == 2 else "3+")
                for kind in kinds:
                    out[i].append(f"gB={kind}")
                    out[i].append(f"gL={kind}:{size}")
                    for k in range(i + 1, j):
                        out[k].append(f"gI={kind}")
        return out

    def to_json(self) -> list:
        return [[list(k), v] for k, v in self.entries.items()]

    @classmethod
    def from_json(cls, raw: list, max_len: int) -> Gazetteer:
        return cls({tuple(k): list(v) for k, v in raw}, max_len)


_SHAPE_RUNS = re.compile(r"(.)\1+")


def _shape(token: str) -> str:
    chars = []
    for ch in token:
        if _CJK.match(ch):
            chars.append("C")
        elif ch.isdigit():
            chars.append("d")
        elif ch.isalpha():
            chars.append("X" if ch.isupper() else "x")
        else:
            chars.append(ch)
    return _SHAPE_RUNS.sub(r"\1", "".join(chars))


def _jieba_words(tokens: Sequence[str]) -> list[tuple[str, str, str, str]] | None:
    """Per token (jieba word, position B/M/E/S, previous word, next word), or None without Chinese."""
    if not any(_CJK.search(t) for t in tokens):
        return None
    jieba = jieba_module()
    starts = []
    pos = 0
    for t in tokens:
        starts.append(pos)
        pos += len(t)
    text = "".join(tokens)
    words = list(jieba.tokenize(text, HMM=True))
    out: list[tuple[str, str, str, str]] = []
    w = 0
    for i, start in enumerate(starts):
        while w + 1 < len(words) and words[w][2] <= start:
            w += 1
        word, ws, we = words[w]
        end = start + len(tokens[i])
        if we - ws <= 1 or (ws == start and end >= we):
            where = "S"
        elif ws == start:
            where = "B"
        elif end >= we:
            where = "E"
        else:
            where = "M"
        prev_word = words[w - 1][0] if w > 0 else "<s>"
        next_word = words[w + 1][0] if w + 1 < len(words) else "</s>"
        out.append((word, where, prev_word, next_word))
    return out


def token_features(tokens: Sequence[str], options: FeatureOptions, gazetteer: Gazetteer | None = None) -> list[list[str]]:
    """The CRF attributes of every token of one sentence."""
    n = len(tokens)
    low = [t.lower() for t in tokens]
    win = options.window
    padded = [f"<s{k}>" for k in range(win, 0, -1)] + low + [f"</s{k}>" for k in range(1, win + 1)]
    words = _jieba_words(tokens) if options.jieba else None
    marks = gazetteer.marks(low) if gazetteer is not None else None
    cues: list[str] = []
    if options.sentence_cues and n:
        if words is not None:  # Chinese: the first jieba words
            firsts = [words[0][0]] + [w for w, pos, _, _ in words if pos in ("B", "S")][1:2]
        else:
            firsts = low[:2]
        cues = [f"s0={firsts[0]}", f"s01={'|'.join(firsts[:2])}"]
    feats: list[list[str]] = []
    for i, tok in enumerate(tokens):
        w = low[i]
        p = i + win  # index in padded
        f = ["b", f"w={w}", f"sh={_shape(tok)}"]
        if tok.isdigit():
            f.append("digit")
            f.append(f"dlen={min(len(tok), 5)}")
        elif tok[:1].isupper():
            f.append("title")
        if len(tok) > 2:
            for k in range(1, options.affixes + 1):
                if len(tok) > k:
                    f.append(f"p{k}={w[:k]}")
                    f.append(f"s{k}={w[-k:]}")
        for d in range(1, win + 1):
            f.append(f"w-{d}={padded[p - d]}")
            f.append(f"w+{d}={padded[p + d]}")
        f.append(f"w-1w0={padded[p - 1]}|{w}")
        f.append(f"w0w+1={w}|{padded[p + 1]}")
        if win >= 2:
            f.append(f"w-2w-1={padded[p - 2]}|{padded[p - 1]}")
            f.append(f"w+1w+2={padded[p + 1]}|{padded[p + 2]}")
        f.append(f"w-1w0w+1={padded[p - 1]}|{w}|{padded[p + 1]}")
        f.append(f"w-1w+1={padded[p - 1]}|{padded[p + 1]}")
        if words is not None:
            word, where, prev_word, next_word = words[i]
            f.append(f"jw={word}")
            f.append(f"jp={where}")
            f.append(f"jpw={where}|{w}")
            f.append(f"jl={min(len(word), 4)}")
            f.append(f"jw-1={prev_word}")
            f.append(f"jw+1={next_word}")
        if i == 0:
            f.append("BOS")
        if i == n - 1:
            f.append("EOS")
        if marks is not None:
            f.extend(marks[i])
        f.extend(cues)
        feats.append(f)
    return feats


# ------------------------------------------------------------------ the tagger


def _progress_trainer(progress: Callable[[str], None], max_iterations: int):
    """A crfsuite trainer that reports every 25th L-BFGS iteration to ``progress``."""
    import pycrfsuite

    class ProgressTrainer(pycrfsuite.Trainer):
        iteration = 0

        def message(self, message):  # crfsuite's log, line by line (needs verbose=True)
            if message.startswith("***** Iteration #"):
                self.iteration = int(message.strip("* \n").rsplit("#", 1)[1])
            elif message.startswith("Loss:") and self.iteration % 25 == 0:
                progress(f"iteration {self.iteration}/{max_iterations}, loss {float(message.split()[1]):.1f}")

    return ProgressTrainer(verbose=True)


class SlotTagger:
    """A trained CRF slot tagger. Thread-safe (calls are serialised)."""

    def __init__(self, model: bytes, options: FeatureOptions, gazetteer: Gazetteer | None, meta: dict | None = None) -> None:
        import pycrfsuite

        self._model = model
        self.options = options
        self.gazetteer = gazetteer
        self.meta = dict(meta or {})
        self._tagger = pycrfsuite.Tagger()
        self._tagger.open_inmemory(model)
        self._lock = threading.Lock()
        self.labels: list[str] = list(self._tagger.labels())

    # ------------------------------------------------------------ training
    @classmethod
    def train(
        cls,
        sequences: Sequence[TaggedTokens],
        *,
        c1: float = 0.05,
        c2: float = 0.01,
        max_iterations: int = 150,
        options: FeatureOptions | None = None,
        seed: int = 13,
        progress: Callable[[str], None] | None = None,
    ) -> SlotTagger:
        """Fit a CRF (L-BFGS with elastic-net penalty ``c1``·L1 + ``c2``·L2) on BIO-tagged sequences."""
        import pycrfsuite

        if not sequences:
            raise ValueError("no training sequences")
        options = options or FeatureOptions()
        gazetteer = None
        fold_gaz: list[Gazetteer | None] = [None] * len(sequences)
        if options.gazetteer:
            gazetteer = Gazetteer.learn(sequences, max_len=options.gazetteer_max_len, min_share=options.gazetteer_min_share)
            folds = max(2, options.gazetteer_folds)
            order = list(range(len(sequences)))
            random.Random(seed).shuffle(order)
            fold_of = {idx: k % folds for k, idx in enumerate(order)}
            for k in range(folds):
                rest = [s for i, s in enumerate(sequences) if fold_of[i] != k]
                gaz_k = Gazetteer.learn(rest, max_len=options.gazetteer_max_len, min_share=options.gazetteer_min_share)
                for i in range(len(sequences)):
                    if fold_of[i] == k:
                        fold_gaz[i] = gaz_k
        trainer = _progress_trainer(progress, max_iterations) if progress else pycrfsuite.Trainer(verbose=False)
        n_tokens = 0
        for i, seq in enumerate(sequences):
            if len(seq.tokens) != len(seq.tags):
                raise ValueError(f"sequence {i}: {len(seq.tokens)} tokens but {len(seq.tags)} tags")
            trainer.append(token_features(seq.tokens, options, fold_gaz[i]), list(seq.tags))
            n_tokens += len(seq.tokens)
            if progress and (i + 1) % 5000 == 0:
                progress(f"features: {i + 1}/{len(sequences)} sequences")
        trainer.set_params(
            {"c1": c1, "c2": c2, "max_iterations": max_iterations, "feature.possible_transitions": True}
        )
        with tempfile.TemporaryDirectory(prefix="kefu-crf-") as tmp:
            path = os.path.join(tmp, "model.crfsuite")
            trainer.train(path)
            model = Path(path).read_bytes()
        meta = {"sequences": len(sequences), "tokens": n_tokens, "c1": c1, "c2": c2, "max_iterations": max_iterations}
        return cls(model, options, gazetteer, meta)

    # ------------------------------------------------------------ tagging
    def tag(self, tokens: Sequence[str]) -> list[str]:
        """BIO tags of ``tokens`` (the most likely sequence)."""
        if not tokens:
            return []
        xseq = token_features(tokens, self.options, self.gazetteer)
        with self._lock:
            return list(self._tagger.tag(xseq))

    def tag_spans(self, tokens: Sequence[str]) -> list[SlotSpan]:
        """Spans of the most likely tags; confidence = the lowest CRF marginal of the span's tags."""
        if not tokens:
            return []
        xseq = token_features(tokens, self.options, self.gazetteer)
        with self._lock:
            tags = list(self._tagger.tag(xseq))
            out = []
            for s in spans(None, tags):
                conf = min(self._tagger.marginal(tags[t], t) for t in range(s.start, s.end))
                out.append(SlotSpan(s.type, s.start, s.end, float(conf)))
        return out

    def slot_types(self) -> list[str]:
        return sorted({label[2:] for label in self.labels if label[:2] in ("B-", "I-")})

    # ------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> None:
        """Write the model to one file, atomically (temporary file, then rename)."""
        path = Path(path)
        header = {
            "format": FORMAT,
            "options": asdict(self.options),
            "gazetteer": self.gazetteer.to_json() if self.gazetteer is not None else None,
            "meta": self.meta,
        }
        head = json.dumps(header, ensure_ascii=False).encode("utf-8")
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(_MAGIC + struct.pack("<I", len(head)) + head + self._model)
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise

    @classmethod
    def load(cls, path: str | Path) -> SlotTagger:
        """Read a model written by :meth:`save`; ``ValueError`` when the file is not one."""
        data = Path(path).read_bytes()
        if not data.startswith(_MAGIC) or len(data) < len(_MAGIC) + 4:
            raise ValueError(f"{path}: not a kefu slot tagger model")
        (size,) = struct.unpack("<I", data[len(_MAGIC) : len(_MAGIC) + 4])
        start = len(_MAGIC) + 4
        try:
            header = json.loads(data[start : start + size].decode("utf-8"))
        except ValueError as exc:
            raise ValueError(f"{path}: damaged header ({exc})") from None
        if header.get("format") != FORMAT:
            raise ValueError(f"{path}: model format {header.get('format')!r}, expected {FORMAT!r}")
        options = FeatureOptions(**header["options"])
        gaz = header.get("gazetteer")
        gazetteer = Gazetteer.from_json(gaz, options.gazetteer_max_len) if gaz is not None else None
        return cls(data[start + size :], options, gazetteer, header.get("meta"))
