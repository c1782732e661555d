"""The demo domain pack loads, is complete in both languages, and broken packs are refused
with a message that names the offending entry."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest
import yaml

from services.config import REPO_ROOT
from services.demo.pack import DomainPack, load_domain_pack

PACK_DIR = REPO_ROOT / "services" / "demo" / "pack"

REQUIRED_INTENTS = {
    "greeting": "smalltalk",
    "thanks": "smalltalk",
    "goodbye": "smalltalk",
    "human_agent": "handoff",
    "complaint": "handoff",
    **{
        name: "answer"
        for name in (
            "order_status", "return_policy", "return_request", "refund_status", "exchange", "cancel_order",
            "change_address", "shipping_info", "payment_methods", "invoice", "warranty", "membership",
            "promotions", "product_inquiry", "account_security",
        )
    },
}


@pytest.fixture(scope="module")
def pack() -> DomainPack:
    return load_domain_pack(PACK_DIR)


def test_required_intents_with_their_actions(pack: DomainPack) -> None:
    for name, action in REQUIRED_INTENTS.items():
        assert pack.intent(name).action == action, name
    with pytest.raises(KeyError):
        pack.intent("no_such_intent")


def test_every_intent_has_eight_examples_per_language(pack: DomainPack) -> None:
    for intent in pack.intents:
        assert len(intent.examples["zh"]) >= 8, intent.name
        assert len(intent.examples["en"]) >= 8, intent.name


def test_examples_do_not_repeat_across_intents(pack: DomainPack) -> None:
    owners = Counter(ex.casefold() for intent in pack.intents for exs in intent.examples.values() for ex in set(exs))
    assert [ex for ex, n in owners.items() if n > 1] == []


def test_smalltalk_has_replies_and_others_do_not(pack: DomainPack) -> None:
    for intent in pack.intents:
        if intent.action == "smalltalk":
            assert set(intent.replies) == {"zh", "en"}, intent.name
        else:
            assert intent.replies == {}, intent.name


def test_handoff_phrases_are_examples(pack: DomainPack) -> None:
    assert "我要转人工" in pack.intent("human_agent").examples["zh"]
    assert "I want to talk to a person" in pack.intent("human_agent").examples["en"]
    assert "我要投诉，转人工" in pack.intent("complaint").examples["zh"]


def test_faq_size_and_ids(pack: DomainPack) -> None:
    per_locale = Counter(entry.locale for entry in pack.faq)
    assert per_locale["zh"] >= 32 and per_locale["en"] >= 32
    ids = [entry.id for entry in pack.faq]
    assert len(ids) == len(set(ids))
    for entry in pack.faq:
        assert entry.id.endswith(f"-{entry.locale}"), entry.id
        assert entry.id == entry.id.lower() and " " not in entry.id, entry.id
        # Its questions as customers ask them (similar questions, 相似问): a few to a dozen or so.
        assert 2 <= len(entry.questions) <= 20 and len(set(entry.questions)) == len(entry.questions), entry.id
        assert entry.tags, entry.id


def test_faq_topics_exist_in_both_languages(pack: DomainPack) -> None:
    stems = {locale: {e.id.rsplit("-", 1)[0] for e in pack.faq_for(locale)} for locale in ("zh", "en")}
    assert stems["zh"] == stems["en"]
    tags = {tag for entry in pack.faq for tag in entry.tags}
    for topic in ("returns", "refunds", "exchanges", "shipping", "payment", "invoices", "warranty", "membership",
                  "points", "coupons", "promotions", "cancellation", "address", "account", "service",
                  "price-protection", "damaged", "gift-cards", "international"):
        assert topic in tags, topic


def test_return_policy_questions(pack: DomainPack) -> None:
    by_id = {entry.id: entry for entry in pack.faq}
    assert "你们的退货政策是什么？" in by_id["returns-7day-zh"].questions
    assert "What is your return policy?" in by_id["returns-7day-en"].questions


def test_numbers_agree_between_languages(pack: DomainPack) -> None:
    # The same rule must carry the same figures in zh and en.
    def figures(text: str) -> set[str]:
        # Months are words in English ("December 31"): keep only the day of zh dates.
        text = re.sub(r"\d+ ?月 ?(\d+) ?日", r"\1", text.replace(",", ""))
        # "1" is often a word in English ("once", "one coupon").
        return set(re.findall(r"\d+", text)) - {"1"}

    by_id = {entry.id: entry for entry in pack.faq}
    for entry in pack.faq_for("zh"):
        twin = by_id[entry.id[: -len("zh")] + "en"]
        assert figures(entry.answer) == figures(twin.answer), entry.id


# --------------------------------------------------------------------------- broken packs


def _write_pack(folder: Path, intents: list[dict], entries: list[dict]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "intents.yaml").write_text(yaml.safe_dump({"version": 1, "intents": intents}, allow_unicode=True), "utf-8")
    (folder / "faq.yaml").write_text(yaml.safe_dump({"version": 1, "entries": entries}, allow_unicode=True), "utf-8")
    return folder


def _intent(name: str, action: str = "answer", **extra) -> dict:
    raw = {"name": name, "action": action, "description": f"about {name}", "examples": {"zh": ["你好"], "en": ["hello"]}}
    raw.update(extra)
    return raw


def _entry(entry_id: str, locale: str = "zh", **extra) -> dict:
    raw = {"id": entry_id, "locale": locale, "title": "t", "questions": ["q?"], "answer": "a.", "tags": ["x"]}
    raw.update(extra)
    return raw


def test_every_answer_intent_links_faq_entries_in_both_languages(pack: DomainPack) -> None:
    """The intents say which FAQ entries answer them (calibration of answerability on
    customer-style questions reads these links): every entry is linked, each link in zh and en."""
    linked: set[str] = set()
    for intent in pack.intents:
        entries = pack.faq_of(intent.name)
        if intent.faq:
            assert {e[-2:] for e in entries} == {"zh", "en"}, intent.name
        linked |= entries
    assert linked == {entry.id for entry in pack.faq}
    assert pack.faq_of("return_policy") >= {"returns-7day-zh", "returns-7day-en"}
    assert pack.faq_of("greeting") == set() and pack.faq_of("no_such_intent") == set()


def test_minimal_pack_loads(tmp_path: Path) -> None:
    pack = load_domain_pack(_write_pack(tmp_path, [_intent("ask")], [_entry("a-zh")]))
    assert pack.intent("ask").examples == {"zh": ["你好"], "en": ["hello"]}
    assert pack.faq[0].id == "a-zh"


@pytest.mark.parametrize(
    ("intents", "entries", "message"),
    [
        ([_intent("twice"), _intent("twice")], [_entry("a-zh")], "intent name 'twice' is not unique"),
        ([_intent("shout", action="yell")], [_entry("a-zh")], "intent 'shout': action 'yell'"),
        ([_intent("hi", action="smalltalk")], [_entry("a-zh")], "intent 'hi': replies"),
        ([_intent("hi", action="smalltalk", replies={"zh": "你好"})], [_entry("a-zh")], "intent 'hi': replies: 'en'"),
        ([_intent("mono", examples={"zh": ["只有中文"]})], [_entry("a-zh")], "intent 'mono': missing en examples"),
        ([_intent("empty", examples={"zh": [], "en": ["x"]})], [_entry("a-zh")], "intent 'empty': examples.zh"),
        ([_intent("ask")], [_entry("dup-zh"), _entry("dup-zh")], "entry id 'dup-zh' is not unique"),
        ([_intent("ask")], [_entry("fr-entry", locale="fr")], "entry 'fr-entry': locale 'fr'"),
        ([_intent("ask")], [_entry("noanswer-zh", answer="")], "entry 'noanswer-zh': 'answer'"),
        ([_intent("ask", faq=["nowhere"])], [_entry("a-zh")], "intent 'ask': 'faq' names no entry of faq.yaml: nowhere"),
        ([_intent("hi", action="smalltalk", replies={"zh": "你好", "en": "hi"}, faq=["a"])], [_entry("a-zh")], "only answer intents link FAQ"),
        ([_intent("ask", faq="a")], [_entry("a-zh")], "'faq' must be a list"),
    ],
)
def test_broken_pack_names_the_entry(tmp_path: Path, intents: list[dict], entries: list[dict], message: str) -> None:
    with pytest.raises(ValueError) as excinfo:
        load_domain_pack(_write_pack(tmp_path, intents, entries))
    assert message in str(excinfo.value)


def test_missing_or_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="intents.yaml: file not found"):
        load_domain_pack(tmp_path)
    folder = _write_pack(tmp_path / "p", [_intent("ask")], [_entry("a-zh")])
    (folder / "faq.yaml").write_text("version: 2\nentries: []\n", "utf-8")
    with pytest.raises(ValueError, match="unsupported version 2"):
        load_domain_pack(folder)


def test_out_of_scope_examples_load_and_are_checked(tmp_path: Path, pack: DomainPack) -> None:
    """intents.yaml `out_of_scope`: what the store does not handle, per language; never an
    intent's example too; a broken one is refused with a message."""
    assert len(pack.out_of_scope["zh"]) >= 100 and len(pack.out_of_scope["en"]) >= 100
    assert all(len(set(texts)) == len(texts) for texts in pack.out_of_scope.values())

    def write(out_of_scope) -> Path:
        folder = _write_pack(tmp_path / f"p{len(list(tmp_path.iterdir()))}", [_intent("ask")], [_entry("a-zh")])
        doc = yaml.safe_load((folder / "intents.yaml").read_text("utf-8"))
        doc["out_of_scope"] = out_of_scope
        (folder / "intents.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True), "utf-8")
        return folder

    assert load_domain_pack(write({"examples": {"zh": ["明天下雨吗"], "en": ["will it rain"]}})).out_of_scope == {
        "zh": ["明天下雨吗"], "en": ["will it rain"]}
    assert load_domain_pack(_write_pack(tmp_path / "none", [_intent("ask")], [_entry("a-zh")])).out_of_scope == {}
    for broken, message in [
        (["明天下雨吗"], "must be a mapping"),
        ({"examples": {"fr": ["pluie"]}}, "unsupported languages"),
        ({"examples": {"zh": []}}, "examples.zh"),
        ({"examples": {"en": ["hello"]}}, "also an intent's example: 'hello' (ask)"),
    ]:
        with pytest.raises(ValueError, match=re.escape(message)):
            load_domain_pack(write(broken))


def test_linking_intents_map_each_entry_to_the_intents_that_link_it(pack: DomainPack) -> None:
    linking = pack.linking_intents()
    assert set(linking) == {entry.id for entry in pack.faq}  # every entry is linked (see above)
    assert linking["returns-7day-zh"] == linking["returns-7day-en"] == {i.name for i in pack.intents if "returns-7day" in i.faq}
    assert all(entry in pack.faq_of(name) for entry, names in linking.items() for name in names)
