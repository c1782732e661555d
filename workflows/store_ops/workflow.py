"""StoreOperationWorkflow: applies one confirmed store operation durably.

The workflow id is the idempotency key the ERP port applies the operation under, so
a retried activity (a crashed worker, a lost reply) never changes the store twice.
A rejected operation is a normal result (status "rejected"), not a failure.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from workflows.store_ops.types import OperationCall, OperationReceipt, OperationRequest

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
        return await workflow.execute_activity(
            "apply_store_operation",
            call,
            result_type=OperationReceipt,
            start_to_close_timeout=ATTEMPT_TIMEOUT,
            # Errors that retrying cannot fix (no active store, bad arguments) are raised
            # non-retryable by the activity itself.
            retry_policy=RetryPolicy(initial_interval=timedelta(milliseconds=200), maximum_attempts=10),
        )
