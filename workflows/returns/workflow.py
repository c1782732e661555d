"""ReturnWorkflow: a return, an exchange or a cancellation's refund, as a saga over days.

    return / exchange:
      authorize_return (RMA + label) ─> awaiting_parcel ─ reminder after timers.reminder_s
          │                                   └─ nothing by timers.expire_s ─> cancel_return ─> expired
          └─ parcel_received ─> inspecting ─ inspection_result rejected ─> cancel_return ─> rejected
                                     └─ accepted: return   ─> refund ─> refund_pending ─ refund_completed ─> refunded
                                                             (a gift card is refunded at once ─> refunded)
                                                  exchange ─> ship_replacement ─> replacement_shipped
                                                                 ─ shipment_delivered ─> exchanged
                                                             (replacement unavailable ─> refund instead + ticket)
    cancellation: track_cancellation ─> refunded (gift card) | refund_pending ─ refund_completed ─> refunded

ERP events arrive as the ``erp_event`` update: its validator refuses an event the saga
does not expect in its state (nothing is recorded), and an event id or kind already
taken is answered ``duplicate`` and changes nothing. Every step in the store is
idempotent on ``<workflow id>/<step>``, so a retried activity (a worker killed mid-step)
never refunds or ships twice. A step that cannot finish by itself after money moved, or
instead of it, opens a ticket for finance (a TicketWorkflow child that outlives this
one) and ends ``needs_attention`` — never a silent half state. The customer is told at
each step in their session (zh or en), and the ``state`` query is what Dialog answers
"where is my refund" from.
"""

from __future__ import annotations

import json
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from workflows.returns.notices import notice
    from workflows.returns.types import (
        ErpEvent,
        ErpEventOutcome,
        Notice,
        ReturnEvent,
        ReturnRequest,
        ReturnState,
        StepCall,
        StepResult,
    )
    from workflows.tickets.types import TicketRequest, workflow_id_for as ticket_workflow_id

_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=200), maximum_interval=timedelta(seconds=30), maximum_attempts=20)
_STEP_TIMEOUT = timedelta(seconds=10)
# The event a saga waits for in each status.
_EXPECTED = {
    "awaiting_parcel": "parcel_received",
    "inspecting": "inspection_result",
    "refund_pending": "refund_completed",
    "replacement_shipped": "shipment_delivered",
}


