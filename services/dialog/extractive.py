"""The extractive answer: the sentences of a passage that answer the question.

An FAQ answer often covers more than the customer asked (「退款到账时间」 lists seven
payment methods; the customer asked about one). ``extract`` keeps the sentences that
share the most index terms (knowledge/analysis.py: jieba words, English stems) with
the question — the best one, and the next best when it shares at least half as much —
in the passage's order. When no sentence shares a term, or the passage has only a
sentence or two, the passage stands whole: a shorter reply is never bought with a
dropped answer the question did not point at.
"""

from __future__ import annotations

import re

from services.generation.repetition import RepetitionGuard
from services.knowledge.analysis import analyze

# Sentence ends: Chinese full stops and marks (a 「；」 list item stays with its sentence),
# English ones before a space and a capital, digit or quote.
_SENTENCE = re.compile(r"(?<=[。！？!?])|(?<=[.])\s+(?=[A-Z0-9\"'“‘(])")


def sentences(passage: str) -> list[str]:
    return [s for s in (p.strip() for p in _SENTENCE.split(passage)) if s]


def extract(question: str, passage: str, *, min_sentences: int = 3) -> str:
    """The passage's sentences that answer ``question`` (see the module docstring)."""
    parts = sentences(passage)
    if len(parts) < min_sentences:
        return passage
    wanted = set(analyze(question))
    scores = [len(wanted & set(analyze(s))) for s in parts]
    best = max(scores)
    if best == 0:
        return passage
    ranked = sorted(range(len(parts)), key=lambda i: (-scores[i], i))
    keep = {ranked[0]}
    if scores[ranked[1]] * 2 >= best:
        keep.add(ranked[1])
    joiner = "" if re.search(r"[\u4e00-\u9fff]", passage) else " "
    return joiner.join(parts[i] for i in sorted(keep))


def without_repeats(before: str, passage: str) -> str:
    """``passage`` less the sentences that would repeat ``before`` in one reply (two FAQ
    entries that both give the hotline's hours): what the repetition guard of
    generation/repetition.py would catch is left out; "" when every sentence repeats."""
    if not before.strip():
        return passage
    joiner = "" if re.search(r"[\u4e00-\u9fff]", passage) else " "
    kept: list[str] = []
    for sentence in sentences(passage):
        guard = RepetitionGuard()
        guard.feed(f"{before}\n\n{joiner.join([*kept, sentence])}")
        guard.finish()
        if not guard.fired:
            kept.append(sentence)
    return joiner.join(kept)
