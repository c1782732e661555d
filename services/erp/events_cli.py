"""``kefu erp``: report what the ERP saw to the running kefu, and read a return's state.

    kefu erp event parcel-received --order '#W2378156'
    kefu erp event inspection --order '#W2378156' --rejected "item damaged by the customer"
    kefu erp event refund-completed --order '#W2378156'
    kefu erp return '#W2378156'

Each event goes to the return saga of the order (Temporal ReturnWorkflow) through the
Dialog process's ErpEvents service; an event id is made up when none is given, so give
the ERP's own id (``--id``) to make a repeated report harmless.
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid

import grpc

KINDS = {
    "parcel-received": "parcel_received",
    "inspection": "inspection_result",
    "refund-completed": "refund_completed",
    "shipment-delivered": "shipment_delivered",
}


def add_erp_commands(sub) -> None:  # noqa: ANN001 - argparse's private subparsers type
    erp = sub.add_parser(
        "erp", help="ERP events in (parcel received, inspection, refund completed...) and return status",
        description=(__doc__ or "").strip(), formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    erp_sub = erp.add_subparsers(dest="erp_command", required=True)
    event = erp_sub.add_parser("event", help="report an ERP event to the return saga of an order")
    event.add_argument("kind", choices=sorted(KINDS), help="what happened at the ERP")
    event.add_argument("--order", required=True, help="the order id, e.g. '#W2378156'")
    event.add_argument("--id", default="", help="the ERP's event id (default: a new one)")
    verdict = event.add_mutually_exclusive_group()
    verdict.add_argument("--accepted", action="store_true", help="inspection: the goods passed (the default)")
    verdict.add_argument("--rejected", metavar="REASON", help="inspection: the goods did not pass, and why")
    event.add_argument("--target", help="Dialog address host:port (default from the configuration)")
    event.add_argument("--json", action="store_true", help="print the receipt as JSON")
    event.set_defaults(func=_cmd_event)
    status = erp_sub.add_parser("return", help="where the return, exchange or refund of an order stands")
    status.add_argument("order", help="the order id")
    status.add_argument("--target", help="Dialog address host:port (default from the configuration)")
    status.add_argument("--json", action="store_true", help="print the state as JSON")
    status.set_defaults(func=_cmd_return)


def _stub(args: argparse.Namespace):  # noqa: ANN202 - generated stub type
    from kefu.v1 import erp_pb2_grpc
    from services.config import load_config

    from services.security import sync_channel

    cfg = load_config(args.config)
    target = args.target or cfg.target("dialog")
    return erp_pb2_grpc.ErpEventsStub(sync_channel(target, cfg.security, key=cfg.security.client_key))


def _fail(err: grpc.RpcError) -> int:
    print(f"kefu erp: {err.code().name}: {err.details()}", file=sys.stderr)
    return 1


def _cmd_event(args: argparse.Namespace) -> int:
    from google.protobuf.json_format import MessageToDict

    from kefu.v1 import erp_pb2

    kind = KINDS[args.kind]
    if kind != "inspection_result" and (args.rejected or args.accepted):
        print("kefu erp: --accepted/--rejected go with an inspection event only", file=sys.stderr)
        return 2
    event = erp_pb2.ErpEvent(
        event_id=args.id or f"cli-{uuid.uuid4().hex[:12]}", kind=kind, order_id=args.order,
        accepted=kind == "inspection_result" and not args.rejected, reason=args.rejected or "",
    )
    try:
        receipt = _stub(args).Report(event, timeout=30)
    except grpc.RpcError as err:
        return _fail(err)
    if args.json:
        print(json.dumps(MessageToDict(receipt), ensure_ascii=False))
    else:
        outcome = erp_pb2.ErpEventOutcome.Name(receipt.outcome).removeprefix("ERP_EVENT_OUTCOME_").lower()
        print(f"{kind} for {args.order} (event {event.event_id}): {outcome}, workflow {receipt.workflow_id}")
    return 0


def _cmd_return(args: argparse.Namespace) -> int:
    from google.protobuf.json_format import MessageToDict

    from kefu.v1 import erp_pb2

    try:
        state = _stub(args).GetReturn(erp_pb2.GetReturnRequest(order_id=args.order), timeout=30)
    except grpc.RpcError as err:
        return _fail(err)
    if args.json:
        print(json.dumps(MessageToDict(state, always_print_fields_with_no_presence=True), ensure_ascii=False, indent=2))
        return 0
    print(f"{state.kind} of order {state.order_id}: {state.status}{'' if state.running else ' (ended)'}  [{state.workflow_id}]")
    for label, value in (
        ("RMA", state.rma_id), ("label", state.label), ("refund id", state.refund_id), ("tracking", state.tracking_id),
        ("reason", state.reason), ("ticket", state.ticket_id),
    ):
        if value:
            print(f"  {label:<9} {value}")
    if state.refund_amount:
        print(f"  {'refund':<9} {state.refund_amount:.2f} {state.currency} to {state.refund_method} ({state.refund_status or 'not paid yet'})")
    for step in state.timeline:
        if not step.kind.startswith("told:"):
            print(f"  {step.at[:19]}  {step.kind}{': ' + step.text if step.text else ''}")
    return 0
