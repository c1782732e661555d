"""The kefu Temporal worker: runs every workflow and activity on one task queue.

    python -m workflows.worker      # uses the kefu configuration (file + KEFU_* env)
"""

from __future__ import annotations

import asyncio
import logging
import signal

from temporalio.client import Client
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.worker import Worker

from services.config import KefuConfig, load_config
from services.demo.store import open_demo_store
from services.telemetry import install_trace_ids, setup_metrics, setup_tracing, shutdown_tracing
from workflows.returns.activities import AfterSalesActivities
from workflows.returns.workflow import ReturnWorkflow
from workflows.store_ops.activities import StoreActivities
from workflows.store_ops.workflow import StoreOperationWorkflow
from workflows.tickets.activities import TicketActivities
from workflows.tickets.workflow import TicketWorkflow

log = logging.getLogger(__name__)


async def connect(cfg: KefuConfig) -> Client:
    return await Client.connect(cfg.temporal_address, namespace=cfg.temporal.namespace, interceptors=[TracingInterceptor()])


async def run_worker(cfg: KefuConfig) -> None:
    setup_tracing(cfg.telemetry, "kefu-worker")
    setup_metrics(cfg.telemetry, "kefu-worker")
    client = await connect(cfg)
    store = open_demo_store(cfg)  # tickets in PostgreSQL when state.postgres_dsn is set
    tickets = TicketActivities(store)
    after_sales = AfterSalesActivities(cfg)
    worker = Worker(
        client,
        task_queue=cfg.temporal.task_queue,
        workflows=[TicketWorkflow, StoreOperationWorkflow, ReturnWorkflow],
        activities=[
            tickets.open_ticket, tickets.update_ticket, StoreActivities(cfg).apply_store_operation,
            after_sales.after_sales_step, after_sales.notify_customer,
        ],
    )
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    async with worker:
        print(f"kefu worker ready on task queue {cfg.temporal.task_queue} at {cfg.temporal_address}", flush=True)
        await stopping.wait()
    shutdown_tracing()
    print("kefu worker stopped", flush=True)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s worker %(name)s %(levelname)s %(message)s trace=%(trace_id)s")
    install_trace_ids()
    asyncio.run(run_worker(load_config()))


if __name__ == "__main__":
    main()
