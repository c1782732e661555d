"""gRPC face of the ERP event ingress (services/erp/events.py)."""

from __future__ import annotations

import grpc

from kefu.v1 import erp_pb2, erp_pb2_grpc
from services.erp.events import ReturnDesk
from services.errors import grpc_errors
from workflows.returns.types import ErpEvent, ReturnState

OUTCOMES = {"accepted": erp_pb2.ERP_EVENT_OUTCOME_ACCEPTED, "duplicate": erp_pb2.ERP_EVENT_OUTCOME_DUPLICATE}


def return_status(state: ReturnState, *, running: bool, workflow_id: str) -> erp_pb2.ReturnStatus:
    return erp_pb2.ReturnStatus(
        order_id=state.order_id, kind=state.kind, status=state.status, rma_id=state.rma_id, label=state.label,
        refund_id=state.refund_id, refund_amount=state.refund_amount, refund_method=state.refund_method,
        refund_status=state.refund_status, tracking_id=state.tracking_id, currency=state.currency, reason=state.reason,
        ticket_id=state.ticket_id, workflow_id=workflow_id, running=running,
        timeline=[erp_pb2.ReturnStep(kind=e.kind, at=e.at, text=e.text) for e in state.timeline],
    )


class ErpEventsServicer(erp_pb2_grpc.ErpEventsServicer):
    def __init__(self, desk: ReturnDesk) -> None:
        self._desk = desk

    @grpc_errors
    async def Report(self, request: erp_pb2.ErpEvent, context: grpc.aio.ServicerContext) -> erp_pb2.ErpEventReceipt:
        event = ErpEvent(
            event_id=request.event_id, kind=request.kind, order_id=request.order_id, accepted=request.accepted,
            reason=request.reason, occurred_at=request.occurred_at,
        )
        outcome, workflow_id = await self._desk.report(event)
        return erp_pb2.ErpEventReceipt(outcome=OUTCOMES[outcome.outcome], workflow_id=workflow_id, status=outcome.status)

    @grpc_errors
    async def GetReturn(self, request: erp_pb2.GetReturnRequest, context: grpc.aio.ServicerContext) -> erp_pb2.ReturnStatus:
        state, running, workflow_id = await self._desk.state(request.order_id)
        return return_status(state, running=running, workflow_id=workflow_id)
