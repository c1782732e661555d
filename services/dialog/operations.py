"""Carrying out a confirmed store operation through the Temporal store-operation workflow.

Dialog never writes to the store itself: each operation the customer confirmed is one
StoreOperationWorkflow with a fresh id, and that id is the key the ERP port applies it
under, so however often Temporal retries the activity the store changes once.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from datetime import timedelta
from typing import Any

from temporalio.client import WorkflowFailureError

from services.config import KefuConfig
from services.dialog.workflow_desk import WorkflowDesk
from services.errors import Unavailable
from workflows.store_ops.types import OperationReceipt, OperationRequest, new_workflow_id


def _root_cause(exc: BaseException) -> str:
    """The innermost message of a workflow failure (e.g. the activity's "no active store"),
    which is what an operator needs, not Temporal's wrapping."""
    message = str(exc)
    cause = getattr(exc, "cause", None) or exc.__cause__
    while cause is not None:
        message = str(cause) or message
        cause = getattr(cause, "cause", None) or cause.__cause__
    return message


class OperationDesk(WorkflowDesk):
    """Starts StoreOperationWorkflow for one operation and waits for the store's answer."""

    def __init__(self, cfg: KefuConfig, *, timeout_s: float = 30.0) -> None:
        super().__init__(cfg, timeout_s=timeout_s)

    async def run(self, operation: str, args: dict[str, Any], *, session_id: str, customer_id: str) -> tuple[OperationReceipt, str]:
        """Apply ``operation`` once; returns the receipt (status done or rejected) and the workflow id.

        Raises Unavailable when Temporal cannot be reached, the workflow fails (e.g. no
        active store) or does not finish in time; in the last case the operation may still
        complete later under the same id, which the message names."""
        request = OperationRequest(
            operation=operation,
            args_json=json.dumps(args, ensure_ascii=False),
            session_id=session_id,
            customer_id=customer_id,
        )
        client = await self._connect()
        workflow_id = new_workflow_id(operation, secrets.token_hex(8))
        try:
            receipt = await asyncio.wait_for(
                client.execute_workflow(
                    "StoreOperationWorkflow",
                    request,
                    id=workflow_id,
                    task_queue=self._task_queue,
                    result_type=OperationReceipt,
                    execution_timeout=timedelta(seconds=self._timeout_s * 3),
                ),
                timeout=self._timeout_s,
            )
        except asyncio.TimeoutError as exc:
            raise Unavailable(
                f"the store operation {operation} did not finish in time (workflow {workflow_id}); is the kefu worker running?"
            ) from exc
        except WorkflowFailureError as exc:
            raise Unavailable(f"the store operation {operation} failed (workflow {workflow_id}): {_root_cause(exc)}") from exc
        except Exception as exc:  # noqa: BLE001 - RPC failures from the Temporal client
            raise Unavailable(f"could not run the store operation {operation}: {exc}") from exc
        return receipt, workflow_id
