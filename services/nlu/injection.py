"""Prompt-injection screening: flag messages that try to steer the model, never alter or drop them.

Rules (``resources/injection_rules.tsv``: name, weight, regular expression; Chinese and English) run
on the normalized message. Weights combine as a noisy OR, ``score = 1 - prod(1 - w)``, and a score at
or above the threshold (0.5) flags the message ``"prompt_injection"``. Weak rules (weight < 0.5) cover
phrases a customer may well write for their own reasons; alone they do not flag.

A customer taking back their own words is not an injection: "请忽略我上一条消息，地址写错了" and
"please ignore my previous message" name *their* message, not the assistant's instructions, and the
rules leave them alone (they exclude 我 / my / me before the target). "忽略之前的要求" without 我 is
ambiguous and flags (weight 0.6); downstream treats a flag as "handle with care", not as a refusal.

Besides the text itself, the screen looks at two derived views:

* ``compact``: Chinese with the spaces between characters removed ("忽 略 之 前 的 指 令");
* ``hidden``: text nobody sees in the raw message: Unicode tag characters, which encode invisible
  ASCII, and HTML comments. Cleaning removes it before the model sees the message, but its rules
  count; and tag characters are suspicious in themselves (rule ``hidden_text``; HTML comments are
  not, as mail clients paste them in plenty).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from services.nlu.text import RESOURCES, normalize

DEFAULT_RULES = RESOURCES / "injection_rules.tsv"
FLAG = "prompt_injection"
THRESHOLD = 0.5
HIDDEN_TEXT_WEIGHT = 0.6

_HAS_CJK = re.compile(r"[\u3400-\u9fff]")
_HAS_LATIN = re.compile(r"[A-Za-z]")
_SPACED_CJK = re.compile(r"(?<=[\u3400-\u9fff]) (?=[\u3400-\u9fff])")
# Tag characters U+E0020-E007E mirror ASCII; after U+1F3F4 (black flag) they spell a regional flag.
_TAG_RUN = re.compile(r"\U0001f3f4[\U000e0020-\U000e007e]+\U000e007f?|([\U000e0020-\U000e007e]+)")
_HTML_COMMENT = re.compile(r"<!--(.*?)-->", re.S)


@dataclass(frozen=True)
class InjectionRule:
    name: str
    weight: float
    pattern: re.Pattern[str]

    @property
    def needs(self) -> re.Pattern[str]:
        """What a text must contain for the rule to have a chance: Chinese characters for a rule
        written with them, Latin letters otherwise (saves running English rules on Chinese text)."""
        return _HAS_CJK if _HAS_CJK.search(self.pattern.pattern) else _HAS_LATIN


@dataclass(frozen=True)
class InjectionMatch:
    """One rule that matched: where (offsets into the view named by ``source``) and what."""

    rule: str
    weight: float
    start: int
    end: int
    text: str
    source: str = "text"  # "text" (the screened text), "compact", "hidden" (its normalized hidden text) or "raw"


@dataclass
class InjectionFinding:
    flagged: bool = False
    score: float = 0.0
    matches: list[InjectionMatch] = field(default_factory=list)

    @property
    def rules(self) -> list[str]:
        """Names of the rules that matched, in order, without repeats."""
        return list(dict.fromkeys(m.rule for m in self.matches))


def load_rules(path: str | Path = DEFAULT_RULES) -> list[InjectionRule]:
    """Parse a rules file; raises ``ValueError`` naming the line of a malformed rule."""
    rules: list[InjectionRule] = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.split("\t")
        if len(parts) != 3:
            raise ValueError(f"{path}:{number}: expected '<name>\\t<weight>\\t<pattern>'")
        name, weight, pattern = (p.strip() for p in parts)
        try:
            w = float(weight)
            compiled = re.compile(pattern, re.IGNORECASE)
        except (ValueError, re.error) as e:
            raise ValueError(f"{path}:{number}: rule {name!r}: {e}") from e
        if not 0.0 < w <= 1.0:
            raise ValueError(f"{path}:{number}: rule {name!r}: weight {w} outside (0, 1]")
        rules.append(InjectionRule(name, w, compiled))
    return rules


def smuggled_text(raw: str) -> str:
    """ASCII hidden in Unicode tag characters (invisible in every client; flag sequences excepted)."""
    pieces = ["".join(chr(ord(c) - 0xE0000) for c in m.group(1)) for m in _TAG_RUN.finditer(raw) if m.group(1)]
    return " ".join(p.strip() for p in pieces if p.strip())


def hidden_text(raw: str) -> str:
    """Text carried invisibly by a raw message: decoded tag characters and HTML comments."""
    pieces = [smuggled_text(raw)]
    if "<!--" in raw:
        pieces += [m.group(1) for m in _HTML_COMMENT.finditer(raw)]
    return " ".join(p.strip() for p in pieces if p.strip())


class InjectionScreen:
    """Screens normalized customer messages against prompt-injection rules."""

    def __init__(self, rules_path: str | Path | None = None, threshold: float = THRESHOLD) -> None:
        self.rules = load_rules(rules_path or DEFAULT_RULES)
        self.threshold = threshold
        self._gated = [(rule, rule.needs) for rule in self.rules]

    def _matches(self, text: str, source: str) -> list[InjectionMatch]:
        found = []
        present = {p: bool(p.search(text)) for p in (_HAS_CJK, _HAS_LATIN)}
        for rule, needs in self._gated:
            if not present[needs]:
                continue
            m = rule.pattern.search(text)
            if m:
                found.append(InjectionMatch(rule.name, rule.weight, m.start(), m.end(), m.group(0), source))
        return found

    def screen(self, text: str, raw: str | None = None) -> InjectionFinding:
        """Screen ``text`` (normalized); ``raw``, the message as received, adds its hidden text."""
        matches = self._matches(text, "text")
        compact = _SPACED_CJK.sub("", text)
        if compact != text:
            seen = {m.rule for m in matches}
            matches += [m for m in self._matches(compact, "compact") if m.rule not in seen]
        if raw:
            smuggled = smuggled_text(raw)
            if smuggled:  # nobody types tag characters by accident (HTML comments, by contrast, come with pasted mail)
                matches.append(InjectionMatch("hidden_text", HIDDEN_TEXT_WEIGHT, 0, len(smuggled), smuggled, "raw"))
            hidden = hidden_text(raw)
            if hidden:
                seen = {m.rule for m in matches}
                matches += [m for m in self._matches(normalize(hidden), "hidden") if m.rule not in seen]
        if not matches:
            return InjectionFinding()
        matches = _drop_shadowed(matches)
        keep = 1.0
        for m in matches:
            keep *= 1.0 - m.weight
        score = round(1.0 - keep, 4)
        return InjectionFinding(score >= self.threshold, score, matches)


def _drop_shadowed(matches: list[InjectionMatch]) -> list[InjectionMatch]:
    """A weaker rule matching inside a stronger rule's match adds no evidence ("ignore previous
    instructions" is one signal, not also "ignore previous")."""
    return [
        m
        for m in matches
        if not any(
            o is not m and o.source == m.source and o.weight > m.weight and o.start <= m.start and m.end <= o.end for o in matches
        )
    ]


@lru_cache(maxsize=1)
def default_screen() -> InjectionScreen:
    return InjectionScreen()


def screen_injection(text: str, raw: str | None = None) -> InjectionFinding:
    """``InjectionScreen.screen`` with the rules shipped in resources."""
    return default_screen().screen(text, raw)
