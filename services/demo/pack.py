"""The domain pack: the intents and FAQ that make kefu speak for one business.

A pack is a folder with ``intents.yaml`` and ``faq.yaml`` (see ``services/demo/pack/``
for the demo online store). ``load_domain_pack`` reads and validates it once at start-up
so that a broken pack fails loudly, naming the entry, instead of misbehaving later.
This module knows nothing of gRPC, models or indexes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

LANGUAGES = ("zh", "en")
ACTIONS = ("answer", "handoff", "smalltalk")
SUPPORTED_VERSION = 1


@dataclass(frozen=True)
class Intent:
    """What a customer wants, with example utterances per language."""

    name: str
    action: str  # answer | handoff | smalltalk
    description: str
    examples: dict[str, list[str]]
    # Fixed reply per language; only smalltalk intents have them.
    replies: dict[str, str] = field(default_factory=dict)
    # Short name per language shown to the customer when Dialog asks which of two
    # intents was meant ("退货政策" / "return policy"); optional.
    titles: dict[str, str] = field(default_factory=dict)
    # Category of the ticket a handoff intent opens ("complaint", "sales"...).
    ticket_category: str = "handoff"
    # The FAQ entries that answer this intent, by id stem ("returns-7day" names
    # returns-7day-zh and returns-7day-en); only answer intents have them.
    faq: list[str] = field(default_factory=list)

    def title(self, language: str) -> str:
        """The customer-facing name in ``language``: the title, else the first example."""
        return self.titles.get(language) or self.examples.get(language, self.examples["en"])[0]


@dataclass(frozen=True)
class FaqEntry:
    """One question-and-answer of the knowledge base, in one language."""

    id: str
    locale: str  # zh | en
    title: str
    questions: list[str]
    answer: str
    tags: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class DomainPack:
    intents: list[Intent]
    faq: list[FaqEntry]
    # Other shops and marketplaces customers mention (intents.yaml `other_shops`): a
    # question about an order placed there is not answered from this store's FAQ.
    other_shops: list[str] = field(default_factory=list)
    # What customers write that the store does not handle (intents.yaml `out_of_scope`,
    # per language): the intent classifier's out-of-scope class, never an intent.
    out_of_scope: dict[str, list[str]] = field(default_factory=dict)

    def intent(self, name: str) -> Intent:
        """The intent called ``name``; ``KeyError`` if the pack has none."""
        for intent in self.intents:
            if intent.name == name:
                return intent
        raise KeyError(f"no intent named {name!r} in the domain pack")

    def faq_for(self, locale: str) -> list[FaqEntry]:
        return [entry for entry in self.faq if entry.locale == locale]

    def faq_of(self, intent: str) -> set[str]:
        """Ids of the FAQ entries (every language) linked to the intent called ``intent``."""
        try:
            stems = set(self.intent(intent).faq)
        except KeyError:
            return set()
        return {entry.id for entry in self.faq if faq_stem(entry.id) in stems}

    def linking_intents(self) -> dict[str, set[str]]:
        """FAQ entry id (every language) -> the names of the intents that link to it; entries
        no intent links to are absent."""
        by_stem: dict[str, set[str]] = {}
        for intent in self.intents:
            for stem in intent.faq:
                by_stem.setdefault(stem, set()).add(intent.name)
        return {entry.id: by_stem[faq_stem(entry.id)] for entry in self.faq if faq_stem(entry.id) in by_stem}


def faq_stem(entry_id: str) -> str:
    """``returns-7day-zh`` -> ``returns-7day``: the id without its language suffix."""
    stem, _, lang = entry_id.rpartition("-")
    return stem if stem and lang in LANGUAGES else entry_id


def load_domain_pack(path: str | Path) -> DomainPack:
    """Read ``intents.yaml`` and ``faq.yaml`` from the folder ``path`` and validate them.

    Raises ``ValueError`` naming the file and the offending entry.
    """
    folder = Path(path)
    intents_doc = _read(folder / "intents.yaml", "intents")
    faq_doc = _read(folder / "faq.yaml", "entries")
    intents = [_intent(raw, i) for i, raw in enumerate(intents_doc["intents"])]
    faq = [_faq_entry(raw, i) for i, raw in enumerate(faq_doc["entries"])]
    _unique("intents.yaml: intent name", [intent.name for intent in intents])
    _unique("faq.yaml: entry id", [entry.id for entry in faq])
    stems = {faq_stem(entry.id) for entry in faq}
    for intent in intents:
        unknown = [s for s in intent.faq if s not in stems]
        if unknown:
            raise ValueError(f"intents.yaml: intent {intent.name!r}: 'faq' names no entry of faq.yaml: {', '.join(unknown)}")
    shops = intents_doc.get("other_shops") or []
    if not isinstance(shops, list) or not all(isinstance(x, str) and x.strip() for x in shops):
        raise ValueError(f"{folder / 'intents.yaml'}: 'other_shops' must be a list of shop names")
    return DomainPack(intents=intents, faq=faq, other_shops=[x.strip() for x in shops], out_of_scope=_out_of_scope(intents_doc, intents))


def _out_of_scope(doc: dict[str, Any], intents: list[Intent]) -> dict[str, list[str]]:
    raw = doc.get("out_of_scope")
    if raw is None:
        return {}
    where = "intents.yaml: out_of_scope"
    if not isinstance(raw, dict) or not isinstance(raw.get("examples"), dict) or set(raw) - {"examples"}:
        raise ValueError(f"{where} must be a mapping with 'examples' per language ({', '.join(LANGUAGES)})")
    unknown = set(raw["examples"]) - set(LANGUAGES)
    if unknown:
        raise ValueError(f"{where}: examples in unsupported languages {sorted(unknown)}")
    out = {lang: _texts(texts, f"{where}: examples.{lang}") for lang, texts in raw["examples"].items()}
    known = {text: intent.name for intent in intents for texts in intent.examples.values() for text in texts}
    clash = [f"{text!r} ({known[text]})" for texts in out.values() for text in texts if text in known]
    if clash:
        raise ValueError(f"{where}: also an intent's example: {', '.join(clash[:5])}")
    return out


def _read(file: Path, key: str) -> dict[str, Any]:
    try:
        with open(file, encoding="utf-8") as fh:
            doc = yaml.safe_load(fh)
    except FileNotFoundError:
        raise ValueError(f"{file}: file not found") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"{file}: not valid YAML: {exc}") from exc
    if not isinstance(doc, dict):
        raise ValueError(f"{file}: expected a mapping with 'version' and '{key}'")
    if doc.get("version") != SUPPORTED_VERSION:
        raise ValueError(f"{file}: unsupported version {doc.get('version')!r}, expected {SUPPORTED_VERSION}")
    if not isinstance(doc.get(key), list) or not doc[key]:
        raise ValueError(f"{file}: '{key}' must be a non-empty list")
    return doc


def _text(raw: dict[str, Any], key: str, where: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{where}: '{key}' must be a non-empty string")
    return value.strip()


def _texts(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v.strip() for v in value):
        raise ValueError(f"{where} must be a non-empty list of non-empty strings")
    return [v.strip() for v in value]


def _intent(raw: Any, index: int) -> Intent:
    if not isinstance(raw, dict):
        raise ValueError(f"intents.yaml: intent #{index} is not a mapping")
    name = raw.get("name")
    where = f"intents.yaml: intent {name!r}" if isinstance(name, str) and name else f"intents.yaml: intent #{index}"
    name = _text(raw, "name", where)
    action = _text(raw, "action", where)
    if action not in ACTIONS:
        raise ValueError(f"{where}: action {action!r} is not one of {', '.join(ACTIONS)}")
    examples_raw = raw.get("examples")
    if not isinstance(examples_raw, dict):
        raise ValueError(f"{where}: 'examples' must map each language ({', '.join(LANGUAGES)}) to a list")
    examples: dict[str, list[str]] = {}
    for lang in LANGUAGES:
        if lang not in examples_raw:
            raise ValueError(f"{where}: missing {lang} examples")
        examples[lang] = _texts(examples_raw[lang], f"{where}: examples.{lang}")
    unknown = set(examples_raw) - set(LANGUAGES)
    if unknown:
        raise ValueError(f"{where}: examples in unsupported languages {sorted(unknown)}")
    replies_raw = raw.get("replies") or {}
    if not isinstance(replies_raw, dict):
        raise ValueError(f"{where}: 'replies' must map each language to a string")
    replies: dict[str, str] = {}
    if action == "smalltalk":
        for lang in LANGUAGES:
            replies[lang] = _text(replies_raw, lang, f"{where}: replies")
    elif replies_raw:
        raise ValueError(f"{where}: only smalltalk intents have fixed replies (action is {action!r})")
    titles_raw = raw.get("titles") or {}
    if not isinstance(titles_raw, dict) or set(titles_raw) - set(LANGUAGES):
        raise ValueError(f"{where}: 'titles' must map languages ({', '.join(LANGUAGES)}) to short names")
    titles = {lang: _text(titles_raw, lang, f"{where}: titles") for lang in titles_raw}
    ticket_category = raw.get("ticket_category", "handoff")
    if not isinstance(ticket_category, str) or not ticket_category.strip():
        raise ValueError(f"{where}: 'ticket_category' must be a non-empty string")
    if "ticket_category" in raw and action != "handoff":
        raise ValueError(f"{where}: only handoff intents open tickets ('ticket_category' with action {action!r})")
    faq_raw = raw.get("faq") or []
    if not isinstance(faq_raw, list) or not all(isinstance(f, str) and f.strip() for f in faq_raw):
        raise ValueError(f"{where}: 'faq' must be a list of FAQ entry ids (without the language suffix)")
    if faq_raw and action != "answer":
        raise ValueError(f"{where}: only answer intents link FAQ entries ('faq' with action {action!r})")
    return Intent(
        name=name,
        action=action,
        description=_text(raw, "description", where),
        examples=examples,
        replies=replies,
        titles=titles,
        ticket_category=ticket_category.strip(),
        faq=[f.strip() for f in faq_raw],
    )


def _faq_entry(raw: Any, index: int) -> FaqEntry:
    if not isinstance(raw, dict):
        raise ValueError(f"faq.yaml: entry #{index} is not a mapping")
    entry_id = raw.get("id")
    where = f"faq.yaml: entry {entry_id!r}" if isinstance(entry_id, str) and entry_id else f"faq.yaml: entry #{index}"
    entry_id = _text(raw, "id", where)
    locale = _text(raw, "locale", where)
    if locale not in LANGUAGES:
        raise ValueError(f"{where}: locale {locale!r} is not one of {', '.join(LANGUAGES)}")
    tags = raw.get("tags") or []
    if not isinstance(tags, list) or not all(isinstance(t, str) and t for t in tags):
        raise ValueError(f"{where}: 'tags' must be a list of strings")
    return FaqEntry(
        id=entry_id,
        locale=locale,
        title=_text(raw, "title", where),
        questions=_texts(raw.get("questions"), f"{where}: questions"),
        answer=_text(raw, "answer", where),
        tags=list(tags),
    )


def _unique(what: str, values: list[str]) -> None:
    seen: set[str] = set()
    for value in values:
        if value in seen:
            raise ValueError(f"{what} {value!r} is not unique")
        seen.add(value)
