"""Dialog's decisions that rest on NLU's reading alone (pure methods of DialogEngine):
when to ask which of two intents was meant, when the knowledge answers, and how
dissatisfied turns are counted."""

from __future__ import annotations

from kefu.v1 import common_pb2, knowledge_pb2, nlu_pb2
from services.config import KefuConfig
from services.demo.pack import load_domain_pack
from services.dialog.core import DialogEngine, TurnOutcome
from services.dialog.replies import reply
from services.dialog.sessions import SessionRecord, TurnRecord

CFG = KefuConfig()
PACK = load_domain_pack(CFG.domain_pack)
ENGINE = DialogEngine(CFG, PACK, sessions=None, upstream=None, tickets=None)  # only pure methods are used


def _outcome(*candidates: tuple[str, float], out_of_scope: bool = False) -> TurnOutcome:
    understanding = nlu_pb2.AnalyzeResponse(
        language="zh",
        intents=[common_pb2.IntentCandidate(name=n, confidence=c) for n, c in candidates],
        out_of_scope=out_of_scope,
    )
    top = candidates[0]
    return TurnOutcome("s", 1, "", "zh", top[0], top[1], understanding)


def test_two_close_intents_are_asked_about():
    pair = ENGINE.knowledge.clarification(_outcome(("return_policy", 0.41), ("return_request", 0.33)))
    assert pair is not None and [i.name for i in pair] == ["return_policy", "return_request"]
    text = reply("clarify", "zh", first=pair[0].title("zh"), second=pair[1].title("zh"))
    assert pair[0].title("zh") in text and pair[1].title("zh") in text and "「" in text


def test_no_clarification_when_one_intent_clearly_leads_or_the_message_is_off_topic():
    assert ENGINE.knowledge.clarification(_outcome(("return_policy", 0.70), ("return_request", 0.20))) is None  # wide margin
    assert ENGINE.knowledge.clarification(_outcome(("return_policy", 0.20), ("return_request", 0.15))) is None  # neither plausible
    assert ENGINE.knowledge.clarification(_outcome(("return_policy", 0.41), ("return_request", 0.33), out_of_scope=True)) is None
    assert ENGINE.knowledge.clarification(_outcome(("greeting", 0.41), ("return_request", 0.33))) is None  # smalltalk is not asked about
    assert ENGINE.knowledge.clarification(_outcome(("return_policy", 0.9))) is None
    # An intent the knowledge has no entry for is not offered as a choice.
    assert ENGINE.knowledge.clarification(_outcome(("product_recommendation", 0.39), ("price_match", 0.35))) is None
    assert ENGINE.knowledge.clarification(_outcome(("price_match", 0.39), ("price_protection", 0.35))) is not None


def test_titles_exist_in_both_languages_for_every_intent():
    for intent in PACK.intents:
        assert intent.title("zh").strip() and intent.title("en").strip(), intent.name


def _session(*scores: float) -> SessionRecord:
    record = SessionRecord("s", "", "", "", "bot")
    record.turns = [TurnRecord(i + 1, "x", "y", "order_status", [], [], "", dissatisfaction=s) for i, s in enumerate(scores)]
    return record


def test_dissatisfied_streak_counts_turns_in_a_row_ending_now():
    t = CFG.dialog.dissatisfaction_threshold
    assert ENGINE._dissatisfied_streak(_session(), t + 0.1) == 1
    assert ENGINE._dissatisfied_streak(_session(t + 0.2, t + 0.1), t) == 3
    assert ENGINE._dissatisfied_streak(_session(t + 0.2, t - 0.3, t + 0.1), t + 0.05) == 2  # a calm turn breaks the streak
    assert ENGINE._dissatisfied_streak(_session(t + 0.2, t + 0.2), t - 0.01) == 0  # this turn is calm


def _found(doc_id: str, answerability: float) -> knowledge_pb2.SearchResponse:
    return knowledge_pb2.SearchResponse(hits=[knowledge_pb2.RetrievalHit(doc_id=doc_id, text="...")], answerability=answerability)


def test_knowledge_sure_on_its_own_answers_whatever_nlu_says():
    k = CFG.knowledge
    assert ENGINE.knowledge.answers(_found("shipping-delivered-not-received-en", k.confident_threshold), _outcome(("product_usage", 0.96)))
    assert not ENGINE.knowledge.answers(knowledge_pb2.SearchResponse(answerability=0.99), _outcome(("return_policy", 0.9)))


