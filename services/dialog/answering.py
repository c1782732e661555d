"""Answering a customer's question from the knowledge base (one part of a Dialog turn).

Knowledge is searched (the imported store's own policy first); its best hit answers when
Knowledge is sure on its own (``confident_threshold``), or fairly sure and NLU reads an
in-domain intent (``near_miss_threshold``), below ``agreement_threshold`` only when that
intent links to the entry; an FAQ entry never when NLU reads the message as off-topic
(the pack's out-of-scope class: homework, recipes, the weather). A message that asks two
things also gets the entry that answers its other question. The answer is the passage verbatim, its relevant sentences
(extractive.py) or the model's reply checked by grounding.py; a reply cut by a model
failure is withdrawn and replaced (``Replacement``). When nothing answers: a question
back about two close intents, or an honest abstention with the offer of a person; an
order at another shop is declined (elsewhere.py).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, AsyncIterator

from kefu.v1 import generation_pb2, knowledge_pb2
from services.config import KefuConfig
from services.demo.pack import DomainPack, Intent
from services.dialog.elsewhere import other_shop
from services.dialog.extractive import extract, without_repeats
from services.dialog.grounding import ReplyCheck
from services.dialog.questions import sub_questions_in_context
from services.dialog.replies import reply
from services.dialog.sessions import SessionRecord, StoredAction, StoredCitation
from services.dialog.upstream import Upstream, history_message
from services.errors import Unavailable

if TYPE_CHECKING:
    from services.dialog.core import TurnOutcome

log = logging.getLogger(__name__)

# How knowledge answers are composed (Dialog.answer_style in config.py).
ANSWER_STYLES = ("verbatim", "extractive", "generate")


class Replacement(str):
    """Reply text that replaces everything the turn has streamed so far (a generated
    reply cut by a model failure, replaced by the passage): TextChunk.replace."""


class KnowledgeAnswers:
    def __init__(self, cfg: KefuConfig, pack: DomainPack, upstream: Upstream) -> None:
        if cfg.dialog.answer_style not in ANSWER_STYLES:
            raise ValueError(f"dialog.answer_style must be one of {', '.join(ANSWER_STYLES)}, not {cfg.dialog.answer_style!r}")
        self._cfg = cfg
        self._pack = pack
        self._upstream = upstream
        # FAQ entries some intent of the pack links to (intents.yaml `faq:`), with those intents.
        self._entry_intents = pack.linking_intents()

    def _intent(self, name: str) -> Intent | None:
        try:
            return self._pack.intent(name)
        except KeyError:
            return None

    def clarification(self, outcome: TurnOutcome) -> tuple[Intent, Intent] | None:
        """The two intents to ask about when NLU cannot tell them apart, else None."""
        u = outcome.understanding
        if u.out_of_scope or len(u.intents) < 2:
            return None
        d = self._cfg.dialog
        first, second = u.intents[0], u.intents[1]
        a, b = self._intent(first.name), self._intent(second.name)
        if a is None or b is None or "smalltalk" in (a.action, b.action):
            return None
        if self._entry_intents and any(i.action == "answer" and not i.faq for i in (a, b)):
            # The knowledge has nothing for that intent ("二手车" read as a product
            # recommendation): asking which was meant would lead nowhere.
            return None
        if second.confidence < d.clarify_min_confidence or first.confidence - second.confidence >= d.clarify_margin:
            return None
        return a, b

    def answers(self, found: knowledge_pb2.SearchResponse, outcome: TurnOutcome) -> bool:
        """Whether the best hit answers the question: Knowledge is confident on its
        own, or fairly sure and NLU is confident the question is an in-domain one; an
        FAQ entry never when NLU reads the message as off-topic (``off_topic_threshold``).
        A document passage is not judged so: documents reach past what the pack's
        intents and out-of-scope examples know (on the tune half of bench/answers the
        store's questions NLU finds most off-topic are the two about documents)."""
        if not found.hits:
            return False
        if outcome.understanding.off_topic >= self._cfg.dialog.off_topic_threshold and found.hits[0].doc_id in self._entry_intents:
            return False
        k = self._cfg.knowledge
        if found.answerability >= k.confident_threshold:
            return True
        intent = self._intent(outcome.intent)
        in_domain = (
            not outcome.understanding.out_of_scope and intent is not None and intent.action == "answer"
            and outcome.intent_confidence >= self._cfg.dialog.answer_intent_confidence
        )
        if not in_domain or found.answerability < k.near_miss_threshold:
            return False
        return found.answerability >= k.agreement_threshold or self._agrees(found.hits[0].doc_id, outcome)

    def _agrees(self, doc_id: str, outcome: TurnOutcome) -> bool:
        """Whether NLU agrees with a near-miss hit: an FAQ entry that the pack links to
        intents must be linked to one of the customer's two best intents ("how do I make
        hong shao rou? my recipe got lost" meets the lost-parcel entry, but NLU hears a
        product question). Documents and entries no intent links are not judged."""
        if doc_id not in self._entry_intents:
            return True
        return any(doc_id in self._pack.faq_of(c.name) for c in outcome.understanding.intents[:2] if c.confidence >= 0.1)


    async def search(self, outcome: TurnOutcome, store_format: str = "", query: str = "") -> knowledge_pb2.SearchResponse:
        u = outcome.understanding
        question = query or u.masked_text
        # NLU's embedding of the masked message, for Knowledge to reuse: only for exactly that
        # text (a sub-question is embedded by Knowledge).
        vector = {"query_embedding": u.query_embedding, "embedder_id": u.embedder_id} if question == u.masked_text else {}
        found = None
        if store_format and store_format != "demo":
            # An imported store's own knowledge (its policy, `kefu store import`) first.
            from services.erp.pack_knowledge import pack_tag

            found = await self._upstream.search(
                question, locales=[outcome.language], top_k=self._cfg.knowledge.top_k, tags=[pack_tag(store_format)], **vector
            )
            if not found.hits:
                found = None
        if found is None:
            found = await self._upstream.search(question, locales=[outcome.language], top_k=self._cfg.knowledge.top_k, **vector)
        if found.degraded:
            outcome.degraded = True  # searched with the in-process embedder: Triton was away
        found = self._surer_first(found, self._cfg.dialog.near_tie)
        return self._linked_first(found, outcome) if question == u.masked_text else found

    @staticmethod
    def _surer_first(found: knowledge_pb2.SearchResponse, tie: float) -> knowledge_pb2.SearchResponse:
        """``found`` with its second hit first when the two rank within ``tie`` (relative
        fused score) and Knowledge rates the second more answerable (「运费怎么算？」 meets
        「国外运费是怎么算的」 by its words and 「运费多少钱」 by its meaning)."""
        if len(found.hits) < 2 or found.hits[1].score < found.hits[0].score * (1.0 - tie):
            return found
        if found.hits[1].answerability <= found.hits[0].answerability:
            return found
        return _first(found, 1)

    def _linked_first(self, found: knowledge_pb2.SearchResponse, outcome: TurnOutcome) -> knowledge_pb2.SearchResponse:
        """``found`` with the best hit that NLU's intent links to first, when NLU is sure of
        that intent (``linked_entry_confidence``), the first hit is not linked to it and
        Knowledge rates the linked one more answerable (RetrievalHit.answerability)."""
        u = outcome.understanding
        if not found.hits or u.out_of_scope or not u.intents or u.intents[0].confidence < self._cfg.dialog.linked_entry_confidence:
            return found
        linked = self._pack.faq_of(u.intents[0].name)
        if not linked or found.hits[0].doc_id in linked:
            return found
        best = max((i for i in range(1, len(found.hits)) if found.hits[i].doc_id in linked), key=lambda i: found.hits[i].answerability, default=0)
        if not best or found.hits[best].answerability <= found.answerability:
            return found
        return _first(found, best)

    async def answer(
        self, outcome: TurnOutcome, session: SessionRecord, store_format: str = "", found: knowledge_pb2.SearchResponse | None = None
    ) -> AsyncIterator[str]:
        question = outcome.understanding.masked_text
        shop = other_shop(question, self._pack.other_shops)
        if shop:
            # An order placed at another shop: this store's FAQ does not answer for it.
            outcome.reply_text = reply("other_shop", outcome.language, shop=shop)
            outcome.actions.append(StoredAction("abstain", detail={"other_shop": shop}))
            yield outcome.reply_text
            return
        if found is None:
            try:
                found = await self.search(outcome, store_format)
            except Unavailable as exc:
                # The knowledge base is away: say so honestly and offer a person, never an error.
                log.warning("knowledge unavailable, the customer is offered a person: %s", exc)
                outcome.degraded = True
                outcome.reply_text = reply("abstain", outcome.language)
                outcome.actions.append(StoredAction("abstain", detail={"knowledge": "unavailable"}))
                yield outcome.reply_text
                return
        if not self.answers(found, outcome):
            pair = self.clarification(outcome)
            if pair is not None:
                outcome.reply_text = reply("clarify", outcome.language, first=pair[0].title(outcome.language), second=pair[1].title(outcome.language))
                outcome.actions.append(StoredAction("clarify", detail={"intents": f"{pair[0].name},{pair[1].name}"}))
                yield outcome.reply_text
                return
            outcome.reply_text = reply("abstain", outcome.language)
            outcome.actions.append(StoredAction("abstain", detail={"answerability": f"{found.answerability:.3f}"}))
            yield outcome.reply_text
            return
        best = found.hits[0]
        # A second question in the message that another entry answers: answered too.
        also = await self._second_answer(outcome, store_format, found)
        asked = [(best, question)]
        if also is not None:
            # In the order the customer asked.
            asked.insert(0 if also[2] else 1, (also[0], also[1]))
        # Each passage less what an earlier one already says (the hotline's hours in both).
        composed: list[tuple[knowledge_pb2.RetrievalHit, str, str]] = []
        for hit, asks in asked:
            if text := without_repeats("\n\n".join(t for _, _, t in composed), hit.text):
                composed.append((hit, asks, text))
        passages = [h for h, _, _ in composed]
        outcome.citations = [_citation(h, found.kb_version) for h in passages]
        outcome.actions.append(StoredAction("answer", detail={"doc_id": ",".join(h.doc_id for h in passages)}))
        verbatim = "\n\n".join(t for _, _, t in composed)
        style = self._cfg.dialog.answer_style
        if style in ("verbatim", "extractive"):
            outcome.actions[-1].detail["style"] = style
            text = verbatim if style == "verbatim" else "\n\n".join(extract(q, t) for _, q, t in composed)
            outcome.reply_text = text
            yield text
            return
        request = generation_pb2.GenerateRequest(
            user_message=question,
            language=outcome.language,
            passages=[generation_pb2.Passage(doc_id=h.doc_id, title=h.title, text=t) for h, _, t in composed],
            history=[m for t in session.turns[-4:] for m in (history_message("customer", t.customer_text), history_message("assistant", t.reply_text))],
            params=generation_pb2.SamplingParams(max_tokens=self._cfg.models.max_tokens, temperature=0.0),
            session_id=session.session_id,
            intent=outcome.intent,
            kb_version=found.kb_version,
        )
        pieces: list[str] = []
        # What reached the customer: the model's text less a framing opening (grounding.py).
        streamed: list[str] = []
        check = ReplyCheck(outcome.language, verbatim)
        # The model failed during this reply (not NLU or Knowledge degrading earlier in the turn).
        model_failed = False
        try:
            async for chunk in self._upstream.generate(request):
                if chunk.HasField("final"):
                    model_failed = chunk.final.degraded
                    if chunk.final.cached:
                        outcome.actions[-1].detail["cached"] = "true"
                    break
                pieces.append(chunk.delta)
                if text := check.feed(chunk.delta):
                    streamed.append(text)
                    yield text
        except Unavailable as exc:
            # Generation itself is down (it degrades by itself when only the model
            # is): the FAQ answer verbatim is better than no answer.
            log.warning("generation failed, answering from the FAQ verbatim: %s", exc)
            model_failed = True
        if not check.finish():
            # Nothing came, or the model declined or answered in a few words although
            # the passage answers: the passage verbatim (grounding.py says why).
            if "".join(pieces).strip():
                outcome.actions[-1].detail["verbatim"] = check.reason
            else:
                model_failed = True
            streamed = [verbatim]
            yield verbatim
        elif model_failed and "".join(streamed).strip() != verbatim.strip():
            # The model failed in the middle of the reply (Generation ends the stream
            # degraded): what was streamed is replaced by the passage, never left half-written.
            log.warning("the reply was cut by a model failure: replaced by the passage")
            outcome.actions[-1].detail["verbatim"] = "cut"
            streamed = [verbatim]
            yield Replacement(verbatim)
        outcome.degraded = outcome.degraded or model_failed
        outcome.reply_text = "".join(streamed)

    async def _second_answer(
        self, outcome: TurnOutcome, store_format: str, found: knowledge_pb2.SearchResponse
    ) -> tuple[knowledge_pb2.RetrievalHit, str, bool] | None:
        """For a message that asks two things (questions.py), the entry that answers
        the one the first entry does not, with that question and whether it was asked
        before the first entry's, when Knowledge is sure of it on its own. Each question
        is looked up alone and after the story the message opens with, if any ("I'm a
        Silver member now. … and what are they worth?"); a lookup that finds another entry
        than the first counts before one that does not, then the surer; a question whose
        entry is the whole message's second hit too needs less (two lookups agree:
        ``second_answer_agreed_threshold``). A message that is one question about two
        things (「还没发货我就取消了，用的支付宝，钱多久能退回来」) gets the other entry of its own hits that Knowledge is as sure answers it, when
        no intent links both (two entries of one intent answer one thing two ways)."""
        threshold = self._cfg.knowledge.second_answer_threshold
        if threshold > 1.0:
            return None
        first = found.hits[0].doc_id
        answered: list[tuple[str, knowledge_pb2.SearchResponse]] = []
        for clause, query in sub_questions_in_context(outcome.understanding.masked_text)[:3]:
            lookups = [await self.search(outcome, store_format, query=q) for q in dict.fromkeys((clause, query))]
            answered.append((clause, max(lookups, key=lambda f: (f.hits[0].doc_id != first, f.answerability) if f.hits else (False, -1.0))))
        first_at = next((i for i, (_, f) in enumerate(answered) if f.hits and f.hits[0].doc_id == first), len(answered))
        # The whole message's second entry, when another than the first.
        runner_up = next((h.doc_id for h in found.hits[1:] if h.doc_id != first), None)
        for i, (clause, other) in enumerate(answered):
            if not other.hits or other.hits[0].doc_id == first:
                continue
            agreed = other.hits[0].doc_id == runner_up
            if other.answerability >= (min(threshold, self._cfg.knowledge.second_answer_agreed_threshold) if agreed else threshold):
                return other.hits[0], clause, i < first_at
        if answered:
            return None  # asked as several questions: each was looked up on its own
        # Entries of one intent answer one thing two ways (「运费怎么算？」: the domestic and
        # the international fees), not two things.
        same = self._entry_intents.get(first, set())
        question = outcome.understanding.masked_text
        also = max((h for h in found.hits[1:] if h.doc_id != first and not same & self._entry_intents.get(h.doc_id, set())),
                   key=lambda h: h.answerability, default=None)
        return (also, question, False) if also is not None and also.answerability >= threshold else None


def _first(found: knowledge_pb2.SearchResponse, index: int) -> knowledge_pb2.SearchResponse:
    """A copy of ``found`` with hit ``index`` moved first (the others in their order), its
    answerability the response's."""
    moved = knowledge_pb2.SearchResponse()
    moved.CopyFrom(found)
    del moved.hits[:]
    moved.hits.extend([found.hits[index], *(h for i, h in enumerate(found.hits) if i != index)])
    moved.answerability = found.hits[index].answerability
    return moved


def _citation(hit: knowledge_pb2.RetrievalHit, kb_version: int) -> StoredCitation:
    return StoredCitation(
        doc_id=hit.doc_id, title=hit.title, chunk_id=hit.chunk_id, snippet=hit.text[:200], score=hit.score, kb_version=kb_version
    )
