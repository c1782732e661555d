"""gRPC face of the agent desk (kefu.v1.AgentDesk), hosted by the Dialog process."""

from __future__ import annotations

from typing import AsyncIterator

import grpc

from kefu.v1 import agent_pb2, agent_pb2_grpc
from services.agent.desk import AgentDesk, QueueEntry
from services.dialog.servicer import HANDOFF, timestamp
from services.errors import grpc_errors
from workflows.tickets.types import TicketContext


def _context(c: TicketContext) -> agent_pb2.ContextPacket:
    return agent_pb2.ContextPacket(
        summary=c.summary, reason=c.reason, intent=c.intent, intent_confidence=c.intent_confidence, flow=c.flow,
        requested_slot=c.requested_slot, slots=c.slots, store_customer_id=c.store_customer_id,
        dissatisfaction=c.dissatisfaction, order_ids=c.order_ids,
        last_turns=[
            agent_pb2.ContextTurn(
                index=t.index, customer_text=t.customer_text, reply_text=t.reply_text, dissatisfaction=t.dissatisfaction,
                time=timestamp(t.at) if t.at else None,
            )
            for t in c.last_turns
        ],
    )


def queued_ticket(e: QueueEntry) -> agent_pb2.QueuedTicket:
    t = e.ticket
    return agent_pb2.QueuedTicket(
        ticket_id=t.ticket_id, session_id=t.session_id, category=t.category, status=t.status, priority=t.priority,
        language=t.language, created_at=timestamp(t.created_at) if t.created_at else None, held_by=e.held_by,
        context=_context(e.context),
    )


class AgentDeskServicer(agent_pb2_grpc.AgentDeskServicer):
    def __init__(self, desk: AgentDesk) -> None:
        self._desk = desk

    @grpc_errors
    async def ListQueue(self, request: agent_pb2.ListQueueRequest, context: grpc.aio.ServicerContext) -> agent_pb2.ListQueueResponse:
        entries = self._desk.queue(include_claimed=request.include_claimed, limit=request.limit)
        return agent_pb2.ListQueueResponse(tickets=[queued_ticket(e) for e in entries])

    @grpc_errors
    async def Claim(self, request: agent_pb2.ClaimRequest, context: grpc.aio.ServicerContext) -> agent_pb2.ClaimResponse:
        return agent_pb2.ClaimResponse(ticket=queued_ticket(await self._desk.claim(request.agent_id, request.ticket_id)))

    @grpc_errors
    async def Reply(self, request: agent_pb2.AgentReplyRequest, context: grpc.aio.ServicerContext) -> agent_pb2.AgentReplyResponse:
        message_id, session_id = await self._desk.reply(request.agent_id, request.ticket_id, request.text, request_id=request.request_id)
        return agent_pb2.AgentReplyResponse(message_id=message_id, session_id=session_id)

    @grpc_errors
    async def HandBack(self, request: agent_pb2.HandBackRequest, context: grpc.aio.ServicerContext) -> agent_pb2.HandBackResponse:
        session = await self._desk.hand_back(request.agent_id, request.ticket_id, request.note)
        return agent_pb2.HandBackResponse(session_id=session.session_id, handoff=HANDOFF[session.handoff])

    @grpc_errors
    async def Resolve(self, request: agent_pb2.ResolveRequest, context: grpc.aio.ServicerContext) -> agent_pb2.ResolveResponse:
        session = await self._desk.resolve(request.agent_id, request.ticket_id, request.note)
        if session is None:
            return agent_pb2.ResolveResponse()
        return agent_pb2.ResolveResponse(session_id=session.session_id, handoff=HANDOFF[session.handoff])

    @grpc_errors
    async def WatchSession(
        self, request: agent_pb2.WatchSessionRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[agent_pb2.CustomerMessage]:
        after = request.after_turn if request.HasField("after_turn") else None
        async for session_id, turn in self._desk.watch(request.ticket_id, after_turn=after):
            yield agent_pb2.CustomerMessage(
                session_id=session_id, turn_index=turn.index, text=turn.customer_text, time=timestamp(turn.created_at)
            )
