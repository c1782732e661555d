"""Turning generated tokens into text that is safe to stream.

``IncrementalDetokenizer`` emits only text that can no longer change: a character
split across tokens (common in Chinese: one Han character is often two or three
byte-level tokens) is held back until complete, so a client never sees U+FFFD or
half a character. ``StopMatcher`` cuts at stop strings and holds back a suffix that
may be the beginning of one, so no part of a stop string is ever sent.
"""

from __future__ import annotations

from typing import Protocol, Sequence

REPLACEMENT = "\ufffd"


class Decoder(Protocol):
    def decode(self, ids: Sequence[int], skip_special_tokens: bool = ..., clean_up_tokenization_spaces: bool = ...) -> str: ...


class IncrementalDetokenizer:
    """Decodes a growing token list in O(new tokens) per step.

    Only a short window (from ``prefix`` on) is re-decoded each step, as in vLLM and
    TGI: byte-level BPE merges never reach further back than a few tokens.
    """

    def __init__(self, tokenizer: Decoder, skip: frozenset[int] = frozenset()) -> None:
        self._tok = tokenizer
        self._skip = skip
        self.ids: list[int] = []
        self._prefix = 0  # start of the window that is re-decoded
        self._read = 0  # tokens up to here are already in ``text``
        self.text = ""  # complete text so far

    def _decode(self, ids: Sequence[int]) -> str:
        return self._tok.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    def push(self, token: int) -> str:
        """Add one token; return the newly completed text (maybe empty)."""
        if token in self._skip:
            return ""
        self.ids.append(token)
        before = self._decode(self.ids[self._prefix : self._read])
        after = self._decode(self.ids[self._prefix :])
        if after.endswith(REPLACEMENT) or len(after) <= len(before) or not after.startswith(before):
            return ""  # an incomplete character: wait for the next token
        new = after[len(before) :]
        self._prefix, self._read = self._read, len(self.ids)
        self.text += new
        return new

    def flush(self) -> str:
        """Text still held back at the end (an incomplete last character is dropped)."""
        full = self._decode(self.ids).rstrip(REPLACEMENT)
        if not full.startswith(self.text):
            return ""
        new = full[len(self.text) :]
        self.text = full
        return new


class StopMatcher:
    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = [s for s in stops if s]

    def find(self, text: str, start: int = 0) -> int:
        """Index of the first stop string ending at or after ``start``, or -1."""
        best = -1
        for s in self.stops:
            i = text.find(s, max(0, start - len(s) + 1))
            if i != -1 and (best == -1 or i < best):
                best = i
        return best

    def safe_end(self, text: str) -> int:
        """Length of ``text`` minus the longest suffix that is a proper prefix of a stop string."""
        hold = 0
        for s in self.stops:
            for j in range(min(len(s) - 1, len(text)), hold, -1):
                if text.endswith(s[:j]):
                    hold = j
                    break
        return len(text) - hold
