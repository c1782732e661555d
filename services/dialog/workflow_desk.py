"""Dialog's connection to Temporal, shared by the desks that start workflows (tickets,
store operations): one client per process, connected on first use, and a clear
UNAVAILABLE when the workflow engine cannot be reached."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any, Callable, TypeVar

from temporalio.client import Client, WorkflowFailureError
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError
from temporalio.contrib.opentelemetry import TracingInterceptor

from services.config import KefuConfig
from services.errors import Unavailable

R = TypeVar("R")


def root_cause(exc: BaseException) -> str:
    """The innermost message of a workflow failure (e.g. the activity's "no active store"),
    which is what an operator needs, not Temporal's wrapping."""
    message = str(exc)
    cause = getattr(exc, "cause", None) or exc.__cause__
    while cause is not None:
        message = str(cause) or message
        cause = getattr(cause, "cause", None) or cause.__cause__
    return message



_failures = None


def workflow_failures():  # noqa: ANN201 - an OpenTelemetry counter
    """``kefu.workflow.failures``: workflows kefu could not start or run to a result (Temporal
    away, the workflow failed or timed out), by workflow type."""
    global _failures
    if _failures is None:
        from opentelemetry import metrics

        _failures = metrics.get_meter("kefu").create_counter(
            "kefu.workflow.failures", unit="{workflow}", description="Workflows that could not be started or did not finish, by type"
        )
    return _failures

class WorkflowDesk:
    def __init__(self, cfg: KefuConfig, *, timeout_s: float) -> None:
        self._address = cfg.temporal_address
        self._namespace = cfg.temporal.namespace
        self._task_queue = cfg.temporal.task_queue
        self._timeout_s = timeout_s
        self._client: Client | None = None
        self._lock = asyncio.Lock()

    async def _connect(self) -> Client:
        async with self._lock:
            if self._client is None:
                try:
                    self._client = await asyncio.wait_for(
                        Client.connect(self._address, namespace=self._namespace, interceptors=[TracingInterceptor()]),
                        timeout=self._timeout_s,
                    )
                except Exception as exc:  # noqa: BLE001 - any failure to connect means unavailable
                    raise Unavailable(f"workflow engine (Temporal at {self._address}) is unavailable: {exc}") from exc
            return self._client

    async def _start_and_query(
        self, workflow: str, request: Any, *, workflow_id: str, query: str, result_type: type[R], ready: Callable[[R], bool], what: str
    ) -> R:
        """Start a long-lived ``workflow`` (or find it already started under ``workflow_id``)
        and poll its ``query`` until ``ready`` holds, within the desk's timeout; every
        failure is an UNAVAILABLE naming ``what``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout_s
        try:
            client = await self._connect()
            try:
                # Once per id, even after it closed: a late duplicate (a queued ticket opened by two
                # Dialogs draining one shared outbox) finds the first run instead of starting another.
                handle = await client.start_workflow(workflow, request, id=workflow_id, task_queue=self._task_queue,
                                                     id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE)
            except WorkflowAlreadyStartedError:
                handle = client.get_workflow_handle(workflow_id)
            while True:
                try:
                    value = await asyncio.wait_for(handle.query(query, result_type=result_type), timeout=max(0.1, deadline - loop.time()))
                except (asyncio.TimeoutError, RPCError):
                    value = None  # no worker has picked the workflow up yet
                if value is not None and ready(value):
                    return value
                if loop.time() >= deadline:
                    raise Unavailable(f"{what} did not start in time (workflow {workflow_id}); is the kefu worker running?")
                await asyncio.sleep(0.1)
        except Unavailable:
            workflow_failures().add(1, {"workflow": workflow})
            raise
        except Exception as exc:  # noqa: BLE001 - RPC failures from the Temporal client
            workflow_failures().add(1, {"workflow": workflow})
            raise Unavailable(f"could not run {what}: {exc}") from exc

    async def _execute(self, workflow: str, request: Any, *, workflow_id: str, result_type: type[R], what: str) -> R:
        """Run ``workflow`` to its result within the desk's timeout; every failure is an
        UNAVAILABLE naming ``what`` ("the ticket workflow", "the store operation X")."""
        try:
            client = await self._connect()
            return await asyncio.wait_for(
                client.execute_workflow(
                    workflow, request, id=workflow_id, task_queue=self._task_queue, result_type=result_type,
                    execution_timeout=timedelta(seconds=self._timeout_s * 3),
                ),
                timeout=self._timeout_s,
            )
        except asyncio.TimeoutError as exc:
            # The workflow may still finish later under the same id.
            workflow_failures().add(1, {"workflow": workflow})
            raise Unavailable(f"{what} did not finish in time (workflow {workflow_id}); is the kefu worker running?") from exc
        except Unavailable:
            workflow_failures().add(1, {"workflow": workflow})  # Temporal unreachable
            raise
        except WorkflowFailureError as exc:
            workflow_failures().add(1, {"workflow": workflow})
            raise Unavailable(f"{what} failed (workflow {workflow_id}): {root_cause(exc)}") from exc
        except Exception as exc:  # noqa: BLE001 - RPC failures from the Temporal client
            workflow_failures().add(1, {"workflow": workflow})
            raise Unavailable(f"could not run {what}: {exc}") from exc
