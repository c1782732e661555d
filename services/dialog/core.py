"""Dialog core: how one customer turn is handled. Knows nothing of gRPC servers.

A turn: understand it (NLU) → decide (policy) → act:
- smalltalk intents get the domain pack's fixed reply;
- handoff intents (a person, a complaint) open a ticket through Temporal; a question
  asked with one that the knowledge answers on its own is answered first;
- a customer who sounds dissatisfied for several turns in a row is handed over too
  (NLU's dissatisfaction score, counted across the session's turns);
- when a store is imported behind the ERP port, task messages (identity, orders,
  cancel / change / return / exchange, order status) go to the flow engine of the
  store's domain pack (flows/engine.py): slots collected, policy checked, an explicit
  yes, the operation run as a Temporal workflow, the result reported from the store;
- while a human agent holds the conversation (``kefu agent claim``), the customer's
  message goes to the agent (recorded masked, signalled to the ticket), kefu does not
  answer it, and the reply carries the agent's replies not delivered yet, or says that
  the agent will answer;
- a message NLU flags as an attempt to steer the model ("prompt_injection") is not
  passed to the model: kefu says what it can help with, and the turn records why;
- everything else is answered from the knowledge base by the language model,
  streamed, with citations (a reply that opens by declining, or is too short to
  carry the answer, is replaced by the passage verbatim: grounding.py) — or, when
  the knowledge does not answer it, kefu asks
  which of two close intents was meant, or says it is not sure and offers a human
  agent instead of inventing.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, AsyncIterator, Callable, Protocol

from kefu.v1 import nlu_pb2
from services.agent.context import context_packet
from services.config import KefuConfig
from services.demo.pack import DomainPack, Intent
from services.dialog.flows.engine import FlowEngine, FlowReply
from services.dialog.flows.spec import FlowSpec
from services.dialog.answering import KnowledgeAnswers
from services.dialog.flows.state import FlowState
from services.dialog.questions import asks_anything, requests_something
from services.dialog.replies import reply
from services.dialog.sessions import SessionMessage, SessionRecord, SessionStore, StoredAction, StoredCitation, TurnRecord
from services.dialog.upstream import Upstream
from services.erp.port import StorePort
from services.errors import NotFound, Unavailable, require_text
from workflows.tickets.types import TicketReceipt, TicketRequest

log = logging.getLogger(__name__)


class TicketOpener(Protocol):
    async def open_ticket(self, request: TicketRequest) -> tuple[TicketReceipt, str]: ...

    async def note_customer_message(self, workflow_id: str, text: str) -> bool: ...


class OperationRunner(Protocol):
    async def run(
        self, operation: str, args: dict[str, Any], *, session_id: str, customer_id: str, language: str = "en"
    ) -> tuple[Any, str]: ...


@dataclass
class TaskDesk:
    """What task flows need: the active store (asked every turn: ``kefu store import``
    and ``reset`` switch it while kefu runs), the flows of a store's pack, and the
    runner of confirmed operations."""

    open_store: Callable[[], StorePort | None]
    flows_for: Callable[[str], list[FlowSpec]]
    operations: OperationRunner
    # The return sagas (services/erp/events.py ReturnDesk: ``await find(order_id)``), so
    # order and refund status replies say where a return or refund stands.
    returns: Any = None


@dataclass
class CustomerTurn:
    text: str
    session_id: str = ""
    channel: str = ""
    customer_id: str = ""
    language_hint: str = ""


@dataclass
class TurnOutcome:
    session_id: str
    turn_index: int
    reply_text: str
    language: str
    intent: str
    intent_confidence: float
    understanding: nlu_pb2.AnalyzeResponse
    citations: list[StoredCitation] = field(default_factory=list)
    actions: list[StoredAction] = field(default_factory=list)
    handoff: str = "bot"
    degraded: bool = False
    # The task conversation's state after this turn.
    state: FlowState = field(default_factory=FlowState)
    # Messages this turn delivered: a human agent's replies while the agent holds the
    # conversation (their texts make up reply_text), otherwise the messages that reached
    # the session since the last turn (kefu's notices), apart from the reply.
    messages: list[SessionMessage] = field(default_factory=list)


class Relayed(str):
    """Reply text written by a human agent, relayed in a turn the agent holds: the
    servicer names its ``author`` on the stream (TextChunk.author)."""

    author: str

    def __new__(cls, text: str, author: str) -> "Relayed":
        relayed = super().__new__(cls, text)
        relayed.author = author
        return relayed


# A turn yields text deltas (str) and finally one TurnOutcome.
TurnEvent = str | TurnOutcome


class DialogEngine:
    def __init__(
        self, cfg: KefuConfig, pack: DomainPack, sessions: SessionStore, upstream: Upstream, tickets: TicketOpener,
        tasks: TaskDesk | None = None,
    ) -> None:
        self._tasks = tasks
        self._cfg = cfg
        self._pack = pack
        self._sessions = sessions
        self._upstream = upstream
        self._tickets = tickets
        self.knowledge = KnowledgeAnswers(cfg, pack, upstream)
        # Smalltalk intents whose examples never ask anything (thanks, praise, goodbye): a
        # message read as one of them that asks something (「你觉得美国大选谁会赢」 heard as
        # praise) is a question, and goes to the knowledge. Greetings (「在吗？」) and "are you
        # a bot?" ask in their examples and keep their replies.
        self._statement_smalltalk = {
            i.name for i in pack.intents if i.action == "smalltalk"
            and sum(asks_anything(t) for ts in i.examples.values() for t in ts) <= 0.1 * sum(len(ts) for ts in i.examples.values())
        }

    def session(self, session_id: str) -> SessionRecord:
        record = self._sessions.get(session_id) if session_id else None
        if record is None:
            raise NotFound(f"session {session_id!r} does not exist")
        return record

    def messages(self, session_id: str, after_id: int = 0) -> list[SessionMessage]:
        """Messages for the customer outside the turns (agents' replies, kefu's notices)."""
        return self._sessions.messages(session_id, after_id)

    async def handle(self, turn: CustomerTurn) -> AsyncIterator[TurnEvent]:
        text = require_text(turn.text, field="text", max_chars=self._cfg.dialog.max_message_chars)
        session = self.session(turn.session_id) if turn.session_id else None
        understanding = await self._upstream.analyze(
            text, language_hint=turn.language_hint, session_id=session.session_id if session else ""
        )
        if session is None:
            session = self._sessions.create(customer_id=turn.customer_id, channel=turn.channel)
        language = understanding.language if understanding.language in ("zh", "en") else "en"
        top = understanding.intents[0] if understanding.intents else None
        intent = self._intent(top.name) if top else None
        confident = intent is not None and self._action_confidence(understanding, intent.action) >= self._cfg.dialog.min_intent_confidence
        outcome = TurnOutcome(
            session_id=session.session_id,
            turn_index=len(session.turns) + 1,
            reply_text="",
            language=language,
            intent=top.name if top else "",
            intent_confidence=top.confidence if top else 0.0,
            understanding=understanding,
            handoff=session.handoff,
            state=FlowState.from_json(session.state),
            # NLU understood it with its in-process stand-ins while Triton was away.
            degraded=understanding.degraded,
        )

        dissatisfaction = float(understanding.sentiment.dissatisfaction)
        if session.handoff == "agent":
            for delta in self._relay(outcome, session):
                yield delta
            await self._record(outcome, session, dissatisfaction)
            yield outcome
            return
        flows = await self._flow_engine() if "prompt_injection" not in understanding.flags else None
        # A task under way, or asked for, goes to the flows even when the customer sounds
        # upset or mentions a complaint; asking for a person by name always hands over.
        engaged = flows is not None and flows.engaged(text, outcome.state)
        wants_person = intent is not None and confident and intent.action == "handoff" and (not engaged or intent.name == "human_agent")
        flow_reply = None
        answered_first = None
        fed_up = self._dissatisfied_streak(session, dissatisfaction) >= self._cfg.dialog.dissatisfied_turns_for_handoff
        if flows is not None and not wants_person and "prompt_injection" not in understanding.flags:
            if not fed_up and await asyncio.to_thread(flows.asks_before_task, text, outcome.state):
                # "不喜欢想退掉，要怎么操作？" asks how: the knowledge answers when it can, and the
                # task is offered after the answer; when it cannot, the task starts.
                try:
                    found = await self.knowledge.search(outcome, flows.store_format)
                except Unavailable:
                    found = None  # the knowledge base is away: the task starts instead
                    outcome.degraded = True
                if found is not None and self.knowledge.answers(found, outcome):
                    answered_first = found
            if answered_first is None and (engaged or not fed_up):
                flow_reply = await asyncio.to_thread(flows.step, text, outcome.state, language)
        if flows is not None and answered_first is not None:
            async for delta in self.knowledge.answer(outcome, session, flows.store_format, found=answered_first):
                yield delta
            answered = any(a.type == "answer" for a in outcome.actions)
            offer = await asyncio.to_thread(flows.offer, text, outcome.state, language) if answered else ""
            if offer:
                outcome.reply_text += "\n" + offer
                yield "\n" + offer
        elif flows is not None and flow_reply is not None:
            await self._flow_turn(outcome, session, flows, flow_reply)
            yield outcome.reply_text
        elif wants_person:
            # "is there a human I can talk to at 11pm?", 「公司要买100台，有企业价吗」: a question
            # the knowledge answers is answered before the handoff, for the wait.
            answered = await self._answer_before_handoff(outcome, session, text, flows.store_format if flows is not None else "")
            if answered:
                yield answered + "\n\n"
            await self._open_ticket(outcome, session, intent.ticket_category)
            yield outcome.reply_text
            if answered:
                outcome.reply_text = answered + "\n\n" + outcome.reply_text
        elif session.handoff == "bot" and self._dissatisfied_streak(session, dissatisfaction) >= self._cfg.dialog.dissatisfied_turns_for_handoff:
            await self._open_ticket(outcome, session, "complaint", reply_name="dissatisfied_handoff")
            outcome.actions[0].detail["reason"] = "dissatisfied"
            yield outcome.reply_text
        elif "prompt_injection" in understanding.flags:
            outcome.reply_text = reply("screened", language)
            outcome.actions.append(StoredAction("screened", detail={"flag": "prompt_injection"}))
            yield outcome.reply_text
        elif (
            intent is not None and intent.action == "smalltalk" and top.confidence >= self._cfg.dialog.min_intent_confidence
            and not understanding.out_of_scope and not requests_something(text)
            and not (intent.name in self._statement_smalltalk and asks_anything(text))
        ):
            # Only a clear greeting or thanks gets the fixed reply: "tell me a joke" or
            # "help with my homework pls" is not one, and goes to the knowledge (which
            # says honestly that it cannot help).
            outcome.reply_text = intent.replies.get(language) or intent.replies["en"]
            outcome.actions.append(StoredAction("smalltalk"))
            yield outcome.reply_text
        else:
            async for delta in self.knowledge.answer(outcome, session, flows.store_format if flows is not None else ""):
                yield delta
            if flows is not None and (outcome.state.flow or outcome.state.pending):
                # A question asked in the middle of a task: answered, then the task goes on.
                back = await asyncio.to_thread(flows.resume, outcome.state, language)
                if back:
                    outcome.reply_text += "\n" + back
                    yield "\n" + back

        # Notices that reached the session since the customer's last turn (a return's
        # label, a refund paid: workflows/returns) are delivered with this turn.
        outcome.messages = self._sessions.messages(session.session_id, session.delivered_through)
        await self._record(outcome, session, dissatisfaction)
        yield outcome

    async def _record(self, outcome: TurnOutcome, session: SessionRecord, dissatisfaction: float) -> None:
        """Write the completed turn (the customer's text PII-masked) to the session."""
        understanding = outcome.understanding
        ticket = _last_ticket(session)
        if ticket and not any(a.type == "create_ticket" for a in outcome.actions):
            # After a handoff, what the customer says reaches the ticket's timeline too
            # (PII-masked), where the agent reads it.
            await self._tickets.note_customer_message(ticket.workflow_id, understanding.masked_text)
        self._sessions.append_turn(
            session.session_id,
            TurnRecord(
                index=outcome.turn_index, customer_text=understanding.masked_text, reply_text=outcome.reply_text,
                intent=outcome.intent, actions=outcome.actions, citations=outcome.citations,
                created_at=datetime.now(timezone.utc).isoformat(),
                dissatisfaction=dissatisfaction, flags=list(understanding.flags),
            ),
            handoff=outcome.handoff if outcome.handoff != session.handoff else None,
            state=outcome.state.to_json(),
            delivered_through=max((m.id for m in outcome.messages), default=0),
        )

    def _relay(self, outcome: TurnOutcome, session: SessionRecord) -> list[str]:
        """A turn while a human agent holds the conversation: no NLU-driven reply (the
        agent answers); the reply is the agent's replies the customer has not had in a
        turn yet, or, when there are none, word that the agent will answer."""
        outcome.handoff = "agent"
        ticket = _last_ticket(session)
        outcome.actions.append(StoredAction(
            "agent", ticket_id=ticket.ticket_id if ticket else "", workflow_id=ticket.workflow_id if ticket else "",
            detail={"agent": session.held_by},
        ))
        outcome.messages = [
            m for m in self._sessions.messages(session.session_id, session.delivered_through) if m.author.startswith("agent:")
        ]
        if outcome.messages:
            deltas: list[str] = [Relayed(("\n" if i else "") + m.text, m.author) for i, m in enumerate(outcome.messages)]
        else:
            deltas = [reply("agent_holding", outcome.language)]
        outcome.reply_text = "".join(deltas)
        return deltas

    async def _flow_engine(self) -> FlowEngine | None:
        if self._tasks is None:
            return None
        store = await asyncio.to_thread(self._tasks.open_store)
        if store is None:
            return None
        flows = self._tasks.flows_for(store.format)
        return FlowEngine(flows, store, self._saga_lookup()) if flows else None

    def _saga_lookup(self) -> Callable[[str], Any] | None:
        """For the flow engine, which runs in a worker thread: the return saga's state of
        an order, read on this event loop; None when it cannot be read."""
        returns = self._tasks.returns if self._tasks is not None else None
        if returns is None:
            return None
        loop = asyncio.get_running_loop()

        def lookup(order_id: str) -> Any:
            try:
                asyncio.get_running_loop()
                return None  # called on the loop itself: waiting here would block it
            except RuntimeError:
                pass
            try:
                return asyncio.run_coroutine_threadsafe(returns.find(order_id), loop).result(timeout=self._cfg.dialog.call_timeout_s)
            except Exception as exc:  # noqa: BLE001 - the status reply goes on without it
                log.warning("could not read the return saga of %s: %s", order_id, exc)
                return None

        return lookup

    async def _flow_turn(self, outcome: TurnOutcome, session: SessionRecord, flows: FlowEngine, reply: FlowReply) -> None:
        """A task turn: the flow's reply, or the confirmed operation run as a workflow
        and the store's answer reported."""
        state = outcome.state
        outcome.reply_text = reply.text
        if reply.run:
            assert self._tasks is not None
            operation, args = reply.run["operation"], reply.run["args"]
            receipt, workflow_id = await self._tasks.operations.run(
                operation, args, session_id=session.session_id, customer_id=state.customer_id, language=outcome.language
            )
            detail = {"operation": operation, "order_id": str(args.get("order_id", "")), "status": receipt.status}
            if receipt.status != "done":
                detail["reason"] = receipt.reason
            if getattr(receipt, "saga_workflow_id", ""):
                detail["saga"] = receipt.saga_workflow_id  # the return saga that follows it
            outcome.actions.append(StoredAction("operation", workflow_id=workflow_id, detail=detail))
            outcome.reply_text = await asyncio.to_thread(flows.report, state, receipt, outcome.language)
        elif state.pending:
            outcome.actions.append(StoredAction("confirm", detail={"operation": state.pending["operation"]}))

    def _intent(self, name: str) -> Intent | None:
        try:
            return self._pack.intent(name)
        except KeyError:
            return None

    def _action_confidence(self, understanding: nlu_pb2.AnalyzeResponse, action: str) -> float:
        """Confidence that the customer wants ``action``: "我要投诉，转人工" is split
        between complaint and human_agent, but both mean a handoff."""
        return sum(c.confidence for c in understanding.intents if (i := self._intent(c.name)) and i.action == action)

    def _dissatisfied_streak(self, session: SessionRecord, dissatisfaction: float) -> int:
        """Dissatisfied turns in a row, ending with this one (0 when this one is not)."""
        threshold = self._cfg.dialog.dissatisfaction_threshold
        if dissatisfaction < threshold:
            return 0
        streak = 1
        for turn in reversed(session.turns):
            if turn.dissatisfaction < threshold:
                break
            streak += 1
        return streak

    async def _answer_before_handoff(self, outcome: TurnOutcome, session: SessionRecord, text: str, store_format: str) -> str:
        """The knowledge's answer to a question asked with a handoff, when Knowledge is sure
        of it on its own (a handoff intent is never an in-domain question's agreement); ""
        when the message asks nothing, the knowledge is away or does not answer."""
        if not asks_anything(text):
            return ""
        try:
            found = await self.knowledge.search(outcome, store_format)
        except Unavailable:
            return ""
        if not self.knowledge.answers(found, outcome):
            return ""
        before = len(outcome.actions)
        async for _ in self.knowledge.answer(outcome, session, store_format, found=found):
            pass
        if not any(a.type == "answer" for a in outcome.actions[before:]):
            del outcome.actions[before:]
            outcome.citations = []
            return ""
        return outcome.reply_text

    async def _open_ticket(self, outcome: TurnOutcome, session: SessionRecord, category: str, *, reply_name: str = "ticket_created") -> None:
        history = "\n".join(f"customer: {t.customer_text}\nkefu: {t.reply_text}" for t in session.turns[-8:])
        understanding = outcome.understanding
        # What the agent reads on claiming the ticket (services/agent/context.py).
        context = context_packet(
            session, text=understanding.masked_text, dissatisfaction=float(understanding.sentiment.dissatisfaction),
            intent=outcome.intent, intent_confidence=outcome.intent_confidence, state=outcome.state,
            reason="dissatisfied" if reply_name == "dissatisfied_handoff" else "asked",
            order_ids=[e.value or e.text for e in understanding.entities if e.type == "order_id"],
            at=datetime.now(timezone.utc).isoformat(),
        )
        request = TicketRequest(
            ticket_id=await self._tickets.new_ticket_id(session.session_id),
            session_id=session.session_id,
            category=category,
            summary=(history + "\n" if history else "") + f"customer: {outcome.understanding.masked_text}",
            language=outcome.language,
            customer_id=session.customer_id,
            context=context,
        )
        receipt, workflow_id = await self._tickets.open_ticket(request)
        queued = receipt.status == "queued"  # the workflow engine is away: opened as soon as it is back
        outcome.reply_text = reply("ticket_queued" if queued else reply_name, outcome.language, ticket_id=receipt.ticket_id)
        outcome.actions += [
            StoredAction(
                "create_ticket", ticket_id=receipt.ticket_id, workflow_id=workflow_id,
                detail={"category": request.category, **({"queued": "true"} if queued else {})},
            ),
            StoredAction("handoff", ticket_id=receipt.ticket_id),
        ]
        outcome.handoff = "requested"

def _last_ticket(session: SessionRecord) -> StoredAction | None:
    """The create_ticket action of the last ticket this session opened (its ticket and
    workflow ids), or None."""
    for turn in reversed(session.turns):
        for action in turn.actions:
            if action.type == "create_ticket" and action.workflow_id:
                return action
    return None
