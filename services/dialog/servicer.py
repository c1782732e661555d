"""gRPC face of Dialog."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime
from typing import AsyncIterator

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from kefu.v1 import common_pb2, dialog_pb2, dialog_pb2_grpc
from services.dialog.answering import Replacement
from services.dialog.core import CustomerTurn, DialogEngine, TurnOutcome
from services.dialog.flows.state import FlowState
from services.dialog.metrics import DialogMetrics
from services.dialog.sessions import SessionMessage, SessionRecord, StoredAction, StoredCitation
from services import security
from services.errors import NotFound, ResourceExhausted, grpc_errors

ACTION_TYPES = {
    "answer": dialog_pb2.ACTION_TYPE_ANSWER,
    "clarify": dialog_pb2.ACTION_TYPE_CLARIFY,
    "confirm": dialog_pb2.ACTION_TYPE_CONFIRM,
    "create_ticket": dialog_pb2.ACTION_TYPE_CREATE_TICKET,
    "handoff": dialog_pb2.ACTION_TYPE_HANDOFF,
    "abstain": dialog_pb2.ACTION_TYPE_ABSTAIN,
    "smalltalk": dialog_pb2.ACTION_TYPE_SMALLTALK,
    "screened": dialog_pb2.ACTION_TYPE_SCREENED,
    "operation": dialog_pb2.ACTION_TYPE_OPERATION,
    "agent": dialog_pb2.ACTION_TYPE_AGENT,
}
HANDOFF = {
    "bot": dialog_pb2.HANDOFF_STATE_BOT,
    "requested": dialog_pb2.HANDOFF_STATE_REQUESTED,
    "agent": dialog_pb2.HANDOFF_STATE_AGENT,
}


def _action(a: StoredAction) -> dialog_pb2.Action:
    return dialog_pb2.Action(type=ACTION_TYPES[a.type], ticket_id=a.ticket_id, workflow_id=a.workflow_id, detail=a.detail)


def _citation(c: StoredCitation) -> common_pb2.Citation:
    return common_pb2.Citation(doc_id=c.doc_id, title=c.title, chunk_id=c.chunk_id, snippet=c.snippet, score=c.score, kb_version=c.kb_version)


def session_message_pb(m: SessionMessage) -> dialog_pb2.SessionMessage:
    return dialog_pb2.SessionMessage(id=m.id, author=m.author, text=m.text, time=timestamp(m.created_at))


def timestamp(iso: str) -> Timestamp:
    """An ISO-8601 time as stored in the session and ticket tables."""
    ts = Timestamp()
    ts.FromDatetime(datetime.fromisoformat(iso))
    return ts


def dialog_state(state: FlowState) -> dialog_pb2.DialogState:
    pending = None
    if state.pending:
        pending = dialog_pb2.PendingOperation(
            operation=state.pending["operation"],
            args={k: json.dumps(v, ensure_ascii=False) for k, v in state.pending["args"].items()},
        )
    return dialog_pb2.DialogState(
        flow=state.flow, requested_slot=state.requested_slot, slots=state.slots(), customer_id=state.customer_id, pending=pending
    )


def turn_result(o: TurnOutcome) -> dialog_pb2.TurnResult:
    return dialog_pb2.TurnResult(
        session_id=o.session_id,
        turn_index=o.turn_index,
        reply_text=o.reply_text,
        citations=[_citation(c) for c in o.citations],
        intent=common_pb2.IntentCandidate(name=o.intent, confidence=o.intent_confidence),
        entities=o.understanding.entities,
        actions=[_action(a) for a in o.actions],
        handoff=HANDOFF[o.handoff],
        language=o.language,
        degraded=o.degraded,
        sentiment=o.understanding.sentiment,
        state=dialog_state(o.state),
        messages=[session_message_pb(m) for m in o.messages],
    )


def session_message(s: SessionRecord) -> dialog_pb2.Session:
    return dialog_pb2.Session(
        session_id=s.session_id,
        customer_id=s.customer_id,
        channel=s.channel,
        created_at=timestamp(s.created_at),
        handoff=HANDOFF[s.handoff],
        turns=[
            dialog_pb2.Turn(
                index=t.index, customer_text=t.customer_text, reply_text=t.reply_text, intent=t.intent,
                actions=[_action(a) for a in t.actions], citations=[_citation(c) for c in t.citations],
                time=timestamp(t.created_at),
            )
            for t in s.turns
        ],
        messages=[session_message_pb(m) for m in s.messages],
        held_by=s.held_by,
        agent_note=s.agent_note,
    )


class DialogServicer(dialog_pb2_grpc.DialogServicer):
    def __init__(
        self, engine: DialogEngine, *, poll_s: float = 0.3, customer_turns_per_min: float = 0.0, session_turns_per_min: float = 0.0,
        metrics: DialogMetrics | None = None,
    ) -> None:
        self._engine = engine
        self._poll_s = poll_s
        self._per_customer = security.RateLimiter(customer_turns_per_min)
        self._per_session = security.RateLimiter(session_turns_per_min)
        self._metrics = metrics or DialogMetrics(None)

    def _session_for_caller(self, session_id: str) -> SessionRecord:
        """The session, unless a channel call asks for another customer's: that one does
        not exist for it (NOT_FOUND, as for an unknown id, so nothing leaks)."""
        session = self._engine.session(session_id)
        who = security.caller()
        if who is not None and who.role == "channel" and session.customer_id != who.customer_id:
            raise NotFound(f"session {session_id!r} does not exist")
        return session

    def _limit(self, context: grpc.aio.ServicerContext, customer: str, session_id: str) -> None:
        """RESOURCE_EXHAUSTED with how long to wait (message and ``retry-after-ms``)."""
        wait = max(self._per_customer.take(f"customer:{customer}" if customer else ""), self._per_session.take(session_id))
        if wait > 0:
            context.set_trailing_metadata((("retry-after-ms", str(int(wait * 1000) + 1)),))
            raise ResourceExhausted(f"too many messages; please retry in {max(1, round(wait))} s")

    @grpc_errors
    async def Converse(self, request: dialog_pb2.TurnRequest, context: grpc.aio.ServicerContext) -> AsyncIterator[dialog_pb2.TurnEvent]:
        customer = request.customer_id
        who = security.caller()
        if who is not None and who.role == "channel":
            customer = who.customer_id  # the customer the channel authenticated, not what the request claims
        if request.session_id:
            self._session_for_caller(request.session_id)
        self._limit(context, customer, request.session_id)  # an anonymous customer is limited per session
        turn = CustomerTurn(
            text=request.text, session_id=request.session_id, channel=request.channel,
            customer_id=customer, language_hint=request.language_hint,
        )
        started = time.perf_counter()
        async for event in self._engine.handle(turn):
            if isinstance(event, str):
                if event:
                    yield dialog_pb2.TurnEvent(chunk=dialog_pb2.TextChunk(
                        delta=event, replace=isinstance(event, Replacement), author=getattr(event, "author", ""),
                    ))
            else:
                if not request.session_id:
                    self._per_session.take(event.session_id)  # a new session's first turn counts too
                result = turn_result(event)
                self._metrics.turn(result, time.perf_counter() - started)
                yield dialog_pb2.TurnEvent(result=result)

    @grpc_errors
    async def GetSession(self, request: dialog_pb2.GetSessionRequest, context: grpc.aio.ServicerContext) -> dialog_pb2.Session:
        return session_message(self._session_for_caller(request.session_id))

    @grpc_errors
    async def WatchReplies(
        self, request: dialog_pb2.WatchRepliesRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[dialog_pb2.SessionMessage]:
        # The session store is polled: agents' replies and kefu's notices are written to it
        # by other processes (the agent desk, Temporal activities).
        after = request.after_id
        self._session_for_caller(request.session_id)  # NOT_FOUND before the stream starts
        while True:
            for message in self._engine.messages(request.session_id, after):
                yield session_message_pb(message)
                after = message.id
            await asyncio.sleep(self._poll_s)
