"""The hot-question response cache.

Customers ask the same questions over and over ("运费怎么算？"). A greedy reply
grounded in the same passages does not change until the knowledge does, so it is
kept, keyed by the normalized question, the intent NLU resolved, the language,
the passages and the knowledge-base version. A newer knowledge-base version
drops every entry of older ones.
"""

from __future__ import annotations

import re
import threading
import time
import unicodedata
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Hashable

_NOT_WORD = re.compile(r"[\W_]+", re.UNICODE)


def normalize_question(text: str) -> str:
    """Width, case, punctuation and spacing do not make a different question."""
    return _NOT_WORD.sub("", unicodedata.normalize("NFKC", text).casefold())


@dataclass(frozen=True)
class CachedReply:
    text: str
    finish_reason: str
    completion_tokens: int


@dataclass
class _Entry:
    reply: CachedReply
    kb_version: int
    expires: float


class ResponseCache:
    def __init__(self, max_entries: int, ttl_s: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._max = max_entries
        self._ttl = ttl_s
        self._clock = clock
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self._kb_version = 0
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(question: str, *, intent: str, language: str, kb_version: int, passages: tuple[str, ...], instruction: str = "") -> Hashable:
        return (normalize_question(question), intent, language, kb_version, passages, instruction)

    def _see_version(self, kb_version: int) -> None:
        if kb_version > self._kb_version:
            self._kb_version = kb_version
            for k in [k for k, e in self._entries.items() if e.kb_version < kb_version]:
                del self._entries[k]

    def get(self, key: Hashable, kb_version: int) -> CachedReply | None:
        with self._lock:
            self._see_version(kb_version)
            entry = self._entries.get(key)
            if entry is None or entry.expires < self._clock() or entry.kb_version < self._kb_version:
                if entry is not None:
                    del self._entries[key]
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return entry.reply

    def put(self, key: Hashable, kb_version: int, reply: CachedReply) -> None:
        with self._lock:
            self._see_version(kb_version)
            if kb_version < self._kb_version or self._max <= 0:
                return  # computed from knowledge that has changed since
            self._entries[key] = _Entry(reply, kb_version, self._clock() + self._ttl)
            self._entries.move_to_end(key)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def hit_ratio(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0
