"""Dialog's connection to Temporal, shared by the desks that start workflows (tickets,
store operations): one client per process, connected on first use, and a clear
UNAVAILABLE when the workflow engine cannot be reached."""

from __future__ import annotations

import asyncio

from temporalio.client import Client
from temporalio.contrib.opentelemetry import TracingInterceptor

from services.config import KefuConfig
from services.errors import Unavailable


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
