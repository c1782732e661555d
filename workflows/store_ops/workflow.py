"""StoreOperationWorkflow: applies one confirmed store operation durably.

The workflow id is the idempotency key the ERP port applies the operation under, so
a retried activity (a crashed worker, a lost reply) never changes the store twice.
A rejected operation is a normal result (status "rejected"), not a failure.

A done return, exchange or cancellation starts the return saga (ReturnWorkflow, a child
that outlives this workflow) which follows it to the refund or the replacement.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from workflows.returns.types import ReturnRequest, workflow_id_for as return_workflow_id
    from workflows.store_ops.types import OperationCall, OperationReceipt, OperationRequest

# The operations a return saga follows, and the saga's kind for each.
SAGAS = {"return_delivered_order_items": "return", "exchange_delivered_order_items": "exchange", "cancel_pending_order": "cancellation"}

# A store write is one SQLite transaction (milliseconds); a few seconds per attempt lets a
# crashed worker's attempt time out and be retried quickly on another one.
ATTEMPT_TIMEOUT = timedelta(seconds=10)


@workflow.defn(name="StoreOperationWorkflow")
class StoreOperationWorkflow:
    @workflow.run
    async def run(self, request: OperationRequest) -> OperationReceipt:
        call = OperationCall(
            operation=request.operation,
            args_json=request.args_json,
            key=workflow.info().workflow_id,
            customer_id=request.customer_id,
        )
        receipt = await workflow.execute_activity(
            "apply_store_operation",
            call,
            result_type=OperationReceipt,
            start_to_close_timeout=ATTEMPT_TIMEOUT,
            # Errors that retrying cannot fix (no active store, bad arguments) are raised
            # non-retryable by the activity itself.
            retry_policy=RetryPolicy(initial_interval=timedelta(milliseconds=200), maximum_attempts=10),
        )
        kind = SAGAS.get(request.operation)
        if receipt.done and kind and receipt.order_id:
            saga = ReturnRequest(
                order_id=receipt.order_id, kind=kind, session_id=request.session_id, customer_id=request.customer_id,
                language=request.language, timers=request.timers, finance_sla=request.finance_sla,
            )
            saga_id = return_workflow_id(receipt.order_id)
            try:
                await workflow.start_child_workflow("ReturnWorkflow", saga, id=saga_id, parent_close_policy=ParentClosePolicy.ABANDON)
                receipt.saga_workflow_id = saga_id
            except WorkflowAlreadyStartedError:
                workflow.logger.warning("a return saga for order %s is already running", receipt.order_id)
        return receipt
