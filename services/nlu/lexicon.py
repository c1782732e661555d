"""Sensitive-word screening over a hot-reloadable lexicon file (Aho-Corasick).

The lexicon is a UTF-8 text file, one term a line, optionally followed by a tab and a category::

    # comments and blank lines are ignored
    诈骗	fraud
    kill you	threat
    idiot                       <- no category: "sensitive"

Terms are normalized like messages (``services.nlu.text.normalize``: full-width, traditional and
colloquial forms fold together) and matched case-insensitively on the normalized message. A term that
begins or ends with a Latin letter or digit only matches at a word edge there ("ass" does not hit
"class"); Chinese terms match anywhere. Overlapping hits resolve leftmost-longest.

``SensitiveLexicon`` notices changes to its file: at most every ``reload_s`` seconds, on a lookup, it
compares the file's mtime/size and then its SHA-256, builds a new automaton aside and swaps it in with
one assignment (lookups in flight keep the automaton they started with). A missing, unreadable, empty
(zero-byte, as in the middle of a non-atomic write) or malformed file keeps the previous lexicon and
logs a warning. ``reload()`` checks at once.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, NamedTuple

import ahocorasick

from services.nlu.text import RESOURCES, normalize

log = logging.getLogger(__name__)

DEFAULT_LEXICON = RESOURCES / "sensitive_words.txt"
DEFAULT_CATEGORY = "sensitive"
_CATEGORY = re.compile(r"[a-z][a-z0-9_]{0,31}")
_ALNUM = re.compile(r"[A-Za-z0-9]")


class LexiconError(ValueError):
    """The lexicon file cannot be used (missing, unreadable, empty or malformed)."""


@dataclass(frozen=True)
class LexiconHit:
    """A lexicon term found in the normalized message, with its offsets there."""

    term: str
    category: str
    start: int
    end: int


def parse_lexicon(content: str, source: str = "<lexicon>") -> dict[str, str]:
    """term (normalized, lower-case) -> category. Raises ``LexiconError`` on a malformed line."""
    terms: dict[str, str] = {}
    for number, raw in enumerate(content.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = [p.strip() for p in raw.split("\t")]
        parts = [p for p in parts if p] if len(parts) > 1 else parts
        if len(parts) > 2:
            raise LexiconError(f"{source}:{number}: expected 'term' or 'term<TAB>category', got {len(parts)} fields")
        category = parts[1] if len(parts) == 2 else DEFAULT_CATEGORY
        if not _CATEGORY.fullmatch(category):
            raise LexiconError(f"{source}:{number}: bad category {category!r} (lower-case letters, digits, _)")
        term = _fold(normalize(parts[0]))
        if term:
            terms[term] = category
    return terms


def _fold(text: str) -> str:
    """Lower case with the length kept (offsets of hits must stay valid in the original text)."""
    lowered = text.lower()
    if len(lowered) == len(text):
        return lowered
    return "".join(c if len(c.lower()) != 1 else c.lower() for c in text)


class _Compiled(NamedTuple):
    automaton: Any  # ahocorasick.Automaton, or None for an empty lexicon
    size: int
    digest: str


def _compile(terms: dict[str, str], digest: str) -> _Compiled:
    if not terms:
        return _Compiled(None, 0, digest)
    automaton = ahocorasick.Automaton()
    for term, category in terms.items():
        automaton.add_word(term, (term, category))
    automaton.make_automaton()
    return _Compiled(automaton, len(terms), digest)


class SensitiveLexicon:
    """Aho-Corasick screening over a lexicon file that may change while the service runs.

    ``reload_s``: how often (seconds, at most) a lookup checks the file; 0 checks on every lookup,
    ``None`` never (then only ``reload()`` does). A file that cannot be used at construction raises
    ``LexiconError``; later, it only logs a warning and the previous lexicon stays.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        reload_s: float | None = 2.0,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = Path(path) if path is not None else DEFAULT_LEXICON
        self.reload_s = reload_s
        self._clock = clock
        self._lock = threading.Lock()
        self._file_key: tuple[int, int, int] | None = None
        self._problem: str | None = None
        self.version = 0  # counts the lexicons swapped in
        compiled = self._load()
        if isinstance(compiled, str):
            raise LexiconError(compiled)
        self._compiled = compiled
        self.version = 1
        self._next_check = self._clock() + (reload_s or 0.0)

    # ------------------------------------------------------------ loading

    def _load(self, previous_digest: str | None = None) -> _Compiled | str | None:
        """The compiled lexicon; None when the file is unchanged; an error text when it is unusable."""
        try:
            stat = self.path.stat()
            data = self.path.read_bytes()
        except OSError as e:
            return f"lexicon {self.path} unreadable: {e.strerror or e}"
        self._file_key = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        if not data:
            return f"lexicon {self.path} is empty (zero bytes)"
        digest = hashlib.sha256(data).hexdigest()
        if digest == previous_digest:
            return None
        try:
            terms = parse_lexicon(data.decode("utf-8"), str(self.path))
        except UnicodeDecodeError as e:
            return f"lexicon {self.path} is not UTF-8: {e}"
        except LexiconError as e:
            return str(e)
        return _compile(terms, digest)

    def reload(self) -> bool:
        """Read the file now; True when a changed lexicon was swapped in."""
        with self._lock:
            return self._reload_locked()

    def _reload_locked(self) -> bool:
        result = self._load(self._compiled.digest)
        if isinstance(result, str):
            if result != self._problem:  # say it once, not every few seconds
                log.warning("%s; keeping the previous lexicon (%d terms, version %d)", result, len(self), self.version)
            self._problem = result
            return False
        self._problem = None
        if result is None:
            return False
        self._compiled = result  # one assignment: lookups see the old or the new automaton, never a mix
        self.version += 1
        log.info("sensitive lexicon %s reloaded: %d terms (version %d)", self.path, result.size, self.version)
        return True

    def _maybe_reload(self) -> None:
        if self.reload_s is None:
            return
        now = self._clock()
        if now < self._next_check or not self._lock.acquire(blocking=False):
            return  # not yet, or another thread is already looking
        try:
            self._next_check = now + self.reload_s
            try:
                stat = self.path.stat()
                key = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
            except OSError:
                key = None
            if key is None or key != self._file_key or self._problem is not None:
                self._reload_locked()
        finally:
            self._lock.release()

    # ------------------------------------------------------------ lookup

    def __len__(self) -> int:
        return self._compiled.size

    def scan(self, text: str) -> list[LexiconHit]:
        """Lexicon terms in ``text`` (a normalized message), leftmost-longest, without overlaps."""
        self._maybe_reload()
        automaton = self._compiled.automaton
        if automaton is None or not text:
            return []
        folded = _fold(text)
        found: list[LexiconHit] = []
        for end_index, (term, category) in automaton.iter(folded):
            start, end = end_index - len(term) + 1, end_index + 1
            if _ALNUM.match(term) and start > 0 and _ALNUM.match(folded, start - 1):
                continue
            if _ALNUM.match(term[-1]) and end < len(folded) and _ALNUM.match(folded, end):
                continue
            found.append(LexiconHit(term, category, start, end))
        found.sort(key=lambda h: (h.start, h.start - h.end))
        hits: list[LexiconHit] = []
        for hit in found:
            if not hits or hit.start >= hits[-1].end:
                hits.append(hit)
        return hits
