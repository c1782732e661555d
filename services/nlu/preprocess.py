"""Preprocessing of one customer message, start to end: the facade NLU calls first.

    raw ──clean──> cleaned ──normalize──> normalized ──┬─ language (code, confidence)
                                                      ├─ mask_pii ──> masked (what logs and the model see)
                                                      ├─ sensitive-word lexicon ──> hits
                                                      └─ prompt-injection screen ──> finding

Everything downstream of the normalized text uses its offsets (PII spans, lexicon hits, entities).
Nothing is dropped for being suspicious: the message carries ``flags`` instead:

* ``"pii"``                   personal data was masked;
* ``"sensitive_word"``        a lexicon term matched, plus ``"sensitive_word:<category>"`` per category
                              (``abuse``, ``threat``, ``self_harm``, ``fraud`` in the default lexicon);
* ``"prompt_injection"``      the message tries to steer the model;
* ``"unsupported_language"``  recognised, but not one of the languages handled end to end (zh, en).

``PreprocessedMessage``'s ``repr`` shows only masked text, so logging one leaks no personal data.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from services.nlu.injection import FLAG as INJECTION_FLAG
from services.nlu.injection import InjectionFinding, InjectionScreen
from services.nlu.language import FULLY_HANDLED, identify_language, warm_up
from services.nlu.lexicon import LexiconHit, SensitiveLexicon
from services.nlu.pii import MaskedText, mask_pii
from services.nlu.text import clean, normalize

PII_FLAG = "pii"
SENSITIVE_FLAG = "sensitive_word"
UNSUPPORTED_LANGUAGE_FLAG = "unsupported_language"


@dataclass
class PreprocessedMessage:
    """A customer message after preprocessing. ``cleaned`` and ``normalized`` still hold personal
    data: hand ``masked.text`` to logs and to the model, and ``masked.unmask(reply)`` to the customer."""

    cleaned: str
    normalized: str
    language: str
    language_confidence: float
    masked: MaskedText
    flags: list[str] = field(default_factory=list)
    sensitive_hits: list[LexiconHit] = field(default_factory=list)
    injection: InjectionFinding = field(default_factory=InjectionFinding)

    @property
    def sensitive_categories(self) -> list[str]:
        return sorted({h.category for h in self.sensitive_hits})

    def __repr__(self) -> str:
        return (
            f"PreprocessedMessage(masked={self.masked.text!r}, language={self.language!r}, "
            f"language_confidence={self.language_confidence}, flags={self.flags!r}, "
            f"pii={[s.placeholder for s in self.masked.spans]!r}, injection_score={self.injection.score})"
        )


def _language_code(hint: str) -> str:
    """Primary language subtag of a hint: zh-CN, zh_Hans -> zh; EN -> en."""
    return hint.strip().replace("_", "-").split("-", 1)[0].lower()


class Preprocessor:
    """Cleans, normalizes, identifies the language, masks PII and screens one customer message.

    ``lexicon_path``: the sensitive-word lexicon (default: the one shipped in ``resources``), re-read
    when it changes, checked at most every ``lexicon_reload_s`` seconds (``None``: never).
    Construction loads the language model and the tables (about a second), so the first message is
    as fast as the rest. Safe to share between threads.
    """

    def __init__(
        self,
        lexicon_path: str | os.PathLike[str] | None = None,
        lexicon_reload_s: float | None = 2.0,
        *,
        injection_rules_path: str | os.PathLike[str] | None = None,
        injection_threshold: float = 0.5,
    ) -> None:
        self.lexicon = SensitiveLexicon(lexicon_path, lexicon_reload_s)
        self.injection_screen = InjectionScreen(injection_rules_path, injection_threshold)
        warm_up()
        self.process("預熱 warm up pls 13812345678")  # loads OpenCC, the colloquial table, the patterns

    def process(self, text: str, language_hint: str = "") -> PreprocessedMessage:
        cleaned = clean(text)
        normalized = normalize(cleaned)
        if language_hint.strip():
            language, confidence = _language_code(language_hint), 1.0
        else:
            language, confidence = identify_language(normalized)
        masked = mask_pii(normalized)
        hits = self.lexicon.scan(normalized)
        injection = self.injection_screen.screen(normalized, raw=text)

        flags: list[str] = []
        if masked.spans:
            flags.append(PII_FLAG)
        if hits:
            flags.append(SENSITIVE_FLAG)
            flags += [f"{SENSITIVE_FLAG}:{c}" for c in sorted({h.category for h in hits})]
        if injection.flagged:
            flags.append(INJECTION_FLAG)
        if language not in FULLY_HANDLED:
            flags.append(UNSUPPORTED_LANGUAGE_FLAG)
        return PreprocessedMessage(
            cleaned=cleaned,
            normalized=normalized,
            language=language,
            language_confidence=confidence,
            masked=masked,
            flags=flags,
            sensitive_hits=hits,
            injection=injection,
        )
