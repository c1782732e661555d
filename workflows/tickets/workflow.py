"""TicketWorkflow: records a ticket durably; SLA timers and escalation come later."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from workflows.tickets.types import TicketReceipt, TicketRequest


@workflow.defn(name="TicketWorkflow")
class TicketWorkflow:
    @workflow.run
    async def run(self, request: TicketRequest) -> TicketReceipt:
        return await workflow.execute_activity(
            "open_ticket",
            request,
            result_type=TicketReceipt,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=RetryPolicy(initial_interval=timedelta(milliseconds=200), maximum_attempts=10),
        )
