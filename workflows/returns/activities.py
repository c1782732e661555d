"""Activities of the return saga: the after-sales steps in the store (through
services/erp/after_sales.py) and messages to the customer's session."""

from __future__ import annotations

import asyncio
import json

from temporalio import activity
from temporalio.exceptions import ApplicationError

from services.config import KefuConfig
from workflows.returns.types import Notice, StepCall, StepResult


def _run_step(cfg: KefuConfig, call: StepCall) -> StepResult:
    from services.erp import open_store
    from services.erp.after_sales import AfterSales, AfterSalesRejected
    from services.erp.tau_retail import TauRetailStore

    store = open_store(cfg)
    if not isinstance(store, TauRetailStore):
        raise ApplicationError(f"no store keeping after-sales at {cfg.erp_path}", type="NoStore", non_retryable=True)
    desk = AfterSales(store)
    try:
        if call.step == "authorize_return":
            record = desk.authorize_return(call.order_id, call.kind, key=call.key)
        elif call.step == "cancel_return":
            record = desk.cancel_return(call.order_id, key=call.key)
        elif call.step == "refund":
            record = desk.refund(call.order_id, call.amount, call.payment_method_id, key=call.key, order_status=call.order_status)
        elif call.step == "ship_replacement":
            record = desk.ship_replacement(call.order_id, key=call.key)
        elif call.step == "track_cancellation":
            # The store paid the cancellation back already (τ-bench's refund lines); its
            # tracking starts here: a gift card is done, any other method pending.
            order = store.get_order(call.order_id)
            refunds = [p for p in (order.payments if order else []) if p.transaction_type == "refund"]
            if order is None or order.status != "cancelled" or not refunds:
                raise AfterSalesRejected("wrong_status", f"order {call.order_id} has no cancellation refund")
            record = desk.refund(
                call.order_id, round(sum(p.amount for p in refunds), 2), refunds[0].payment_method_id, key=call.key, recorded=True
            )
        else:
            raise ApplicationError(f"unknown after-sales step {call.step!r}", type="BadStep", non_retryable=True)
    except AfterSalesRejected as exc:
        return StepResult(ok=False, code=exc.code, reason=exc.reason, currency=store.currency)
    finally:
        store.close()
    return StepResult(ok=True, result_json=json.dumps(record, ensure_ascii=False), currency=store.currency)


def _notify(cfg: KefuConfig, notice: Notice) -> bool:
    from services.dialog.sessions import open_sessions

    sessions = open_sessions(cfg)
    if sessions.get(notice.session_id) is None:
        return False
    sessions.add_message(notice.session_id, "kefu", notice.text, key=notice.key)
    return True


class AfterSalesActivities:
    def __init__(self, cfg: KefuConfig) -> None:
        # The config, not an open store: `kefu store import` may replace the store file.
        self._cfg = cfg

    @activity.defn(name="after_sales_step")
    async def after_sales_step(self, call: StepCall) -> StepResult:
        result = await asyncio.to_thread(_run_step, self._cfg, call)
        activity.logger.info("after-sales %s on %s (%s): %s %s", call.step, call.order_id, call.key, result.ok, result.code)
        return result

    @activity.defn(name="notify_customer")
    async def notify_customer(self, notice: Notice) -> bool:
        """Idempotent on notice.key; False when the session is not kefu's (nothing to do)."""
        if not notice.session_id:
            return False
        return await asyncio.to_thread(_notify, self._cfg, notice)