def test_a_near_miss_answers_only_when_nlu_hears_the_entrys_intent():
    """Between the near-miss and the agreement threshold, the hit must be an entry the
    pack links to one of NLU's two best intents; documents are not judged that way."""
    k = CFG.knowledge
    near = (k.near_miss_threshold + k.agreement_threshold) / 2
    assert ENGINE.knowledge.answers(_found("shipping-delivered-not-received-en", (k.agreement_threshold + k.confident_threshold) / 2),
                           _outcome(("product_usage", 0.96)))  # higher up, NLU's in-domain reading is enough
    assert ENGINE.knowledge.answers(_found("shipping-delivered-not-received-en", near), _outcome(("parcel_not_received", 0.8)))
    assert ENGINE.knowledge.answers(_found("returns-7day-en", near), _outcome(("return_request", 0.6), ("return_policy", 0.3)))
    # "how do I make hong shao rou? my grandma's recipe got lost" meets the lost-parcel entry.
    assert not ENGINE.knowledge.answers(_found("shipping-delivered-not-received-en", near), _outcome(("product_usage", 0.96)))
    assert ENGINE.knowledge.answers(_found("doc:Repair-and-warranty-handbook.md", near), _outcome(("warranty", 0.8)))
    # Below the near miss, or NLU unsure or out of scope: no answer either way.
    assert not ENGINE.knowledge.answers(_found("returns-7day-en", CFG.knowledge.near_miss_threshold - 0.01), _outcome(("return_policy", 0.9)))
    assert not ENGINE.knowledge.answers(_found("returns-7day-en", near), _outcome(("return_policy", CFG.dialog.answer_intent_confidence - 0.05)))
    assert not ENGINE.knowledge.answers(_found("returns-7day-en", near), _outcome(("return_policy", 0.9), out_of_scope=True))


def _ranked(*hits: tuple[str, float]) -> knowledge_pb2.SearchResponse:
    return knowledge_pb2.SearchResponse(
        hits=[knowledge_pb2.RetrievalHit(doc_id=d, text=d, answerability=a) for d, a in hits], answerability=hits[0][1]
    )


def test_an_entry_linked_to_the_intent_nlu_is_sure_of_goes_first_when_more_answerable():
    """「寄来的颜色不对」 ranked under the authenticity entry by its words, heard as
    wrong_item_received: the wrong-item entry lower down is taken when Knowledge rates it
    more answerable; never when NLU is unsure, out of scope, or the linked hit rates lower."""
    linked_first = ENGINE.knowledge._linked_first
    sure = CFG.dialog.linked_entry_confidence + 0.05
    found = _ranked(("product-authenticity-zh", 0.05), ("shipping-split-zh", 0.3), ("wrong-item-zh", 0.7))
    moved = linked_first(found, _outcome(("wrong_item_received", sure)))
    assert [h.doc_id for h in moved.hits] == ["wrong-item-zh", "product-authenticity-zh", "shipping-split-zh"]
    assert abs(moved.answerability - 0.7) < 1e-6 and found.hits[0].doc_id == "product-authenticity-zh"  # a copy
    assert ENGINE.knowledge.answers(moved, _outcome(("wrong_item_received", sure)))
    for outcome in (
        _outcome(("wrong_item_received", CFG.dialog.linked_entry_confidence - 0.05)),  # NLU unsure
        _outcome(("wrong_item_received", sure), out_of_scope=True),
        _outcome(("product_usage", sure)),  # no link to any hit
    ):
        assert linked_first(found, outcome) is found
    lower = _ranked(("product-authenticity-zh", 0.5), ("wrong-item-zh", 0.4))
    assert linked_first(lower, _outcome(("wrong_item_received", sure))) is lower
    first_linked = _ranked(("wrong-item-zh", 0.1), ("product-authenticity-zh", 0.9))
    assert linked_first(first_linked, _outcome(("wrong_item_received", sure))) is first_linked


def test_an_unknown_answer_style_is_refused_at_start():
    import copy

    import pytest

    cfg = copy.deepcopy(CFG)
    cfg.dialog.answer_style = "poetic"
    with pytest.raises(ValueError, match="answer_style must be one of verbatim, extractive, generate"):
        DialogEngine(cfg, PACK, sessions=None, upstream=None, tickets=None)
