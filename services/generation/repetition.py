"""A guard against replies that start repeating themselves.

Small models sometimes fall into a loop under greedy decoding and write the same
sentence again and again until the token limit (「您的订单 KF… 到了待发货状态。」 six
times in a row). ``RepetitionGuard`` is fed the streamed deltas and says when the
text has begun to repeat, so that generation can be stopped there and the reply is
the text before the repetition: the first occurrence kept, the repeats dropped.

What has been streamed to the client is never taken back, so the guard holds back
only the text that could still turn out to be the start of a repeat: the longest
tail of the reply that also occurs earlier in it (and an English word until it is
complete). In ordinary text that is a few characters ("订单", "the order") and
goes out with the next delta that breaks the match; when a repeat is confirmed the
held text is dropped instead.

Text is compared as tokens, insensitive to punctuation, spacing, width and case:
each CJK character is a token of weight 1, each run of letters or digits (an
English word, a number, an order id) a token of weight 2, so that thresholds
read as "12 Chinese characters or 6 English words". It fires on

- ``sentence``: a complete sentence of weight >= ``min_sentence`` that equals an
  earlier sentence (or, when the reply ends, a fragment of that weight that is
  the beginning of an earlier sentence: a loop cut off by the token limit);
- ``loop``: a span repeated back to back, the repeated part weighing at least
  ``min_adjacent`` (``X X`` with X of 12 characters; ``X X X`` with X of 6);
- ``echo``: a tail of weight >= ``min_far`` that repeats an earlier span of the
  reply anywhere (a loop whose period is long and has no sentence end in it).

It does not fire on shared list prefixes ("1. 在订单详情… 2. 在订单详情…"), short
repeated words ("好的好的"), or a word such as "order" recurring across sentences:
none of them is a whole sentence or a long enough span written twice.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

# A sentence ends after these (full-width forms included); "." only when followed
# by whitespace or the end, so that "1.5" and "KF.2" do not end one.
_TERMINATORS = frozenset("。！？!?；;\n…｡")
_CLOSERS = frozenset("\"'”’」』）)]】》>")


def _is_cjk(c: str) -> bool:
    o = ord(c)
    return (
        0x4E00 <= o <= 0x9FFF or 0x3400 <= o <= 0x4DBF or 0xF900 <= o <= 0xFAFF or 0x3040 <= o <= 0x30FF
        or 0xAC00 <= o <= 0xD7AF or 0x20000 <= o <= 0x2FFFF
    )


_CJK, _WORD, _SEP = 0, 1, 2


def _classify(ch: str) -> tuple[int, str]:
    """(kind, normalized form) of one streamed character."""
    norm = unicodedata.normalize("NFKC", ch).casefold()
    if len(norm) == 1 and _is_cjk(norm):
        return _CJK, norm
    if norm and all(c.isalnum() or unicodedata.category(c).startswith("M") for c in norm):
        return _WORD, norm
    return _SEP, norm


@dataclass(frozen=True)
class RepetitionLimits:
    """Weights (CJK character 1, word or number 2) at which a repeat counts."""

    min_sentence: int = 6  # a sentence of 6 characters / 3 words said again
    min_adjacent: int = 12  # 12 characters / 6 words repeated back to back
    min_far: int = 32  # 32 characters / 16 words repeated anywhere (replies restate shorter clauses)


DEFAULT_LIMITS = RepetitionLimits()


class RepetitionGuard:
    """Incremental repetition detector for one streamed reply.

    ``feed`` takes each delta and returns the text that may be streamed now;
    ``finish`` returns the rest at the end. Once ``fired`` is set, the text
    returned so far (``text``) is the whole reply and the model should be stopped:
    later feeds return nothing.
    """

    def __init__(self, limits: RepetitionLimits | None = None) -> None:
        self.limits = limits or RepetitionLimits()
        self.fired = False
        self.reason = ""  # "sentence" | "loop" | "echo" once fired
        self.dropped = ""  # the held text that was dropped as a repeat (for logs)
        self._text = ""
        self._emitted = 0  # self._text[:self._emitted] has been returned
        self._cut = 0
        # tokens of the reply so far
        self._tokens: list[str] = []
        self._starts: list[int] = []  # raw index where each token starts
        self._ends: list[int] = []  # and where it ends
        self._cum = [0]  # prefix sums of token weights
        self._where: dict[str, list[int]] = {}
        # distance p -> length of the run of tokens, ending at the last one, equal
        # to the tokens p before them
        self._runs: dict[int, int] = {}
        # the word being read, and a "." whose meaning the next character tells
        self._word_start: int | None = None
        self._word: list[str] = []
        self._pending_dot = False
        # sentences: token tuples of the complete ones, and where the current starts
        self._sentences: set[tuple[str, ...]] = set()
        self._sentence_start = 0

    @property
    def text(self) -> str:
        """Everything returned so far."""
        return self._text[: self._emitted]

    # --- input ---------------------------------------------------------------

    def feed(self, delta: str) -> str:
        """The part of the reply that can be streamed now ("" while it is held)."""
        if self.fired or not delta:
            return ""
        base = len(self._text)
        self._text += delta
        for i in range(base, len(self._text)):
            self._char(i, self._text[i])
            if self.fired:
                return self._release(self._cut, final=True)
        return self._release(self._hold())

    def finish(self) -> str:
        """The held rest of the reply when the model has finished."""
        if self.fired:
            return ""
        end = len(self._text)
        self._end_word(end)
        if not self.fired:
            self._pending_dot = False
            self._end_sentence(at_end=True)
        if self.fired:
            return self._release(self._cut, final=True)
        return self._release(end, final=True)

    # --- scanning --------------------------------------------------------------

    def _char(self, i: int, ch: str) -> None:
        kind, norm = _classify(ch)
        if self._pending_dot:
            self._pending_dot = False
            lone_marker = len(self._tokens) == self._sentence_start + 1 and self._marker_at(self._sentence_start)
            if (ch.isspace() or ch in _CLOSERS) and not lone_marker:  # "2. " opens a sentence, it does not end one
                self._end_sentence()
                if self.fired:
                    return
        if kind == _WORD:
            if self._word_start is None:
                self._word_start = i
            self._word.append(norm)
            return
        self._end_word(i)
        if self.fired:
            return
        if kind == _CJK:
            self._token(norm, i, i + 1, 1)
        elif ch in _TERMINATORS:
            self._end_sentence()
        elif norm == ".":
            self._pending_dot = True

    def _end_word(self, end: int) -> None:
        if self._word_start is not None:
            start, word = self._word_start, "".join(self._word)
            self._word_start, self._word = None, []
            self._token(word, start, end, 2)

    def _token(self, tok: str, start: int, end: int, weight: int) -> None:
        n = len(self._tokens)
        self._tokens.append(tok)
        self._starts.append(start)
        self._ends.append(end)
        self._cum.append(self._cum[-1] + weight)
        previous = self._runs
        self._runs = {n - j: previous.get(n - j, 0) + 1 for j in self._where.get(tok, ())}
        self._where.setdefault(tok, []).append(n)
        best: tuple[int, int, str] | None = None
        for p, r in self._runs.items():
            w = self._cum[n + 1] - self._cum[n + 1 - r]
            reason = "loop" if r >= p and w >= self.limits.min_adjacent else "echo" if w >= self.limits.min_far else ""
            if reason and (best is None or r > best[0]):
                best = (r, p, reason)
        if best is not None:
            r, p, reason = best
            self._fire(reason, self._repeat_cut(n + 1 - r, p))

    def _end_sentence(self, *, at_end: bool = False) -> None:
        opening = first = self._sentence_start
        self._sentence_start = len(self._tokens)
        if self._is_list_marker(first):
            first += 1  # "2. 联系客服。" says the same as "1. 联系客服。"
        sentence = tuple(self._tokens[first:])
        if not sentence:
            return
        weight = self._cum[-1] - self._cum[first]
        if weight >= self.limits.min_sentence:
            if sentence in self._sentences:
                self._fire("sentence", self._starts[opening])
                return
            if at_end and any(self._truncated_copy(sentence, s) for s in self._sentences):
                self._fire("sentence", self._starts[opening])  # a repeat cut off by the token limit
                return
        self._sentences.add(sentence)

    @staticmethod
    def _truncated_copy(part: tuple[str, ...], sentence: tuple[str, ...]) -> bool:
        """Whether ``part`` is ``sentence`` cut short, possibly in its last word."""
        n = len(part)
        return n <= len(sentence) and part[:-1] == sentence[: n - 1] and sentence[n - 1].startswith(part[-1]) and part != sentence

    def _marker_at(self, k: int) -> bool:
        """Whether token ``k`` is a list number: "2." "2、" "2)" (not "2.5", not "12:00")."""
        if k >= len(self._tokens) or not (self._tokens[k].isascii() and self._tokens[k].isdigit()):
            return False
        end = self._ends[k]
        if end >= len(self._text) or self._text[end] not in ".．、)）":
            return False
        return end + 1 >= len(self._text) or not self._text[end + 1].isdigit()

    def _is_list_marker(self, k: int) -> bool:
        """Whether token ``k`` is a list number opening a longer sentence."""
        return k + 1 < len(self._tokens) and self._marker_at(k)

    # --- holding and cutting -----------------------------------------------------

    def _hold(self) -> int:
        """How far the text may go out: not into a run that could be a repeat's
        beginning, nor into a word still being written."""
        hold = len(self._text)
        if self._word_start is not None:
            hold = min(hold, self._word_start)
        held = len(self._tokens) - max(self._runs.values(), default=0)  # the first held token
        if held == self._sentence_start + 1 and self._marker_at(self._sentence_start):
            held -= 1  # a list number goes out with its item: it is dropped with a repeated one
        if held < len(self._tokens):
            hold = min(hold, self._starts[held])
        while hold > self._emitted and self._text[hold - 1].isspace():
            hold -= 1  # spacing goes out with what follows it, so a cut reply does not end in it
        return hold

    def _repeat_cut(self, s: int, p: int) -> int:
        """Where to end the reply when the tokens from ``s`` on repeat the tokens
        ``p`` before them. The run can begin mid-sentence when the text before the
        first copy happens to end like the copy does; the cut then moves forward
        to the end of that sentence, within the second copy, so the reply ends at
        a sentence boundary with the sentence said once."""
        a = self._starts[s]
        if self._ends_sentence(a):
            return a
        limit = min(len(self._text), a + (a - self._starts[s - p]))  # less than one more copy
        for i in range(a, limit):
            ch = self._text[i]
            if ch in _TERMINATORS or (ch in ".．" and (i + 1 >= len(self._text) or self._text[i + 1].isspace())):
                return i + 1
        return a

    def _ends_sentence(self, pos: int) -> bool:
        i = pos - 1
        while i >= 0 and (self._text[i].isspace() or self._text[i] in _CLOSERS):
            i -= 1
        if i >= 0 and self._text[i] in ".．":
            return i + 1 < pos  # "shipped. Your", not "2.5"
        return i < 0 or self._text[i] in _TERMINATORS

    def _fire(self, reason: str, cut: int) -> None:
        self.fired, self.reason = True, reason
        self._cut = max(cut, self._emitted)
        self.dropped = self._text[self._cut:]

    def _release(self, upto: int, *, final: bool = False) -> str:
        upto = max(upto, self._emitted)
        out = self._text[self._emitted: upto]
        if final and self.fired:
            out = out.rstrip()
            upto = self._emitted + len(out)
        self._emitted = upto
        return out
