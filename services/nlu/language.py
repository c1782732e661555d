"""Which language a customer wrote in.

Scripts decide first (Han without kana -> zh, kana -> ja, Hangul -> ko, Thai, Arabic, Cyrillic,
Devanagari, Greek, Hebrew); Latin-script text goes to langid's bundled model restricted to the
Latin-script languages of ``SUPPORTED_LANGUAGES``. Customer messages are short and mixed, so:

* Chinese characters weigh more than Latin letters ("我的order还没到" is Chinese);
* order ids, URLs, e-mail addresses, placeholders and digits are not evidence;
* short or uncertain Latin text falls back to English, the other language handled fully.

``identify_language`` returns (code, confidence); ``detect_language`` only the code.
"""

from __future__ import annotations

import re
import threading
from typing import Any

# zh and en are handled end to end; the others are recognised (and reported) so that dialog can
# answer in a supported language and say so.
FULLY_HANDLED = ("zh", "en")
SUPPORTED_LANGUAGES = (
    "zh", "en", "ja", "ko", "fr", "de", "es", "it", "pt", "ru", "ar", "th", "vi", "id", "ms", "tr", "nl", "pl", "hi",
    "el", "he", "uk", "sv", "cs",
)  # fmt: skip
# Languages langid may choose between for Latin-script text.
_LATIN_LANGUAGES = ("en", "fr", "de", "es", "it", "pt", "vi", "id", "ms", "tr", "nl", "pl", "sv", "cs")
FALLBACK = "en"

_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002fa1f]")
_KANA = re.compile(r"[\u3040-\u30ff\u31f0-\u31ff\uff66-\uff9f]")
_HANGUL = re.compile(r"[\u1100-\u11ff\u3130-\u318f\uac00-\ud7af]")
_LATIN = re.compile(r"[A-Za-z\u00c0-\u024f\u1e00-\u1eff]")
# Other scripts that name one language of ours (Cyrillic: Ukrainian letters decide uk over ru).
_SCRIPTS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("th", re.compile(r"[\u0e00-\u0e7f]")),
    ("ar", re.compile(r"[\u0600-\u06ff\u0750-\u077f\ufb50-\ufdff\ufe70-\ufeff]")),
    ("ru", re.compile(r"[\u0400-\u04ff]")),
    ("hi", re.compile(r"[\u0900-\u097f]")),
    ("el", re.compile(r"[\u0370-\u03ff]")),
    ("he", re.compile(r"[\u0590-\u05ff]")),
)
_UKRAINIAN = re.compile(r"[іїєґІЇЄҐ]")
_NOT_EVIDENCE = re.compile(
    r"https?://\S+|www\.\S+|(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+|(?<![A-Za-z0-9])KF\d{13}(?!\d)|\[[A-Z_]+_\d+\]|[\d_]+",
    re.IGNORECASE,
)
_MIN_LETTERS = 12  # Latin text with fewer letters is taken as English without asking langid
_LANGID_CHARS = 600  # langid reads this much at most: enough to tell, and its time grows with length
# langid's answer other than English stands when it is at least _SURE, or at least _AMBIGUOUS while
# English is implausible (below _EN_PLAUSIBLE); otherwise the message is taken as English.
_SURE = 0.9
_AMBIGUOUS = 0.6
_EN_PLAUSIBLE = 0.05
_MALAY = ("id", "ms")  # Indonesian and Malay: one confidence for the pair

# Function words and customer-service words that are English and rarely anything else; a message
# whose words are 40 % these (3 at least) is English. ASCII only: "é", "ß", "ñ" send text to langid.
_ENGLISH_WORDS = frozenset(
    "the my your you is are was were has have had not where what when why how please thanks thank "
    "order orders refund return package delivery arrived yet can could would should will with for this "
    "that it and of to me i i'm don't didn't it's did does do been be get got want need help".split()
)
_WORD = re.compile(r"[a-z']+")

_identifier: Any = None
_identifier_lock = threading.Lock()


def _langid() -> Any:
    """langid's bundled model restricted to our Latin-script languages (loaded once, ~1 s)."""
    global _identifier
    if _identifier is None:
        with _identifier_lock:
            if _identifier is None:
                from langid.langid import LanguageIdentifier, model

                identifier = LanguageIdentifier.from_modelstring(model, norm_probs=True)
                identifier.set_languages(list(_LATIN_LANGUAGES))
                _identifier = identifier
    return _identifier


def warm_up() -> None:
    """Load the language model now rather than on the first Latin-script message."""
    _langid().classify("warm up")


def identify_language(text: str) -> tuple[str, float]:
    """(language code, confidence in [0, 1]) for a customer message."""
    text = _NOT_EVIDENCE.sub(" ", text)
    han = len(_HAN.findall(text))
    kana = len(_KANA.findall(text))
    hangul = len(_HANGUL.findall(text))
    latin = len(_LATIN.findall(text))
    if kana and kana * 4 >= han:  # a lone の in Chinese internet slang ("我の订单") is not Japanese
        return "ja", _share(kana + han, latin)
    if hangul:
        return "ko", _share(hangul + han, latin)
    if han and han * 3 >= latin:  # one Chinese character carries about as much as a short word
        return "zh", _share(han * 3, latin)
    for code, pattern in _SCRIPTS:
        count = len(pattern.findall(text))
        if count and count >= latin:
            if code == "ru" and _UKRAINIAN.search(text):
                code = "uk"
            return code, _share(count, latin)
    if _plainly_english(text):
        return FALLBACK, 0.95
    if latin < _MIN_LETTERS:
        # Too little to go on ("ok", "refund pls", "hi"): English, the language we serve by default.
        return FALLBACK, 0.5 if latin else 0.3
    probs = dict(_langid().rank(text[:_LANGID_CHARS]))
    code = max(probs, key=probs.__getitem__)
    confidence = probs[code]
    if code in _MALAY:  # Indonesian and Malay share most words: sure of the pair, if not of which
        confidence = sum(probs[c] for c in _MALAY)
    if code != FALLBACK and (confidence < _AMBIGUOUS or (confidence < _SURE and probs[FALLBACK] >= _EN_PLAUSIBLE)):
        # Not sure it is another language (and English is plausible, or nothing is): English.
        code, confidence = FALLBACK, max(probs[FALLBACK], 0.3)
    return code, round(float(confidence), 3)


def _plainly_english(text: str) -> bool:
    """Most customer messages in English say so in their small words; langid is not needed then."""
    words = _WORD.findall(text.lower())
    if len(words) < 3 or not text.isascii():
        return False
    common = sum(w in _ENGLISH_WORDS for w in words)
    return common >= 3 and common * 5 >= len(words) * 2


def _share(ours: int, others: int) -> float:
    return round(0.5 + 0.5 * ours / (ours + others), 3) if ours + others else 0.5


def detect_language(text: str) -> str:
    """The language code alone (see ``identify_language``)."""
    return identify_language(text)[0]