@workflow.defn(name="ReturnWorkflow")
class ReturnWorkflow:
    def __init__(self) -> None:
        self._state = ReturnState()
        self._request: ReturnRequest | None = None
        self._events: dict[str, ErpEvent] = {}

    @workflow.run
    async def run(self, request: ReturnRequest) -> ReturnState:
        self._request = request
        st = self._state
        st.order_id, st.kind = request.order_id, request.kind
        if request.kind == "cancellation":
            await self._track_cancellation()
            return st
        authorized = await self._step("authorize_return", kind=request.kind)
        if not authorized.ok:
            await self._needs_attention(f"no return authorisation: {authorized.reason}")
            return st
        record = json.loads(authorized.result_json)
        st.rma_id, st.label, st.currency = record["rma_id"], record["label"], authorized.currency
        st.refund_amount, st.refund_method = float(record["amount"]), record["payment_method_id"]
        timers = request.timers
        await self._enter("awaiting_parcel", "authorized", days=_days(timers.expire_s))
        if not await self._wait("parcel_received", timers.reminder_s):
            await self._tell("reminder", days=_days(timers.expire_s - timers.reminder_s))
            if not await self._wait("parcel_received", max(0.0, timers.expire_s - timers.reminder_s)):
                await self._step("cancel_return")
                await self._enter("expired", "expired")
                return st
        await self._enter("inspecting", "received")
        await self._wait("inspection_result", None)
        inspection = self._events["inspection_result"]
        if not inspection.accepted:
            st.reason = inspection.reason or "not accepted"
            await self._step("cancel_return")
            await self._enter("rejected", "rejected")
            return st
        if request.kind == "exchange":
            await self._exchange()
        else:
            await self._refund(order_status="returned")
        return st

    # -- ERP events and the query ----------------------------------------------------

    @workflow.update(name="erp_event")
    def erp_event(self, event: ErpEvent) -> ErpEventOutcome:
        if self._duplicate(event):
            return ErpEventOutcome(outcome="duplicate", status=self._state.status)
        self._events[event.kind] = event
        self._state.event_ids.append(event.event_id)
        self._log(event.kind, event.reason if event.kind == "inspection_result" else "")
        return ErpEventOutcome(outcome="accepted", status=self._state.status)

    @erp_event.validator
    def _expected(self, event: ErpEvent) -> None:
        """Refuses (nothing recorded) an event the saga does not wait for now."""
        if self._duplicate(event):
            return
        expected = _EXPECTED.get(self._state.status)
        if event.kind != expected:
            waiting = f"it waits for {expected}" if expected else "it waits for no event now"
            st = self._state
            # Refused before it is recorded: the update fails and nothing changes.
            raise ApplicationError(
                f"{event.kind} is not expected: the {st.kind or 'return'} of order {st.order_id} is {st.status or 'starting'}; {waiting}",
                type="UnexpectedEvent",
            )

    @workflow.query(name="state")
    def state(self) -> ReturnState:
        return self._state

    def _duplicate(self, event: ErpEvent) -> bool:
        return event.event_id in self._state.event_ids or event.kind in self._events

    # -- the saga's steps ------------------------------------------------------------

    async def _track_cancellation(self) -> None:
        st = self._state
        tracked = await self._step("track_cancellation")
        if not tracked.ok:
            await self._needs_attention(f"cancellation refund not found: {tracked.reason}")
            return
        self._took_refund(tracked)
        if st.refund_status == "completed":
            st.status = "refunded"  # a gift card: the customer was told when they cancelled
            self._log("refunded")
            return
        await self._enter("refund_pending", "")
        await self._wait("refund_completed", None)
        st.refund_status = "completed"
        await self._enter("refunded", "refunded")

    async def _refund(self, *, order_status: str) -> None:
        st = self._state
        try:
            paid = await self._step("refund", amount=st.refund_amount, payment_method_id=st.refund_method, order_status=order_status)
        except ActivityError as exc:
            # The store stayed unreachable through every retry: the refund may or may not
            # have been written, which only a person can settle.
            await self._needs_attention(f"refund of {st.refund_amount} could not be confirmed: {exc.cause or exc}")
            return
        if not paid.ok:
            await self._needs_attention(f"refund of {st.refund_amount} refused by the store: {paid.reason}")
            return
        self._took_refund(paid)
        if st.refund_status == "completed":
            await self._enter("refunded", "refunded")
            return
        await self._enter("refund_pending", "refund_pending")
        await self._wait("refund_completed", None)
        st.refund_status = "completed"
        await self._enter("refunded", "refunded")

    async def _exchange(self) -> None:
        st = self._state
        shipped = await self._step("ship_replacement")
        if not shipped.ok:
            # Compensation: the customer sent the goods back and no replacement can ship,
            # so their value is refunded, and a person follows up.
            st.reason = shipped.reason
            await self._refund(order_status="returned")
            if st.status != "needs_attention":
                await self._needs_attention(f"replacement could not ship ({shipped.reason}); refunded {st.refund_amount} instead")
            return
        st.tracking_id = json.loads(shipped.result_json)["tracking_id"]
        await self._enter("replacement_shipped", "shipped")
        await self._wait("shipment_delivered", None)
        await self._enter("exchanged", "exchanged")

    async def _needs_attention(self, why: str) -> None:
        """A ticket for finance (it outlives this workflow) and the customer told."""
        request = self._request
        assert request is not None
        st = self._state
        st.ticket_id = f"TK{workflow.now():%Y%m%d}-{str(workflow.uuid4())[:6].upper()}"
        ticket = TicketRequest(
            ticket_id=st.ticket_id, session_id=request.session_id, category="finance", priority="high",
            summary=f"{st.kind} of order {st.order_id} (workflow {workflow.info().workflow_id}): {why}",
            language=request.language, customer_id=request.customer_id, sla=request.finance_sla,
        )
        await workflow.start_child_workflow(
            "TicketWorkflow", ticket, id=ticket_workflow_id(st.ticket_id), parent_close_policy=ParentClosePolicy.ABANDON
        )
        st.reason = st.reason or why
        await self._enter("needs_attention", "needs_attention", note=why)

    # -- plumbing --------------------------------------------------------------------

    async def _step(self, step: str, **fields: object) -> StepResult:
        call = StepCall(step=step, order_id=self._state.order_id, key=f"{workflow.info().workflow_id}/{step}", **fields)
        return await workflow.execute_activity(
            "after_sales_step", call, result_type=StepResult, start_to_close_timeout=_STEP_TIMEOUT, retry_policy=_RETRY
        )

    def _took_refund(self, result: StepResult) -> None:
        record = json.loads(result.result_json)
        st = self._state
        st.currency = st.currency or result.currency
        st.refund_id, st.refund_amount = record["refund_id"], float(record["amount"])
        st.refund_method, st.refund_status = record["payment_method_id"], record["status"]

    async def _wait(self, kind: str, timeout_s: float | None) -> bool:
        """Until the ERP reports ``kind`` (True) or ``timeout_s`` passes (False)."""
        try:
            await workflow.wait_condition(lambda: kind in self._events, timeout=timedelta(seconds=timeout_s) if timeout_s is not None else None)
        except TimeoutError:
            return False
        return True

    async def _enter(self, status: str, told: str, note: str = "", **extra: object) -> None:
        self._state.status = status
        self._log(status, note)
        if told:
            await self._tell(told, **extra)

    async def _tell(self, name: str, **extra: object) -> None:
        request = self._request
        assert request is not None
        text = notice(name, self._state, request.language, **extra)
        self._log(f"told:{name}", text)
        if request.session_id:
            await workflow.execute_activity(
                "notify_customer", Notice(request.session_id, f"{workflow.info().workflow_id}/{name}", text),
                start_to_close_timeout=_STEP_TIMEOUT, retry_policy=_RETRY,
            )

    def _log(self, kind: str, text: str = "") -> None:
        self._state.timeline.append(ReturnEvent(kind=kind, at=workflow.now().isoformat(), text=text))


def _days(seconds: float) -> str:
    days = seconds / 86400
    return f"{days:.0f}" if days >= 1 else f"{days:.2f}".rstrip("0").rstrip(".")
