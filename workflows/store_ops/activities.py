"""Activities of the store-operation workflow: the adapter to the company's store
through the ERP port (services/erp)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from services.config import KefuConfig
from services.erp.port import OperationResult, StorePort
from workflows.store_ops.types import OperationCall, OperationReceipt


def _open_store(cfg: KefuConfig) -> StorePort | None:
    # Imported here so the worker starts (and runs tickets) even while no ERP adapter is installed.
    from services.erp import open_store

    return open_store(cfg)


def _args(call: OperationCall) -> dict[str, Any]:
    try:
        args = json.loads(call.args_json or "{}")
    except json.JSONDecodeError as exc:
        raise ApplicationError(f"arguments of {call.operation} are not JSON: {exc}", type="BadArguments", non_retryable=True) from exc
    if not isinstance(args, dict):
        raise ApplicationError(f"arguments of {call.operation} must be a JSON object", type="BadArguments", non_retryable=True)
    return args


def _owner_mismatch(store: StorePort, call: OperationCall, args: dict[str, Any]) -> OperationResult | None:
    """Every side effect passes here, so this is where a customer is kept to their own
    orders and account, whatever the conversation produced as arguments."""
    if not call.customer_id:
        return None
    if "order_id" in args:
        order = store.get_order(str(args["order_id"]))
        if order is not None and order.customer_id != call.customer_id:
            return OperationResult(
                operation=call.operation,
                status="rejected",
                reason=f"order {args['order_id']} does not belong to customer {call.customer_id}",
                code="order_not_found",
            )
    if "user_id" in args and str(args["user_id"]) != call.customer_id:
        return OperationResult(
            operation=call.operation,
            status="rejected",
            reason=f"operation on customer {args['user_id']} requested for customer {call.customer_id}",
            code="customer_not_found",
        )
    return None


def _apply(cfg: KefuConfig, call: OperationCall) -> OperationResult:
    """Blocking: opens the active store and applies the operation in one transaction."""
    store = _open_store(cfg)
    if store is None:
        raise ApplicationError(
            f"no active store: import one with `kefu store import` (expected {cfg.erp_path})",
            type="NoStore",
            non_retryable=True,
        )
    try:
        args = _args(call)
        rejected = _owner_mismatch(store, call, args)
        if rejected is not None:
            return rejected
        return store.apply(call.operation, args, key=call.key)
    finally:
        close = getattr(store, "close", None)
        if callable(close):
            close()


def receipt_of(result: OperationResult, args_json: str = "") -> OperationReceipt:
    """The receipt Dialog reports from: the store's own answer, the record as JSON."""
    record = result.order if result.order is not None else result.customer
    order_id = result.order.order_id if result.order is not None else ""
    if not order_id and args_json:
        try:
            order_id = str(json.loads(args_json).get("order_id", ""))
        except (json.JSONDecodeError, AttributeError):
            order_id = ""
    return OperationReceipt(
        operation=result.operation,
        status=result.status,
        reason=result.reason,
        code=result.code,
        order_id=order_id,
        price_difference=float(result.price_difference or 0.0),
        result_json=json.dumps(dataclasses.asdict(record), ensure_ascii=False, default=str) if record is not None else "",
    )


_erp_seconds = None


def erp_call_seconds():  # noqa: ANN201 - an OpenTelemetry histogram
    """``kefu.erp.call.duration``: the worker's calls into the store behind the ERP port, by
    operation and result (the global meter: the worker's OTLP / Prometheus exporters)."""
    global _erp_seconds
    if _erp_seconds is None:
        from opentelemetry import metrics

        _erp_seconds = metrics.get_meter("kefu").create_histogram(
            "kefu.erp.call.duration", unit="s", description="Store (ERP) operations applied by the worker, by operation and result"
        )
    return _erp_seconds


class StoreActivities:
    def __init__(self, cfg: KefuConfig) -> None:
        # The config, not an open store: the store file can be replaced (a new import)
        # while kefu runs, and the next operation must go to the new one.
        self._cfg = cfg

    @activity.defn(name="apply_store_operation")
    async def apply_store_operation(self, call: OperationCall) -> OperationReceipt:
        # Idempotent on call.key (the workflow id): a retried attempt gets the first result.
        started = time.perf_counter()
        try:
            result = await asyncio.to_thread(_apply, self._cfg, call)
        except BaseException:
            erp_call_seconds().record(time.perf_counter() - started, {"operation": call.operation, "result": "error"})
            raise
        erp_call_seconds().record(time.perf_counter() - started, {"operation": call.operation, "result": result.status})
        activity.logger.info("store operation %s (%s): %s %s", call.operation, call.key, result.status, result.code)
        return receipt_of(result, call.args_json)
