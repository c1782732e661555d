"""Carrying out a confirmed store operation through the Temporal store-operation workflow.

Dialog never writes to the store itself: each operation the customer confirmed is one
StoreOperationWorkflow with a fresh id, and that id is the key the ERP port applies it
under, so however often Temporal retries the activity the store changes once.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from services.config import KefuConfig
from services.dialog.workflow_desk import WorkflowDesk
from workflows.returns.types import ReturnTimers
from workflows.store_ops.types import OperationReceipt, OperationRequest, new_workflow_id
from workflows.tickets.sla import sla_for


class OperationDesk(WorkflowDesk):
    """Starts StoreOperationWorkflow for one operation and waits for the store's answer."""

    def __init__(self, cfg: KefuConfig, *, timeout_s: float = 30.0) -> None:
        super().__init__(cfg, timeout_s=timeout_s)
        if not 0 < cfg.returns.reminder_s < cfg.returns.expire_s:
            raise ValueError("returns: reminder_s must be positive and shorter than expire_s")
        self._timers = ReturnTimers(reminder_s=cfg.returns.reminder_s, expire_s=cfg.returns.expire_s)
        # A return saga that needs a person opens a "finance" ticket of high priority.
        self._finance_sla = sla_for(cfg.tickets.sla, "finance", "high", cfg.tickets.auto_close_s)

    async def run(
        self, operation: str, args: dict[str, Any], *, session_id: str, customer_id: str, language: str = "en"
    ) -> tuple[OperationReceipt, str]:
        """Apply ``operation`` once; returns the receipt (status done or rejected) and the workflow id.

        Raises Unavailable when Temporal cannot be reached, the workflow fails (e.g. no
        active store) or does not finish in time; in the last case the operation may still
        complete later under the same id, which the message names."""
        request = OperationRequest(
            operation=operation,
            args_json=json.dumps(args, ensure_ascii=False),
            session_id=session_id,
            customer_id=customer_id,
            language=language,
            timers=self._timers,
            finance_sla=self._finance_sla,
        )
        workflow_id = new_workflow_id(operation, secrets.token_hex(8))
        receipt = await self._execute(
            "StoreOperationWorkflow", request, workflow_id=workflow_id, result_type=OperationReceipt,
            what=f"the store operation {operation}",
        )
        return receipt, workflow_id
