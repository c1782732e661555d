"""ERP events in: what a company's ERP reports (parcel received, inspection result, refund
completed, shipment delivered) goes to the return saga of the order as the workflow's
``erp_event`` update, and the saga's state is read back for operators and for Dialog
("where is my refund" is answered from it, not from the model).

Unknown or repeated events change nothing: an unknown kind or a missing id is
INVALID_ARGUMENT, an order without a saga NOT_FOUND, an event the saga does not wait
for FAILED_PRECONDITION (refused by the update's validator, so nothing is recorded), and
an event id or kind taken before is answered ``duplicate`` (also after the saga ended).
"""

from __future__ import annotations

import asyncio
import re

from temporalio.client import WorkflowExecutionStatus, WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode

from services.config import KefuConfig
from services.dialog.workflow_desk import WorkflowDesk, root_cause
from services.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from workflows.returns.types import EVENT_KINDS, ErpEvent, ErpEventOutcome, ReturnState, workflow_id_for


# What an order id may look like ("#W2378156", "KF2026102900901"): it names a workflow, so
# anything else is refused before it reaches the workflow engine.
_ORDER_ID = re.compile(r"#?[\w.-]{1,64}")


def _order_id(value: str) -> str:
    order_id = value.strip()
    if not order_id:
        raise InvalidArgument("order_id must not be empty")
    if not _ORDER_ID.fullmatch(order_id):
        raise InvalidArgument(f"order_id {order_id[:80]!r} is not an order id (letters, digits, '-', '.', an optional leading '#'; at most 64)")
    return order_id


class ReturnDesk(WorkflowDesk):
    def __init__(self, cfg: KefuConfig, *, timeout_s: float = 20.0) -> None:
        super().__init__(cfg, timeout_s=timeout_s)

    async def report(self, event: ErpEvent) -> tuple[ErpEventOutcome, str]:
        """Route ``event`` to its saga; returns the outcome and the saga's workflow id."""
        event.event_id, event.order_id, event.kind = event.event_id.strip(), event.order_id.strip(), event.kind.strip()
        if not event.event_id:
            raise InvalidArgument("event_id must not be empty: the ERP's id of the event makes a repeated report harmless")
        if len(event.event_id) > 200 or len(event.reason) > 2000:
            raise InvalidArgument("event_id (at most 200 characters) or reason (at most 2000) is too long")
        event.order_id = _order_id(event.order_id)
        if event.kind not in EVENT_KINDS:
            raise InvalidArgument(f"unknown event kind {event.kind!r}; expected one of {', '.join(EVENT_KINDS)}")
        state, running, workflow_id = await self.state(event.order_id)
        if event.event_id in state.event_ids or any(step.kind == event.kind for step in state.timeline):
            return ErpEventOutcome(outcome="duplicate", status=state.status), workflow_id
        if not running:
            raise FailedPrecondition(
                f"the {state.kind} of order {event.order_id} has ended ({state.status}); {event.kind} changes nothing"
            )
        handle = (await self._connect()).get_workflow_handle(workflow_id)
        try:
            outcome = await asyncio.wait_for(
                handle.execute_update("erp_event", event, result_type=ErpEventOutcome), timeout=self._timeout_s
            )
        except WorkflowUpdateFailedError as exc:
            # The saga's validator refused it (type UnexpectedEvent); its message says why.
            raise FailedPrecondition(root_cause(exc).removeprefix("UnexpectedEvent: ")) from exc
        except asyncio.TimeoutError as exc:
            raise Unavailable(f"the return saga {workflow_id} did not take the event in time; is the kefu worker running?") from exc
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:  # it ended between the two calls
                raise FailedPrecondition(f"the saga {workflow_id} has ended; {event.kind} changes nothing") from exc
            raise Unavailable(f"could not report {event.kind} to {workflow_id}: {exc}") from exc
        return outcome, workflow_id

    async def state(self, order_id: str) -> tuple[ReturnState, bool, str]:
        """The saga's state, whether it still runs, and its workflow id."""
        order_id = _order_id(order_id)
        workflow_id = workflow_id_for(order_id)
        handle = (await self._connect()).get_workflow_handle(workflow_id)
        try:
            described = await asyncio.wait_for(handle.describe(), timeout=self._timeout_s)
            state = await asyncio.wait_for(handle.query("state", result_type=ReturnState), timeout=self._timeout_s)
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                raise NotFound(f"no return, exchange or refund in progress for order {order_id}") from exc
            raise Unavailable(f"could not read the return saga {workflow_id}: {exc}") from exc
        except asyncio.TimeoutError as exc:
            raise Unavailable(f"the return saga {workflow_id} did not answer in time; is the kefu worker running?") from exc
        return state, described.status == WorkflowExecutionStatus.RUNNING, workflow_id

    async def find(self, order_id: str) -> ReturnState | None:
        """The saga's state for Dialog, or None when there is none or it cannot be read now."""
        try:
            return (await self.state(order_id))[0]
        except (NotFound, Unavailable, InvalidArgument):
            return None
